"""Shared test settings: quiet TensorFlow, and a small CLI runner that checks the one-line error rule."""
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=None, env=None, timeout=300):
    """Runs `python -m tfcompress.cli ARGS` in a subprocess; returns CompletedProcess (text)."""
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.pop("TFCOMPRESS_DEBUG", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tfcompress.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def call_cli(capsys, *args):
    """Runs the CLI in this process (same code path as the console script, without paying for a new
    TensorFlow import each time); returns an object like CompletedProcess."""
    from tfcompress.cli import main
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def assert_one_line_error(proc):
    """The bad-input rule: non-zero exit, no traceback, exactly one line on stderr (no TensorFlow log line)."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfcompress:"), proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def digits():
    from tfcompress import data
    return data.load("digits", "train"), data.load("digits", "test")
