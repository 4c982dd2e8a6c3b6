"""`--json [PATH]` means the same on every command: no value, JSON on stdout (the table on stderr); a value,
that file (the table on stdout as usual). Old invocations keep working."""
import json

import pytest

from tests.conftest import call_cli

FAST = ["--runs", "2", "--min_secs", "0", "--warmup", "1", "--warmup_min_secs", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from tfcompress._tf import keras
    folder = tmp_path_factory.mktemp("json")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu6", name="conv")(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu6", name="conv2")(x)
    out = keras.layers.Dense(10, name="fc")(keras.layers.Flatten()(x))
    keras.Model(inp, out).save(folder / "m.keras")
    return folder


def _export(files, capsys):
    path = files / "m.tflite"
    if not path.exists():
        assert call_cli(capsys, "export", files / "m.keras", "-o", path, "--samples", "16").returncode == 0
    return path


def _commands(files, capsys):
    tfl = _export(files, capsys)
    return {
        "inspect": (["inspect", tfl], lambda d: d["file_bytes"] == tfl.stat().st_size),
        "size": (["size", tfl], lambda d: d["file_bytes"] == tfl.stat().st_size),
        "export": (["export", files / "m.keras", "-o", files / "e.tflite", "--samples", "16"],
                   lambda d: d["mode"] == "int8"),
        "eval": (["eval", tfl, "--samples", "40"], lambda d: d["samples"] == 40),
        "prune-channels": (["prune-channels", files / "m.keras", "-o", files / "s.keras", "--ratio", "0.5"],
                           lambda d: d["after"]["params"] < d["before"]["params"]),
        "bench": (["bench", tfl, *FAST], lambda d: d[0]["ok"] is True),
    }


@pytest.mark.parametrize("name", ["inspect", "size", "export", "eval", "prune-channels", "bench"])
def test_json_without_a_value_is_stdout_and_with_a_value_a_file(files, capsys, name):
    argv, check = _commands(files, capsys)[name]
    proc = call_cli(capsys, *argv, "--json")
    assert proc.returncode == 0, proc.stderr
    assert check(json.loads(proc.stdout)), proc.stdout     # stdout is JSON only
    assert proc.stderr.strip()                              # the people's output moved to stderr
    path = files / f"{name}.json"
    proc = call_cli(capsys, *argv, "--json", path)
    assert proc.returncode == 0, proc.stderr
    assert check(json.loads(path.read_text()))
    assert proc.stdout.strip() and not proc.stdout.lstrip().startswith(("{", "["))   # the table, as usual
    proc = call_cli(capsys, *argv[:1], "--json", "-", *argv[1:])                       # "-" is stdout too
    assert proc.returncode == 0 and check(json.loads(proc.stdout)), proc.stderr


def test_old_invocations_still_work(files, capsys):
    tfl = _export(files, capsys)
    for name in ("inspect", "size"):
        proc = call_cli(capsys, name, "--json", tfl)      # was a flag: the file after it is the command's
        assert proc.returncode == 0 and json.loads(proc.stdout)["file_bytes"] == tfl.stat().st_size
    proc = call_cli(capsys, "bench", "--json", files / "b.json", tfl, *FAST)
    assert proc.returncode == 0 and json.loads((files / "b.json").read_text())[0]["ok"] is True


@pytest.mark.parametrize("name", ["inspect", "size"])
def test_json_file_never_overwrites_the_input_and_a_missing_file_is_one_line(files, capsys, name):
    tfl = _export(files, capsys)
    before = tfl.read_bytes()
    proc = call_cli(capsys, name, tfl, "--json", tfl)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1 and tfl.read_bytes() == before
    proc = call_cli(capsys, name, "--json")
    assert proc.returncode == 1 and proc.stderr.startswith("tfcompress: error: give the .tflite file")
