"""`bench --plot` draws medians with p5–p95 whiskers from the JSON, a panel per device; `--compare` says slower or
faster in the table and carries the plain ratio in the JSON; p5 is read from benchmark_model's stat lines."""
import json

import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from adb_device.fixtures import models  # noqa: F401  (fixture)
from android_bench import report
from android_bench.parse import parse_output
from android_bench.results import BenchResult
from tfcompress.cli import main as cli

FAST = ["--runs", "20", "--min_secs", "0", "--warmup_min_secs", "0"]


def _skewed():
    """Two devices, two models, 1 and 4 threads, cpu and xnnpack: one slow run each, so std > mean."""
    out = []
    for device, scale in (("local", 1.0), ("adb:R58M", 9.0)):
        for model, f in (("m/float32.tflite", 1.0), ("m/int8.tflite", 0.6)):
            for threads in (1, 4):
                for delegate in ("cpu", "xnnpack"):
                    p50 = scale * f / threads * (1.4 if delegate == "cpu" else 1.0)
                    out.append(BenchResult(model=model, device=device, threads=threads, delegate=delegate, runs=50,
                                           avg_ms=p50 * 1.6, std_ms=p50 * 4.0, min_ms=p50 * 0.8, p5_ms=p50 * 0.85,
                                           p50_ms=p50, p95_ms=p50 * 1.3, max_ms=p50 * 30))
    return out


def _drawn(fig):
    """[(panel title, [(x, median)], [(x, low, high)], legend labels)] of the visible axes, as drawn."""
    panels = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        bars = [(p.get_x() + p.get_width() / 2, p.get_height()) for c in ax.containers if isinstance(c, BarContainer)
                for p in c.patches]
        whiskers = [(seg[0][0], seg[0][1], seg[1][1]) for c in ax.containers if isinstance(c, ErrorbarContainer)
                    for seg in c.lines[2][0].get_segments()]
        panels.append((ax.get_title(), bars, whiskers, [t.get_text() for t in ax.get_legend().get_texts()]))
    return panels


def test_whiskers_are_the_p5_p95_of_the_json_never_below_zero():
    results = report.from_json(report.to_json(_skewed()))     # what a user's --json file holds
    assert all(r.std_ms > r.p50_ms for r in results)           # mean ± std would have gone below zero
    fig = report.figure(results)
    try:
        drawn = _drawn(fig)
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
    assert [d[0] for d in drawn] == ["local", "adb:R58M"]       # one panel per device
    for (device, bars, whiskers, legend), panel in zip(drawn, report.plot_data(results)):
        mine = [r for r in results if r.device == device]
        assert legend == ["1 thread, cpu", "1 thread, xnnpack", "4 threads, cpu", "4 threads, xnnpack"]
        assert sorted(round(h, 9) for _, h in bars) == sorted(round(r.p50_ms, 9) for r in mine)
        assert sorted((round(lo, 9), round(hi, 9)) for _, lo, hi in whiskers) == sorted(
            (round(r.p5_ms, 9), round(r.p95_ms, 9)) for r in mine)
        assert min(lo for _, lo, _ in whiskers) > 0
        xs = {b["x"]: b for s in panel["series"] for b in s["bars"]}
        for x, lo, hi in whiskers:     # each whisker stands on its own bar
            bar = xs[min(xs, key=lambda k: abs(k - x))]
            assert (bar["low"], bar["high"]) == pytest.approx((lo, hi))


def test_a_result_without_percentiles_gets_its_mean_and_no_whisker():
    old = BenchResult(model="a.tflite", device="adb:X", threads=1, delegate="cpu", avg_ms=3.0, std_ms=5.0)
    failed = BenchResult(model="b.tflite", device="adb:X", threads=1, delegate="cpu").failed("no such file")
    (panel,) = report.plot_data([old, failed])
    a, b = panel["series"][0]["bars"]
    assert (a["value"], a["stat"], a["low"], a["high"], a["ok"]) == (3.0, "avg_ms", None, None, True)
    assert b["ok"] is False and b["value"] is None


def test_local_plot_and_compare_from_a_real_run(models, tmp_path, capsys):
    j, p = tmp_path / "r.json", tmp_path / "r.png"
    rc = cli(["bench", models["conv"], models["dense"], "--json", str(j), "--plot", str(p), "--compare", *FAST])
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = json.loads(j.read_text(encoding="utf-8"))
    assert all(0 < d["p5_ms"] <= d["p50_ms"] <= d["p95_ms"] for d in data)
    conv, dense = data
    assert "vs_first" in conv and conv["vs_first"]["text"] == "reference" and conv["vs_first"]["ratio"] == 1.0
    ratio = dense["p50_ms"] / conv["p50_ms"]
    assert dense["vs_first"] == {"model": conv["model"], "ratio": pytest.approx(ratio), "of": "p50_ms",
                                 "text": f"{ratio:.3g}× slower" if ratio >= 1 else f"{1 / ratio:.3g}× faster"}
    assert dense["vs_first"]["text"] in out.splitlines()[4] and "reference" in out.splitlines()[3]
    (panel,) = report.plot_data(report.from_json(j.read_text(encoding="utf-8")))
    bars = [b for s in panel["series"] for b in s["bars"]]
    assert [(b["low"], b["value"], b["high"]) for b in bars] == [(d["p5_ms"], d["p50_ms"], d["p95_ms"]) for d in data]
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("ratio,text", [(1.58, "1.58× slower"), (1 / 2.1, "2.1× faster"), (1.0, "same"),
                                        (12.34, "12.3× slower")])
def test_ratio_words_say_which_way(ratio, text):
    assert report.ratio_text(ratio) == text


def test_p5_comes_from_the_stat_line():
    r = parse_output("INFO: count=50 first=120 curr=100 min=90 max=900 avg=130 std=140 p5=95 median=101 p95=300\n"
                     "INFO: Inference timings in us: Init: 5000, First inference: 120, Warmup (avg): 120, "
                     "Inference (avg): 130\n")
    assert (r.p5_ms, r.p50_ms, r.p95_ms) == pytest.approx((0.095, 0.101, 0.3))
