"""`tfcompress bench --stages`: per-stage latency of an early-exit file and the expected latency under a policy."""
import json

import numpy as np
import pytest

from android_bench import edge_runner
from android_bench.results import BenchResult
from tests.conftest import call_cli
from tfcompress.exits import ExitPolicy
from tfcompress.exits.bench import expected


@pytest.fixture(scope="module")
def exits_file(tmp_path_factory):
    import tfcompress as tfc
    from tests.test_exits import small_model
    ee = tfc.add_exits(small_model(), at=["r2", "c3"])
    path = str(tmp_path_factory.mktemp("bench") / "exits.tflite")
    tfc.export_exits(ee, path, representative_data=np.random.default_rng(0).uniform(0, 1, (32, 8, 8, 1)))
    return path


def test_edge_runner_times_one_signature(exits_file, capsys):
    flags = [f"--graph={exits_file}", "--num_runs=5", "--min_secs=0", "--warmup_min_secs=0"]
    assert edge_runner.main(flags + ["--signature_to_run_for=stage_1"]) == 0
    out = capsys.readouterr().out
    assert "Signature to run: [stage_1]" in out and "count=5" in out
    assert edge_runner.main(flags + ["--signature_to_run_for=stage_9"]) == 1
    out = capsys.readouterr().out
    assert "no signature 'stage_9' in the model (it has: stage_0, stage_1, stage_2)" in out
    assert "Benchmarking failed." in out


def test_expected_latency_is_the_reach_weighted_sum():
    results = [BenchResult(model=f"m.tflite@stage_{i}", device="local", threads=1, delegate="xnnpack", avg_ms=ms)
               for i, ms in enumerate([1.0, 2.0, 4.0])]
    (row,) = expected(results, ["stage_0", "stage_1", "stage_2"], [1.0, 0.5, 0.25])
    assert row["expected_ms"] == pytest.approx(1.0 + 0.5 * 2.0 + 0.25 * 4.0)
    assert row["all_stages_ms"] == pytest.approx(7.0) and row["model"] == "m.tflite"


def test_bench_stages_command(exits_file, tmp_path, capsys):
    policy = tmp_path / "policy.json"
    ExitPolicy(thresholds=[0.0, None]).save(policy)            # every sample leaves at exit 0
    out = tmp_path / "stages.json"
    r = call_cli(capsys, "bench", exits_file, "--stages", "--policy", policy, "--data", "digits", "--runs", "3",
                 "--min_secs", "0", "--warmup_min_secs", "0", "--json", out)
    assert r.returncode == 0, r.stderr
    assert "@stage_2" in r.stdout and "expected under" in r.stdout
    data = json.loads(out.read_text())
    (row,) = data["stages"]
    assert row["reach"] == [1.0, 0.0, 0.0]
    assert row["expected_ms"] == pytest.approx(row["stage_ms"][0])
    assert [x["model"].rsplit("@", 1)[1] for x in data["results"]] == ["stage_0", "stage_1", "stage_2"]
    r = call_cli(capsys, "bench", exits_file, "--runs", "1", "--min_secs", "0", "--warmup_min_secs", "0")
    assert r.returncode == 0                                      # without --stages: the file's default subgraph
