"""edge_runner.py in a venv with only numpy<2 and tflite-runtime (no TensorFlow), as on an edge board.

The venv is built once under ~/.cache/tfcompress-test-venv (the only test that needs the network: it
is skipped, with the reason, only when pip cannot reach the package registry).
"""
import os
import shutil
import subprocess
import sys

import pytest

from adb_device.fixtures import models  # noqa: F401  (fixture)
from android_bench import parse_output
from android_bench.runners import BenchConfig, LocalRunner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EDGE = os.path.join(REPO, "android_bench", "edge_runner.py")
VENV = os.environ.get("TFCOMPRESS_TEST_VENV") or os.path.join(os.path.expanduser("~"), ".cache", "tfcompress-test-venv")
PACKAGES = ["numpy<2", "tflite-runtime==2.14.0"]
_OFFLINE = ("Could not find a version", "No matching distribution", "Failed to establish a new connection",
            "Temporary failure in name resolution", "Network is unreachable", "ProxyError", "timed out")


def _ready(python):
    check = "import numpy, tflite_runtime.interpreter\ntry:\n import tensorflow\nexcept ImportError:\n print('ok')"
    return os.path.exists(python) and subprocess.run([python, "-c", check], capture_output=True,
                                                     text=True).stdout.strip() == "ok"


@pytest.fixture(scope="session")
def edge_python():
    python = os.path.join(VENV, "bin", "python")
    if _ready(python):
        return python
    building = VENV + f".build-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", building], check=True, capture_output=True)
    p = subprocess.run([os.path.join(building, "bin", "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *PACKAGES], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        if any(marker in p.stderr + p.stdout for marker in _OFFLINE):
            pytest.skip(f"pip cannot reach the package registry to build the edge venv: "
                        f"{p.stderr.strip().splitlines()[-1] if p.stderr.strip() else 'no output'}")
        raise AssertionError(f"pip install {' '.join(PACKAGES)} failed:\n{p.stderr}")
    shutil.rmtree(VENV, ignore_errors=True)
    os.replace(building, VENV)  # venv scripts hold absolute paths: rebuild python path after the move
    subprocess.run([sys.executable, "-m", "venv", "--upgrade", VENV], check=True, capture_output=True)
    assert _ready(python)
    return python


def _non_null(result):
    return sorted(k for k, v in result.to_dict().items() if v is not None)


def test_edge_runner_without_tensorflow_gives_local_runner_fields(edge_python, models):
    cfg = BenchConfig(runs=5, min_secs=0, warmup_min_secs=0, delegate="xnnpack", threads=2)
    p = subprocess.run([edge_python, EDGE, *cfg.flags(models["conv"])], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    edge = parse_output(p.stdout + p.stderr, model=models["conv"], device="edge", runner="ssh",
                        threads=2, delegate="xnnpack")
    local = LocalRunner().run(models["conv"], cfg)
    assert edge.ok and local.ok
    assert list(edge.to_dict()) == list(local.to_dict())
    assert _non_null(edge) == _non_null(local)
    assert set(_non_null(edge)) >= {"runs", "init_ms", "first_ms", "warmup_avg_ms", "avg_ms", "std_ms", "p50_ms",
                                    "p90_ms", "p95_ms", "p99_ms", "mem_init_mb", "mem_overall_mb", "mem_peak_mb",
                                    "delegated_nodes", "total_nodes"}
    assert edge.runs >= 5 and (edge.delegated_nodes, edge.total_nodes) == (3, 3)
    assert edge.min_ms <= edge.p50_ms <= edge.max_ms


def test_edge_runner_failures_in_benchmark_model_format(edge_python, models):
    p = subprocess.run([edge_python, EDGE, f"--graph={models['broken']}"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and p.stdout.rstrip().endswith("Benchmarking failed.")
    assert parse_output(p.stdout).error.startswith("Failed to load model")
    p = subprocess.run([edge_python, EDGE, f"--graph={models['dense']}", "--use_gpu=true"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert parse_output(p.stdout).error.startswith("Failed to apply GPU delegate")
