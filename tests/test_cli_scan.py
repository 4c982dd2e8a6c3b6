"""`tfcompress scan`: the table, the PNG and the JSON report (resumable); bad input is one line."""
import json
import os

import pytest

from conftest import assert_one_line_error, call_cli, run_cli
from tfcompress.choose.report import SensitivityReport
from test_pruning_graph import toy_resnet
from test_sensitivity import dense_net


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("m")
    dense, toy = str(folder / "dense.keras"), str(folder / "toy.h5")
    dense_net().save(dense)
    toy_resnet((8, 8, 1)).save(toy)
    return dense, toy


def test_scan_writes_png_and_json(models, tmp_path, capsys):
    png, js = str(tmp_path / "scan.png"), str(tmp_path / "scan.json")
    proc = call_cli(capsys, "scan", models[0], "--data", "digits", "--samples", "100", "--sparsities", "0.5,0.9",
                    "--plot", png, "--json", js)
    assert proc.returncode == 0, proc.stderr
    assert "fc1" in proc.stdout and "fc2" in proc.stdout and "baseline" in proc.stdout
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    report = SensitivityReport.load(js)
    assert report.complete and list(report.units) == ["fc1", "fc2"] and report.sparsities == [0.5, 0.9]
    stamp = os.path.getmtime(js)
    again = call_cli(capsys, "scan", models[0], "--data", "digits", "--samples", "100", "--sparsities", "0.5,0.9",
                     "--json", js)                              # nothing left to do: the same report
    assert again.returncode == 0 and SensitivityReport.load(js).units == report.units
    assert os.path.getmtime(js) >= stamp


def test_channel_scan_json_on_stdout(models, capsys):
    proc = call_cli(capsys, "scan", models[1], "--data", "digits", "--samples", "64", "--sparsities", "0.5",
                    "--granularity", "channel", "--repair", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["granularity"] == "channel" and "b2a_conv" in report["units"] and report["settings"]["repair"]
    assert "b2a_conv" in proc.stderr                             # the table went to stderr


@pytest.mark.parametrize("args,message", [
    (["{m}", "--data", "digits", "--sparsities", "0.5,x"], "--sparsities"),
    (["{m}", "--data", "digits", "--sparsities", "0.9,0.5"], "increasing"),
    (["{m}", "--data", "nope"], "unknown data spec"),
    (["{d}/missing.keras", "--data", "digits"], "not found"),
    (["{m}", "--data", "digits", "--plot", "{d}/no/such/scan.png"], "folder does not exist"),
    (["{m}", "--data", "digits", "--plot", "{d}/scan.jpg"], ".png"),
    (["{m}", "--data", "digits", "--criterion", "best", "--granularity", "channel"], "unknown criterion"),
    (["{m}", "--data", "digits", "--repair"], "--granularity channel"),
])
def test_bad_input_is_one_line(models, tmp_path, capsys, args, message):
    before = sorted(os.listdir(tmp_path))
    proc = call_cli(capsys, "scan", *[a.format(m=models[0], d=tmp_path) for a in args])
    assert message in assert_one_line_error(proc)
    assert sorted(os.listdir(tmp_path)) == before


def test_bad_input_in_a_real_process(models, tmp_path):
    proc = run_cli("scan", models[0], "--data", "digits", "--samples", "0")
    assert "--samples" in assert_one_line_error(proc)
