"""Weights below 8 bits: int8, int4, ternary, binary and pow2 QAT of LeNet-5 on digits, exported and checked.

Per seed: train LeNet-5 (`tfc.models.lenet5`, digits resized to 28x28) in float; from it, for every grid,
`tfc.quantize(model, weights=grid)` and QAT with the same budget; `tfc.export(..., mode="int8")` (int4
kernels through ai-edge-quantizer, the others as int8 tensors); the file's accuracy next to the Keras QAT
model's and the float model's; whether every kernel of the file is exactly the trained grid
(`tfcompress.tflite.low_bit.grid_check`: integer levels equal, steps equal, distinct values per channel
within the grid's limit); the ops computing with int4 weights; file size against the int8 file's; bits
per weight stored and after Deep Compression's coding (what `tfcompress size` prints).

`nice -n 10 python benchmarks/low_bit.py --json out/low_bit.json --png out/low_bit.png` (3 seeds).
Accuracy is on the digits test split: 449 images, one image is 0.22 point.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from common import cpu_name  # noqa: E402
import tfcompress as tfc  # noqa: E402
from tfcompress._tf import keras  # noqa: E402
from tfcompress.data import fit_to_input, load  # noqa: E402
from tfcompress.tflite import low_bit, reader  # noqa: E402

GRIDS = ("int8", "int4", "ternary", "binary", "pow2")


def _digits():
    (x, y), (xt, yt) = load("digits", "train"), load("digits", "test")
    shape = (None, 28, 28, 1)
    return fit_to_input(x, shape)[0], y, fit_to_input(xt, shape)[0], yt


def _fit(model, x, y, epochs, lr, seed, batch=32):
    keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)
    return model


def _acc(model, x, y):
    return float((np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y).mean())


def run_seed(seed, data, args, folder):
    x, y, xt, yt = data
    keras.utils.set_random_seed(seed)
    base = _fit(tfc.models.lenet5(), x, y, args.epochs, 1e-3, seed)
    float_acc = _acc(base, xt, yt)
    rows = []
    for grid in tqdm(GRIDS, desc=f"seed {seed} grids", leave=False):
        qat = _fit(tfc.quantize(base, weights=grid, exponents=args.exponents), x, y, args.qat_epochs, args.qat_lr,
                   seed)
        path = os.path.join(folder, f"lenet5_{grid}_{seed}.tflite")
        report = tfc.export(qat, path, mode="int8", representative_data=x[:256], eval_data=(xt, yt),
                            layer_samples=0)
        checks = low_bit.grid_check(qat, path) if grid != "int8" else []
        _, bits = low_bit.weight_bits(path)
        kinds = {}
        for p in report.precision:
            if p["op"] in ("CONV_2D", "FULLY_CONNECTED"):
                kinds.setdefault(p["precision"], []).append(p["op"])
        dtypes = sorted({t.dtype for t in reader.weight_tensors(reader.read(path))}
                        | ({"int4"} if kinds.get("int4") else set()))
        rows.append({"seed": seed, "grid": grid, "float_accuracy": float_acc, "keras_accuracy": _acc(qat, xt, yt),
                     "file_accuracy": report.tflite_accuracy, "agreement": report.agreement,
                     "file_bytes": report.bytes, "stored_bits": bits["stored_bits"], "coded_bits": bits["coded_bits"],
                     "kernels": len(checks), "kernels_on_grid": sum(c["on_grid"] for c in checks),
                     "max_distinct_per_channel": max((c.get("distinct_per_channel", 0) for c in checks), default=None),
                     "limit": checks[0]["limit"] if checks else None,
                     "conv_fc_ops": {k: len(v) for k, v in kinds.items()}, "weight_dtypes": dtypes,
                     "relu6_pinned": report.relu6_all_pinned, "float_ops": report.float_ops})
    int8_bytes = rows[0]["file_bytes"]
    for r in rows:
        r["bytes_vs_int8"] = r["file_bytes"] / int8_bytes
    return rows


def _summary(rows):
    out = []
    for grid in GRIDS:
        rs = [r for r in rows if r["grid"] == grid]
        if not rs:
            continue
        def stat(key):
            v = np.array([r[key] for r in rs], float)
            return float(v.mean()), float(v.min()), float(v.max())
        out.append({"grid": grid, "seeds": len(rs), **{k: stat(k) for k in (
            "float_accuracy", "keras_accuracy", "file_accuracy", "file_bytes", "bytes_vs_int8", "stored_bits",
            "coded_bits")},
            "file_minus_keras_points": stat_diff(rs, "file_accuracy", "keras_accuracy"),
            "file_minus_float_points": stat_diff(rs, "file_accuracy", "float_accuracy"),
            "on_grid": f"{sum(r['kernels_on_grid'] for r in rs)}/{sum(r['kernels'] for r in rs)}",
            "max_distinct_per_channel": max((r["max_distinct_per_channel"] or 0) for r in rs),
            "limit": rs[0]["limit"], "conv_fc_ops": rs[0]["conv_fc_ops"]})
    return out


def stat_diff(rs, a, b):
    v = np.array([100 * (r[a] - r[b]) for r in rs])
    return float(v.mean()), float(v.min()), float(v.max())


def _table(summary):
    head = (f"{'weights':8} {'float':>7} {'Keras QAT':>10} {'file':>7} {'file-Keras':>11} {'file-float':>11} "
            f"{'bytes':>8} {'x int8':>7} {'bits':>5} {'coded':>6} {'on grid':>8} {'vals/ch':>8}  conv/fc ops")
    lines = [head]
    for s in summary:
        ops = ", ".join(f"{k} {v}" for k, v in s["conv_fc_ops"].items())
        lim = "" if s["limit"] is None else f"{s['max_distinct_per_channel']}/{s['limit']}"
        lines.append(f"{s['grid']:8} {s['float_accuracy'][0]:7.4f} {s['keras_accuracy'][0]:10.4f} "
                     f"{s['file_accuracy'][0]:7.4f} {s['file_minus_keras_points'][0]:+11.2f} "
                     f"{s['file_minus_float_points'][0]:+11.2f} {s['file_bytes'][0]:8.0f} {s['bytes_vs_int8'][0]:7.3f} "
                     f"{s['stored_bits'][0]:5.2f} {s['coded_bits'][0]:6.2f} {s['on_grid']:>8} {lim:>8}  {ops}")
    return "\n".join(lines)


def _plot(summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for s in summary:
        m, lo, hi = s["file_minus_float_points"]
        ax.errorbar(s["coded_bits"][0], m, yerr=[[m - lo], [hi - m]], fmt="o", capsize=4)
        ax.annotate(s["grid"], (s["coded_bits"][0], m), textcoords="offset points", xytext=(6, 4))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("bits per weight after coding (Deep Compression coding of the file's kernels)")
    ax.set_ylabel("file accuracy - float accuracy (points)")
    ax.set_title(f"LeNet-5 on digits, {summary[0]['seeds']} seeds (mean, min-max)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=20, help="float training epochs")
    p.add_argument("--qat_epochs", type=int, default=10)
    p.add_argument("--qat_lr", type=float, default=5e-4)
    p.add_argument("--exponents", type=int, default=4, help="pow2: exponents per channel")
    p.add_argument("--json", default="out/low_bit.json")
    p.add_argument("--png", default="out/low_bit.png")
    args = p.parse_args()
    data = _digits()
    rows, started = [], time.time()
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        for seed in tqdm([int(s) for s in args.seeds.split(",")], desc="seeds"):
            rows += run_seed(seed, data, args, folder)
            summary = _summary(rows)
            result = {"machine": cpu_name(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
                      "settings": vars(args), "seconds": time.time() - started, "summary": summary, "rows": rows}
            with open(args.json, "w") as f:   # after every seed: a stopped run keeps what it measured
                json.dump(result, f, indent=2, default=float)
    print(_table(summary))
    _plot(summary, args.png)
    print(f"wrote {args.json} and {args.png} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
