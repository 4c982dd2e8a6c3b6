"""android_bench.parse against real benchmark_model outputs (tests/data/benchmark_outputs/SOURCES.md)."""
import os

import numpy as np
import pytest

from android_bench import parse_output
from android_bench.results import FIELDS, BenchResult

DATA = os.path.join(os.path.dirname(__file__), "data", "benchmark_outputs")


def _read(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return f.read()


# file -> exact numbers printed in it (ms / MB); None = the file does not say.
EXPECTED = {
    "F1_2019_zedboard.txt": dict(runs=50, init_ms=18.764, first_ms=393.5, warmup_avg_ms=395.037,
                                 avg_ms=394.183, std_ms=4.373, min_ms=389.982, max_ms=417.669,
                                 mem_init_mb=None, mem_overall_mb=None, threads=2),
    "F3_2020_iccd.log": dict(runs=81, init_ms=0.389, first_ms=13.196, warmup_avg_ms=12.3579, avg_ms=12.35,
                             std_ms=0.208, min_ms=12.25, max_ms=14.065, mem_init_mb=4.64453,
                             mem_overall_mb=11.3438, mem_peak_mb=11.3438, threads=4),
    "F4a_2021_lp6m_cpu.txt": dict(runs=50, init_ms=16.242, first_ms=360.262, warmup_avg_ms=304.586,
                                  avg_ms=249.684, std_ms=1.442, min_ms=247.067, max_ms=254.474,
                                  mem_init_mb=4.92969, mem_overall_mb=138.809),
    "F4b_2021_lp6m_nnapi_gpu_fp32.txt": dict(runs=50, init_ms=404.292, first_ms=188.086, warmup_avg_ms=175.313,
                                             avg_ms=156.669, std_ms=2.352, min_ms=149.738, max_ms=161.935,
                                             mem_init_mb=6.80469, mem_overall_mb=61.0078),
    # Only the op profiles survive in this excerpt: the regular-run profiler timings stand in.
    "F4c_2021_lp6m_nnapi_profile.txt": dict(runs=50, init_ms=729.391, avg_ms=158.715, std_ms=2.931,
                                            min_ms=146.535, max_ms=166.638, first_ms=None),
    "F5_2022_riscv_qemu.txt": dict(runs=50, init_ms=17.187, first_ms=3512.391, warmup_avg_ms=3512.39,
                                   avg_ms=2950.34, std_ms=109.798, min_ms=2727.568, max_ms=3189.954,
                                   mem_init_mb=4.21094, mem_overall_mb=46.0859, mem_peak_mb=None, threads=4),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_outputs_numbers(name):
    r = parse_output(_read(name))
    assert r.ok, r.error
    for key, value in EXPECTED[name].items():
        got = getattr(r, key)
        if value is None:
            assert got is None, key
        else:
            assert got == pytest.approx(value, rel=1e-9), key


@pytest.mark.parametrize("name,code", [("F4d_2021_lp6m_nnapi_qti_default_fail.txt", "ANEURALNETWORKS_OP_FAILED"),
                                       ("F4e_2021_lp6m_nnapi_qti_dsp_fail.txt", "ANEURALNETWORKS_BAD_DATA")])
def test_failed_delegate_outputs(name, code):
    r = parse_output(_read(name))
    assert r.ok is False
    assert r.error.startswith("Failed to apply NNAPI delegate")
    assert code in r.error
    assert "\n" not in r.error
    assert r.avg_ms is None and r.delegate == "nnapi" and r.threads == 4


def test_every_shared_output_is_read():
    names = sorted(n for n in os.listdir(DATA) if n.startswith("F"))
    assert len(names) == 8
    results = {n: parse_output(_read(n)) for n in names}
    assert sorted(n for n, r in results.items() if not r.ok) == [
        "F4d_2021_lp6m_nnapi_qti_default_fail.txt", "F4e_2021_lp6m_nnapi_qti_dsp_fail.txt"]


def test_op_profile_rows():
    r = parse_output(_read("F3_2020_iccd.log"))
    assert len(r.op_profile) == 31  # the regular-run table, not the init one (1 row)
    assert r.op_profile[0] == {"type": "CONV_2D", "first_ms": 0.732, "avg_ms": 0.551, "percent": 4.459,
                               "times_called": 1, "name": "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0"}
    old = parse_output(_read("F1_2019_zedboard.txt"))
    assert len(old.op_profile) == 31 and old.op_profile[1]["avg_ms"] == 15.547
    nnapi = parse_output(_read("F4c_2021_lp6m_nnapi_profile.txt"))
    assert sum(row["type"] == "TfLiteNnapiDelegate" for row in nnapi.op_profile) == 3


INFO_ERA = """INFO: STARTING!
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/m.tflite]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/m.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
VERBOSE: Replacing 29 out of 31 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 2 partitions for the whole graph.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 2 delegate kernels.
INFO: The input model file size (MB): 4.27635
INFO: Initialized session in 41.82ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=40 first=15032 curr=12201 min=12012 max=15032 avg=12480.5 std=470 p5=12020 median=12340 p95=13001

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=82 first=12210 curr=12190 min=11990 max=13350 avg=12203.4 std=180 p5=12001 median=12180 p95=12650

INFO: Inference timings in us: Init: 41820, First inference: 15032, Warmup (avg): 12480.5, Inference (avg): 12203.4
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=6.17 overall=13.9
INFO: Overall peak memory footprint (MB) via periodic monitoring: 17.25
"""


def test_info_prefixed_percentiles_and_partial_delegate():
    r = parse_output(INFO_ERA)
    assert r.ok
    assert (r.runs, r.threads, r.delegate) == (82, 4, "xnnpack")
    assert r.init_ms == pytest.approx(41.82) and r.first_ms == pytest.approx(15.032)
    assert r.warmup_avg_ms == pytest.approx(12.4805) and r.avg_ms == pytest.approx(12.2034)
    assert (r.p50_ms, r.p95_ms, r.p90_ms) == (pytest.approx(12.18), pytest.approx(12.65), None)
    assert (r.mem_init_mb, r.mem_overall_mb, r.mem_peak_mb) == (6.17, 13.9, 17.25)
    assert (r.delegated_nodes, r.total_nodes) == (29, 31)


LITERT = """INFO: [benchmark_litert_model.cc:120] Loaded model
INFO: [benchmark_litert_model.h:72] 
========== BENCHMARK RESULTS ==========
INFO: [benchmark_litert_model.h:73] Model initialization: 12.34 ms
INFO: [benchmark_litert_model.h:74] Warmup (first):       5.67 ms
INFO: [benchmark_litert_model.h:76] Warmup (avg):         4.56 ms (10 runs)
INFO: [benchmark_litert_model.h:78] Inference (avg):      3.21 ms (50 runs)
INFO: [benchmark_litert_model.h:82] Inference (min):      3.01 ms
INFO: [benchmark_litert_model.h:84] Inference (max):      4.02 ms
INFO: [benchmark_litert_model.h:86] Inference (std):      0.15
INFO: [benchmark_litert_model.h:92] Throughput:           55.10 MB/s
INFO: [benchmark_litert_model.h:101] 
Memory Usage:
INFO: [benchmark_litert_model.h:102] Init footprint:       7.25 MB
INFO: [benchmark_litert_model.h:104] Overall footprint:    9.50 MB
INFO: [benchmark_litert_model.h:109] Peak memory:          11.75 MB
INFO: [benchmark_litert_model.h:115] ======================================
"""


def test_litert_results_block_in_ms():
    r = parse_output(LITERT)
    assert r.ok, r.error
    assert (r.init_ms, r.first_ms, r.warmup_avg_ms, r.avg_ms) == (12.34, 5.67, 4.56, 3.21)
    assert (r.min_ms, r.max_ms, r.std_ms, r.runs) == (3.01, 4.02, 0.15, 50)
    assert (r.mem_init_mb, r.mem_overall_mb, r.mem_peak_mb) == (7.25, 9.5, 11.75)


def test_failures_without_timings():
    r = parse_output("STARTING!\nGraph: [/x.tflite]\nERROR: Model file doesn't exist\nBenchmarking failed.\n")
    assert not r.ok and r.error == "Model file doesn't exist"
    gpu = parse_output("INFO: Though GPU delegate is explicitly applied, the model graph will not be executed "
                       "by the delegate.\ncount=10 first=100 curr=100 min=100 max=100 avg=100 std=0\n")
    assert gpu.ok and gpu.delegated_nodes == 0 and gpu.avg_ms == 0.1
    failed_gpu = parse_output("ERROR: Failed to apply GPU delegate.\nBenchmarking failed.\n")
    assert not failed_gpu.ok and failed_gpu.error == "Failed to apply GPU delegate"
    assert parse_output("").error == "no inference timings in the benchmark output"


def test_known_fields_win_and_round_trip():
    r = parse_output(_read("F4a_2021_lp6m_cpu.txt"), model="a.tflite", device="adb:X", runner="adb",
                     threads=4, delegate="cpu")
    d = r.to_dict()
    assert list(d) == list(FIELDS)
    assert d["model"] == "a.tflite" and d["device"] == "adb:X" and d["p90_ms"] is None
    assert BenchResult.from_dict(d) == r
    with pytest.raises(ValueError, match="unknown"):
        BenchResult.from_dict({"avg": 1})


def test_mean_ci_is_the_batch_means_interval():
    from android_bench.edge_runner import mean_ci
    rng = np.random.default_rng(0)
    times = list(rng.normal(1000.0, 50.0, size=1003))
    means = np.asarray(times[3:]).reshape(10, 100).mean(1)  # the 3 oldest runs are dropped
    assert mean_ci(times) == pytest.approx(2.2622 * means.std(ddof=1) / np.sqrt(10), rel=1e-9)
    assert mean_ci(times[:19]) is None
    # a drift between the first and second half widens the interval far beyond the i.i.d. standard error
    drift = list(rng.normal(1000.0, 5.0, size=500)) + list(rng.normal(1100.0, 5.0, size=500))
    assert mean_ci(drift) > 5 * 1.96 * np.std(drift) / np.sqrt(len(drift))


def test_edge_runner_ci_line_is_parsed():
    text = ("INFO: Inference timings in us: Init: 100, First inference: 900, Warmup (avg): 900, Inference (avg): 800\n"
            "INFO: 95% confidence interval of the mean in us: +-12.5 (1.56 %) from 10 batch means\n"
            "INFO: No delegate applied: all 7 node(s) run on the built-in kernels.\n")
    r = parse_output(text)
    assert r.ok and r.avg_ms == 0.8 and r.ci95_ms == 0.0125
    assert (r.delegated_nodes, r.total_nodes) == (0, 7)
