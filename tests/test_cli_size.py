"""`tfcompress size FILE [--json] [--pack OUT]` and `tfcompress unpack PACK -o OUT`."""
import json
import os

import pytest

from test_tflite_reader import build_models
from tfcompress import cli


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return build_models(str(tmp_path_factory.mktemp("tflite")))


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfcompress: error:"), err
    return err[0]


def test_table_and_json(models, capsys):
    assert cli.main(["size", models["int8"]]) == 0
    assert "gzip -9" in capsys.readouterr().out
    assert cli.main(["size", models["int8"], "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["file_bytes"] == os.path.getsize(models["int8"]) and d["pack"] is None
    assert d["coded_bytes"] < d["weight_bytes"]


@pytest.mark.parametrize("mode", ["float32", "int8", "dynamic", "float16"])
def test_pack_then_unpack_is_byte_identical(models, tmp_path, capsys, mode):
    packed, restored = tmp_path / "m.tfcz", tmp_path / "back.tflite"
    assert cli.main(["size", models[mode], "--pack", str(packed), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pack_bytes"] == packed.stat().st_size
    assert cli.main(["unpack", str(packed), "-o", str(restored)]) == 0
    assert restored.read_bytes() == open(models[mode], "rb").read()


def test_flipped_byte_refused_and_nothing_written(models, tmp_path, capsys):
    packed, restored = tmp_path / "m.tfcz", tmp_path / "back.tflite"
    assert cli.main(["size", models["int8"], "--pack", str(packed)]) == 0
    capsys.readouterr()
    blob = bytearray(packed.read_bytes())
    for i in (5, 70, len(blob) // 2, len(blob) - 3):
        bad = bytearray(blob)
        bad[i] ^= 0x10
        (tmp_path / "bad.tfcz").write_bytes(bytes(bad))
        assert cli.main(["unpack", str(tmp_path / "bad.tfcz"), "-o", str(restored)]) == 1
        line = _one_error_line(capsys)
        assert "damaged" in line or "not a .tfcz" in line
        assert not restored.exists()
    assert sorted(os.listdir(tmp_path)) == ["bad.tfcz", "m.tfcz"]   # no temporary file left


def test_never_overwrites_the_input(models, tmp_path, capsys):
    src = tmp_path / "m.tflite"
    src.write_bytes(open(models["int8"], "rb").read())
    before = src.read_bytes()
    assert cli.main(["size", str(src), "--pack", str(src)]) == 1
    assert "overwrite the input" in _one_error_line(capsys)
    assert src.read_bytes() == before
    packed = tmp_path / "m.tfcz"
    assert cli.main(["size", str(src), "--pack", str(packed)]) == 0
    capsys.readouterr()
    assert cli.main(["unpack", str(packed), "-o", str(packed)]) == 1
    assert "overwrite the input" in _one_error_line(capsys)


@pytest.mark.parametrize("content", [None, b"", b"random \x00\xff bytes" * 50],
                         ids=["missing", "empty", "random"])
def test_bad_input_no_output_left(tmp_path, capsys, content):
    src = tmp_path / "in.tflite"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out.tfcz"
    assert cli.main(["size", str(src), "--pack", str(out)]) == 1
    assert str(src) in _one_error_line(capsys)
    assert not out.exists()
    assert cli.main(["unpack", str(src), "-o", str(tmp_path / "o.tflite")]) == 1
    _one_error_line(capsys)
    assert not (tmp_path / "o.tflite").exists()


def test_unpack_needs_output(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["unpack", str(tmp_path / "x.tfcz")])
