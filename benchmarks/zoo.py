"""The keras.applications zoo through every technique: which model goes where, and what comes out.

    python benchmarks/zoo.py [--models MobileNetV3Small,...] [--json out/zoo.json]

Per model (tf_keras.applications, `weights=None`, 10 classes, the smallest input each accepts near
96×96, BatchNorm statistics settled on 64 random images): magnitude pruning to 50 % (`tfc.prune` + strip),
clustering (16 clusters), QAT wrap and full-int8 export (integer-only? ReLU6 outputs pinned?), post-training
int8 export, `prune_channels(ratio=0.5)`: removing ≡ zeroing (max |diff| relative to the output's
range) and the MACs removed, and float32 against PTQ int8 latency (LiteRT, 1 thread, XNNPACK, medians of
interleaved runs in this process) with both file sizes. `--parts` picks the steps. Each step reports ✓ or its one-line error; one model's failure does not stop
the others. Files are written to a temporary folder; the JSON is written after each model.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from common import interleaved_ms  # noqa: E402
import tfcompress as tfc  # noqa: E402
from tfcompress._tf import keras  # noqa: E402
from tfcompress.pruning.channels import plan_and_prune, zeroed_reference  # noqa: E402
from tfcompress.tflite import reader  # noqa: E402

A = keras.applications
ZOO = {
    "MobileNet": lambda: A.MobileNet(input_shape=(96, 96, 3), alpha=0.25, weights=None, classes=10),
    "MobileNetV2": lambda: A.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10),
    "MobileNetV3Small": lambda: A.MobileNetV3Small(input_shape=(96, 96, 3), alpha=0.75, weights=None, classes=10),
    "MobileNetV3Large": lambda: A.MobileNetV3Large(input_shape=(96, 96, 3), alpha=0.75, weights=None, classes=10),
    "EfficientNetB0": lambda: A.EfficientNetB0(input_shape=(96, 96, 3), weights=None, classes=10),
    "EfficientNetV2B0": lambda: A.EfficientNetV2B0(input_shape=(96, 96, 3), weights=None, classes=10),
    "ResNet50": lambda: A.ResNet50(input_shape=(96, 96, 3), weights=None, classes=10),
    "DenseNet121": lambda: A.DenseNet121(input_shape=(96, 96, 3), weights=None, classes=10),
    "NASNetMobile": lambda: A.NASNetMobile(input_shape=(96, 96, 3), weights=None, classes=10),
}


def _first_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:240] if text else ''}"


def _step(row, key, fn):
    started = time.perf_counter()
    try:
        row[key] = fn()
    except Exception as e:   # the table reports every failure and goes on
        row[key] = {"error": _first_line(e)}
    row[key + "_s"] = round(time.perf_counter() - started, 1)


def _file(report, path):
    m = reader.read(path)
    return {"ok": True, "bytes": os.path.getsize(path), "integer_only": not reader.float_ops(m),
            "relu6": len(report.relu6), "relu6_pinned": sum(r["pinned"] for r in report.relu6)}


PARTS = ("prune", "cluster", "qat_int8", "ptq_int8", "prune_channels", "latency")


def run(name, tmp, x, parts=PARTS):
    row = {"model": name}
    model = ZOO[name]()
    tfc.recalibrate_batchnorm(model, x, batch_size=32)
    row["params"] = int(model.count_params())
    row["macs"] = int(tfc.analysis.macs(model))

    def prune():
        tfc.strip(tfc.prune(model, tfc.ConstantSparsity(0.5)))
        return {"ok": True}

    def cluster():
        tfc.strip(tfc.cluster(model, 16))
        return {"ok": True}

    def qat():
        q = tfc.quantize(model)
        path = os.path.join(tmp, f"{name}_qat.tflite")
        return _file(tfc.export(q, path, mode="int8", layer_samples=0), path)

    def ptq():
        path = os.path.join(tmp, f"{name}_ptq.tflite")
        return _file(tfc.export(model, path, mode="int8", representative_data=x[:32], layer_samples=0), path)

    def channels():
        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always")
            result = plan_and_prune(model, 0.5)
        small = result.model
        ref, out = zeroed_reference(model, result.removed)(x[:8]).numpy(), small(x[:8]).numpy()
        return {"ok": True, "macs_removed": 1 - tfc.analysis.macs(small) / row["macs"],
                "rel_diff": float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-12)),
                "blocked_notes": len(notes)}

    def latency():
        paths = [os.path.join(tmp, f"{name}_{mode}.tflite") for mode in ("float32", "int8")]
        tfc.export(model, paths[0], mode="float32", layer_samples=0)
        tfc.export(model, paths[1], mode="int8", representative_data=x[:32], layer_samples=0)
        ms = _interleaved(paths)
        return {"ok": True, "float32_ms": ms[0], "int8_ms": ms[1], "int8_speedup": ms[0] / ms[1],
                "float32_bytes": os.path.getsize(paths[0]), "int8_bytes": os.path.getsize(paths[1])}

    steps = {"prune": prune, "cluster": cluster, "qat_int8": qat, "ptq_int8": ptq, "prune_channels": channels,
             "latency": latency}
    for key in parts:
        print(f"  {name}: {key}", flush=True)
        _step(row, key, steps[key])
    return row


def _interleaved(paths, rounds=15, per_round=5, warmup=5):
    """Median ms per invoke of each file, 1 thread, XNNPACK; the files alternate round by round."""
    return [float(np.median(t)) for t in interleaved_ms(paths, rounds, per_round, warmup)]


def _cell(v):
    if not isinstance(v, dict):
        return str(v)
    if "error" in v:
        return "✗ " + v["error"][:60]
    if "integer_only" in v:
        return f"✓ {'int8' if v['integer_only'] else 'FLOAT OPS'} {v['relu6_pinned']}/{v['relu6']} {v['bytes'] / 1e6:.2f}MB"
    if "int8_speedup" in v:
        return f"✓ fp32 {v['float32_ms']:.2f} ms, int8 {v['int8_ms']:.2f} ms ({v['int8_speedup']:.2f}×)"
    if "macs_removed" in v:
        return f"✓ -{100 * v['macs_removed']:.1f}% MACs, diff {v['rel_diff']:.1e}"
    return "✓"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(ZOO))
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    p.add_argument("--json")
    args = p.parse_args()
    parts = [q for q in args.parts.split(",") if q]
    if set(parts) - set(PARTS):
        p.error(f"unknown part(s) {', '.join(sorted(set(parts) - set(PARTS)))}; choose from {', '.join(PARTS)}")
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(ZOO)}")
    x = np.random.default_rng(0).uniform(-1, 1, size=(64, 96, 96, 3)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names, 1):
            print(f"[{i}/{len(names)}] {name}", flush=True)
            rows.append(run(name, tmp, x, parts))
            if args.json:
                os.makedirs(os.path.dirname(os.path.abspath(args.json)) or ".", exist_ok=True)
                with open(args.json, "w") as f:
                    json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, f, indent=2)
    print()
    for r in rows:
        print(f"{r['model']:<18} params {r['params']:>10,}  " + " | ".join(
            f"{k} {_cell(r[k])}" for k in parts))


if __name__ == "__main__":
    main()
