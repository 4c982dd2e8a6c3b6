"""`tfcompress inspect FILE [--json]`: table or JSON on stdout; bad input is one line on stderr."""
import json
import os
import subprocess
import sys

import pytest

from test_tflite_reader import build_models
from tfcompress import cli


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return build_models(str(tmp_path_factory.mktemp("tflite")))


def test_table(models, capsys):
    assert cli.main(["inspect", models["int8"]]) == 0
    out = capsys.readouterr().out
    assert "FULLY_CONNECTED" in out and "int8" in out and "zeros" in out


def test_json(models, capsys):
    assert cli.main(["inspect", models["float32"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["op_counts"] == {"CONV_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 2}
    assert info["inputs"][0]["dtype"] == "float32"


@pytest.mark.parametrize("content", [None, b"", b"\x00\x01garbage" * 100, b"plain text\n" * 10],
                         ids=["missing", "empty", "random", "text"])
def test_bad_input_one_line(tmp_path, capsys, content):
    path = tmp_path / "bad.tflite"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["inspect", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfcompress: error:") and str(path) in lines[0]


def test_truncated_file_in_a_real_process(models, tmp_path):
    data = open(models["int8"], "rb").read()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[:len(data) // 3])
    env = dict(os.environ, TFCOMPRESS_DEBUG="0")
    r = subprocess.run([sys.executable, "-m", "tfcompress.cli", "inspect", str(path)], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "truncated or corrupt" in r.stderr
