"""LiteRT latency of float32 / int8 / float16 / dynamic files on this host, and export time against the
bare TFLite converter: MobileNetV2-1.0 at 224x224 (random weights) and the reference MobileNetV2-style
model (16x16x1).

    python benchmarks/int8_speed.py [--models mobilenet_v2,reference] [--threads 1,2] [--runs 50]
                                    [--min_secs 1.0] [--repeats 1] [--samples 32] [--json out/int8_speed.json]

Per model: `tfc.export` in each mode, plus `bare_int8` from TFLiteConverter alone (same representative
data, int8 in/out, no ReLU6 pinning). Latency is LiteRT through `android_bench.runners.LocalRunner`
(XNNPACK), the median over `--repeats` of each run's average; files are measured interleaved, so load
changes hit every variant alike. Ratios are to float32 of the same run. Goals: our int8 within 3 % of
bare_int8, our int8 export within 1.2x the bare converter's time.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import tfcompress as tfc  # noqa: E402
from tfcompress import models  # noqa: E402
from tfcompress._tf import tf  # noqa: E402

MODES = ("float32", "int8", "float16", "dynamic")
BUILDERS = {"mobilenet_v2": lambda: models.mobilenet_v2(), "reference": lambda: models.mobilenet_v2_small()}


def bare_int8(model, x, path):
    """TFLiteConverter alone: full int8 with int8 input and output."""
    started = time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    data = conv.convert()
    seconds = time.perf_counter() - started
    with open(path, "wb") as f:
        f.write(data)
    return len(data), seconds


def settle_batchnorm(model, x):
    """Random weights with BatchNorm's initial statistics make activations vanish layer after layer
    (MobileNetV2's last ReLU6 outputs ~1e-6), which no trained model does and which gives int8 scales
    no converter setting is meant for. One forward pass in training mode with momentum 0 sets every
    BN's statistics to the data's, so activations have trained-like ranges. Latency is unaffected."""
    from tfcompress._tf import keras
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    saved = [l.momentum for l in bns]
    for l in bns:
        l.momentum = 0.0
    model(x, training=True)
    for l, m in zip(bns, saved):
        l.momentum = m


def export_all(name, folder, samples):
    model = BUILDERS[name]()
    shape = (samples, *model.input_shape[1:])
    x = np.random.RandomState(0).uniform(0, 1, shape).astype(np.float32)
    settle_batchnorm(model, x)
    files = {}
    for mode in MODES:
        path = os.path.join(folder, f"{name}_{mode}.tflite")
        r = tfc.export(model, path, mode=mode, representative_data=x, samples=samples, layer_samples=0)
        files[mode] = {"path": path, "bytes": r.bytes, "export_s": r.seconds,
                       "relu6_pinned": f"{sum(p['pinned'] for p in r.relu6)}/{len(r.relu6)}" if r.relu6 else None}
        print(f"  {name} {mode}: {r.bytes:,} bytes, exported in {r.seconds:.1f} s", flush=True)
    path = os.path.join(folder, f"{name}_bare_int8.tflite")
    size, seconds = bare_int8(model, x, path)
    files["bare_int8"] = {"path": path, "bytes": size, "export_s": seconds, "relu6_pinned": None}
    print(f"  {name} bare_int8: {size:,} bytes, converted in {seconds:.1f} s", flush=True)
    return files


def measure(files, threads, runs, min_secs, repeats):
    from android_bench.runners import BenchConfig, LocalRunner
    runner = LocalRunner()
    samples = {(v, t): [] for v in files for t in threads}
    for _ in range(repeats):
        for t in threads:
            for variant, f in files.items():     # interleaved: noise from other jobs hits all variants
                r = runner.run(f["path"], BenchConfig(threads=t, runs=runs, min_secs=min_secs))
                if not r.ok:
                    print(f"  {os.path.basename(f['path'])} at {t} threads failed: {r.error}", flush=True)
                    continue
                samples[(variant, t)].append(r.avg_ms)
    return {k: statistics.median(v) if v else float("nan") for k, v in samples.items()}


def table(rows, threads):
    head = f"{'model':<14}{'variant':<11}{'bytes':>12}{'export s':>10}" + "".join(
        f"{f'{t}T ms':>10}{f'{t}T x':>8}" for t in threads)
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['model']:<14}{r['variant']:<11}{r['bytes']:>12,}{r['export_s']:>10.2f}" + "".join(
            f"{r['ms'][str(t)]:>10.3f}{r['speedup'][str(t)]:>8.2f}" for t in threads))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,reference")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--min_secs", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--samples", type=int, default=32, help="representative samples for int8 calibration")
    ap.add_argument("--out", default=None, help="folder for the .tflite files (default: a temporary one)")
    ap.add_argument("--json", default=None, metavar="PATH")
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        ap.error(f"unknown model {unknown[0]!r}; choose from {', '.join(BUILDERS)}")
    threads = [int(t) for t in args.threads.split(",")]
    folder = args.out or tempfile.mkdtemp(prefix="int8_speed_")
    os.makedirs(folder, exist_ok=True)
    rows, summary = [], {}
    for name in names:
        print(f"exporting {name}", flush=True)
        files = export_all(name, folder, args.samples)
        print(f"measuring {name}", flush=True)
        ms = measure(files, threads, args.runs, args.min_secs, args.repeats)
        for variant, f in files.items():
            rows.append({"model": name, "variant": variant, "bytes": f["bytes"], "export_s": f["export_s"],
                         "relu6_pinned": f["relu6_pinned"],
                         "ms": {str(t): ms[(variant, t)] for t in threads},
                         "speedup": {str(t): ms[("float32", t)] / ms[(variant, t)] for t in threads}})
        summary[name] = {
            "int8_vs_bare_latency": {str(t): ms[("int8", t)] / ms[("bare_int8", t)] for t in threads},
            "int8_export_vs_bare": files["int8"]["export_s"] / files["bare_int8"]["export_s"],
            "size_ratio_to_float32": {v: files["float32"]["bytes"] / f["bytes"] for v, f in files.items()},
        }
    print()
    print(table(rows, threads))
    print()
    for name, s in summary.items():
        lat = ", ".join(f"{t}T {v:.3f}" for t, v in s["int8_vs_bare_latency"].items())
        sizes = ", ".join(f"{v} {r:.2f}x" for v, r in s["size_ratio_to_float32"].items() if v != "float32")
        print(f"{name}: int8 latency / bare int8: {lat} (goal <= 1.03); int8 export time / bare: "
              f"{s['int8_export_vs_bare']:.2f} (goal <= 1.2); float32 size / size: {sizes}")
    result = {"host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(),
              "load_avg": os.getloadavg(), "args": vars(args), "rows": rows, "summary": summary,
              "note": "ratios from one run on a shared machine; re-run on a quiet one for the reference numbers"}
    if args.json:
        from tfcompress.fileio import write_text
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        write_text(args.json, json.dumps(result, indent=2))
        print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
