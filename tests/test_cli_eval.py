"""`tfcompress eval` and `tfcompress export --report`: results, JSON, one-line errors, no partial output."""
import json
import os

import pytest

from tfcompress import cli, models
from tfcompress._tf import keras
from tfcompress import data


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    x, y = data.load("digits", "train")
    keras.utils.set_random_seed(0)
    model = models.lenet300(input_shape=(64,))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.reshape(len(x), -1), y, epochs=4, batch_size=32, verbose=0)
    model.save(out / "m.keras")
    other = models.lenet300(input_shape=(32,))
    other.save(out / "other.keras")
    return out


def run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line_error(rc, err, *words):
    assert rc == 1
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err


def test_export_report_and_json_then_eval(files, capsys):
    tfl, md, js = files / "m.tflite", files / "report.md", files / "report.json"
    rc, out, err = run(["export", files / "m.keras", "-o", tfl, "--report", md, "--json", js], capsys)
    assert rc == 0, err
    text = md.read_text()
    report = json.loads(js.read_text())
    assert "## Per-layer error" in text and "Worst layers" in text
    names = [row["layer"] for row in report["layers"]]
    assert names == ["fc1", "fc2", "fc3"]
    for row in report["layers"]:
        assert f"| {row['layer']} |" in text
        assert row["sqnr_db"] > 20
    assert sum(row["worst"] for row in report["layers"]) >= 1

    rc, out, err = run(["eval", tfl, "--data", "digits", "--float", files / "m.keras", "--json",
                        files / "eval.json"], capsys)
    assert rc == 0, err
    result = json.loads((files / "eval.json").read_text())
    assert result["samples"] == 449
    assert result["accuracy"] == pytest.approx(report["tflite_accuracy"], abs=1e-9)
    assert result["float_accuracy"] == pytest.approx(report["float_accuracy"], abs=1e-9)
    assert result["agreement"] >= 0.97 and result["accuracy"] >= 0.9
    assert "accuracy: " in out and "agreement" in out

    rc, out, err = run(["eval", tfl, "--samples", "100"], capsys)
    assert rc == 0 and "100 samples" in out and "agreement" not in out


@pytest.mark.parametrize("argv,words", [
    (["eval", "{d}/missing.tflite"], ["missing.tflite"]),
    (["eval", "{d}/m.keras"], ["m.keras"]),                                  # not a .tflite file
    (["eval", "{d}/m.tflite", "--data", "nope"], ["unknown data spec"]),
    (["eval", "{d}/m.tflite", "--data", "npz:{d}/none.npz"], ["none.npz"]),
    (["eval", "{d}/m.tflite", "--split", "val"], ["split"]),
    (["eval", "{d}/m.tflite", "--samples", "0"], ["--samples"]),
    (["eval", "{d}/m.tflite", "--float", "{d}/nothing.keras"], ["nothing.keras"]),
    (["eval", "{d}/m.tflite", "--float", "{d}/other.keras"], ["--float"]),
    (["eval", "{d}/m.tflite", "--json", "{d}/no/dir/e.json"], ["does not exist"]),
    (["export", "{d}/m.keras", "-o", "{d}/x.tflite", "--report", "{d}/no/dir/r.md"], ["does not exist"]),
    (["export", "{d}/m.keras", "-o", "{d}/x.tflite", "--report", "{d}/m.keras"], ["overwrite"]),
])
def test_bad_input_is_one_line_and_writes_nothing(files, capsys, argv, words):
    if not (files / "m.tflite").exists():
        run(["export", files / "m.keras", "-o", files / "m.tflite", "--no-eval"], capsys)
    before = set(os.listdir(files))
    rc, _, err = run([a.format(d=files) for a in argv], capsys)
    one_line_error(rc, err, *words)
    assert set(os.listdir(files)) == before
