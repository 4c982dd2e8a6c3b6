"""A command's stderr as a user sees it (a real process, TensorFlow's own logging settings untouched): bad input
is one line and is refused before TensorFlow loads; a success prints no TensorFlow log line; a native error
line still gets through, even right before a crash; TFCOMPRESS_DEBUG=1 shows everything."""
import json
import os
import re
import subprocess
import sys

import pytest

from tfcompress.commands.native_logs import NOISE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what any TensorFlow / absl / LiteRT log line starts with
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} |WARNING: All log|INFO: |WARNING:tensorflow|WARNING:absl)")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in ("TFCOMPRESS_DEBUG", "TF_CPP_MIN_LOG_LEVEL"):   # conftest quiets TensorFlow; a user has not
        env.pop(name, None)
    env.update(extra)
    return env


def _cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "tfcompress.cli", *map(str, args)], env=_env(**env),
                          capture_output=True, text=True, timeout=300)


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", code], env=_env(**env), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tfcompress._tf import keras
    path = tmp_path_factory.mktemp("quiet") / "m.keras"
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu6"),
                      keras.layers.Flatten(), keras.layers.Dense(10)]).save(path)
    return path


@pytest.mark.parametrize("argv,message", [
    (["export", "{d}/missing.keras", "-o", "{d}/x.tflite"], "model not found"),
    (["export", "{m}", "-o", "{d}/x.tflite", "--data", "nope"], "unknown data spec"),
    (["export", "{m}", "-o", "{d}/x.tflite", "--data", "npz:{d}/missing.npz"], "not found"),
    (["eval", "{d}/x.tflite"], "no such file"),
    (["prune-channels", "{d}/missing.keras", "-o", "{d}/s.keras", "--data", "digits"], "model not found"),
    (["prune-channels", "{m}", "-o", "{d}/s.keras", "--data", "nope"], "unknown data spec"),
    (["run", "{d}/missing.yaml"], "recipe not found"),
])
def test_bad_input_is_exactly_one_line(model, tmp_path, argv, message):
    proc = _cli(*[a.format(d=tmp_path, m=model) for a in argv])
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfcompress: error: ") and message in lines[0], proc.stderr


def test_bad_input_is_refused_before_tensorflow_loads(model, tmp_path):
    (tmp_path / "float.tflite").write_bytes(b"\x1c\0\0\0TFL3" + bytes(64))
    (tmp_path / "r.yaml").write_text("name: r\nsteps: [train]\nmodel: {path: %s}\n" % (tmp_path / "no.keras"))
    cases = [["export", tmp_path / "missing.keras", "-o", tmp_path / "x.tflite"],
             ["export", tmp_path / "missing.keras", "-o", tmp_path / "x.tflite", "--data", "digits"],
             ["export", model, "-o", tmp_path / "x.tflite", "--data", "nope"],
             ["eval", tmp_path / "float.tflite", "--float", tmp_path / "missing.keras"],
             ["prune-channels", tmp_path / "missing.keras", "-o", tmp_path / "s.keras", "--data", "digits"],
             ["run", tmp_path / "r.yaml"]]
    code = ("import json, sys\nfrom tfcompress.cli import main\nout = []\n"
            f"for argv in {json.dumps([[str(a) for a in c] for c in cases])}:\n"
            "    out.append([main(argv), 'tensorflow' in sys.modules])\nprint(json.dumps(out))")
    proc = _python(code)
    results = json.loads(proc.stdout.splitlines()[-1])
    assert results == [[1, False]] * len(cases), (results, proc.stderr)


def test_a_real_export_prints_no_tensorflow_log_line(model, tmp_path):
    out = tmp_path / "m.tflite"
    proc = _cli("export", model, "-o", out, "--samples", "16")
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "ReLU6 outputs: 1" in proc.stdout
    noise = [l for l in proc.stderr.splitlines() if TF_LOG_LINE.match(l) or NOISE.fullmatch(l)]
    assert noise == [], proc.stderr


def test_debug_shows_the_native_lines(model, tmp_path):
    proc = _cli("export", model, "-o", tmp_path / "m.tflite", "--samples", "16", TFCOMPRESS_DEBUG="1")
    assert proc.returncode == 0, proc.stderr
    assert any(NOISE.fullmatch(l) for l in proc.stderr.splitlines()), proc.stderr


_NATIVE = ("import os\nfrom tfcompress.commands.native_logs import filter_stderr\nfilter_stderr()\n"
           "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n"
           "I0000 00:00:1796118067.733406    4555 cudart_stub.cc:31] Could not find cuda drivers on your "
           "machine, GPU will not be used.\\nF0000 00:00:1796118067.9    4555 op.cc:1] Check failed: x\\n')\n"
           "os.abort()\n")


def test_a_real_native_error_survives_a_crash_and_the_noise_does_not():
    proc = _python(_NATIVE)
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == ["F0000 00:00:1796118067.9    4555 op.cc:1] Check failed: x"]


def test_debug_turns_the_filter_off():
    proc = _python(_NATIVE, TFCOMPRESS_DEBUG="1")
    assert len(proc.stderr.splitlines()) == 3 and "cudart_stub" in proc.stderr


def test_tensorflow_python_warnings_are_lowered_to_errors():
    code = ("import sys\nfrom tfcompress.commands.native_logs import filter_stderr\nfilter_stderr()\n"
            "from tfcompress._tf import tf\ntf.get_logger().warning('5 out of the last 10 calls retraced')\n"
            "tf.get_logger().error('a real error')\nprint('done', file=sys.stderr)\n")
    proc = _python(code)
    assert proc.returncode == 0
    assert [l for l in proc.stderr.splitlines() if "retraced" in l] == []
    assert "a real error" in proc.stderr and proc.stderr.splitlines()[-1] == "done"


def test_verbose_lets_the_log_lines_through(tmp_path):
    import subprocess
    import sys
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFCOMPRESS_DEBUG")}
    model = tmp_path / "m.keras"
    code = ("from tfcompress._tf import keras; m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]);"
            f"m.save({str(model)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, timeout=120)
    out = tmp_path / "m.tflite"
    quiet = subprocess.run([sys.executable, "-m", "tfcompress.cli", "export", str(model), "-o", str(out),
                            "--mode", "float32"], env=env, capture_output=True, text=True, timeout=300)
    loud = subprocess.run([sys.executable, "-m", "tfcompress.cli", "--verbose", "export", str(model), "-o",
                           str(tmp_path / "v.tflite"), "--mode", "float32"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert quiet.stderr.strip() == "" and len(loud.stderr.strip().splitlines()) > 0
