"""File, gzip -9 and Deep-Compression coded sizes of pruned models, plus pack/unpack speed.

    python benchmarks/size_coding.py [--sparsity 0.92] [--no-mobilenet] [--json out/size_coding.json]

Weights are pruned one-shot by magnitude (per layer, kernels only, no retraining: this measures the
file, not accuracy). LeNet-300-100 is the paper's first model (Han et al. 2016 report 40x for it with
pruning + 6-bit clustering + Huffman; here the values are int8 or float32, not clustered). Every pack
is unpacked and compared byte for byte.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from tfcompress import models  # noqa: E402
from tfcompress._tf import keras, tf  # noqa: E402
from tfcompress.tflite import pack, size  # noqa: E402


def prune(model, sparsity):
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None) if not hasattr(layer, "depthwise_kernel") else layer.depthwise_kernel
        if kernel is None:
            continue
        w = kernel.numpy()
        k = int(sparsity * w.size)
        if k:
            cut = np.partition(np.abs(w).reshape(-1), k - 1)[k - 1]
            w[np.abs(w) <= cut] = 0
            kernel.assign(w)
    return model


def convert(model, mode, x):
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        c.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = c.inference_output_type = tf.int8
    return c.convert()


def measure(name, data):
    t = time.perf_counter()
    report = size.size_report(data)
    blob = pack.pack(data)
    t_pack = time.perf_counter() - t
    t = time.perf_counter()
    assert pack.unpack(blob) == data, name
    t_unpack = time.perf_counter() - t
    d = report.to_dict()
    row = {k: d[k] for k in ("file_bytes", "gzip_bytes", "weight_bytes", "float32_bytes", "coded_bytes",
                             "pack_bytes", "ratio")}
    row.update(case=name, pack_s=round(t_pack, 3), unpack_s=round(t_unpack, 3),
               zero_fraction=round(1 - sum(t.nonzero for t in report.tensors)
                                   / max(1, sum(t.elements for t in report.tensors)), 4))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.92)
    ap.add_argument("--no-mobilenet", action="store_true", help="skip MobileNetV2 (3.5 M weights)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    args = ap.parse_args(argv)

    keras.utils.set_random_seed(0)
    rows = []
    x = np.random.RandomState(0).rand(32, 28, 28, 1).astype(np.float32)
    for label, sparsity in (("dense", 0.0), (f"pruned {args.sparsity:.0%}", args.sparsity)):
        model = prune(models.lenet300(), sparsity)
        for mode in ("float32", "int8"):
            rows.append(measure(f"LeNet-300-100 {label} {mode}", convert(model, mode, x)))
    if not args.no_mobilenet:
        model = prune(models.mobilenet_v2(), 0.5)
        rows.append(measure("MobileNetV2 pruned 50% dynamic", convert(model, "dynamic", None)))

    head = f"{'case':36} {'file':>10} {'gzip':>10} {'coded w':>10} {'.tfcz':>10} {'zeros':>6} {'vs f32':>7} " \
           f"{'pack s':>7} {'unpack s':>8}"
    print(head)
    for r in rows:
        print(f"{r['case']:36} {r['file_bytes']:>10,} {r['gzip_bytes']:>10,} {r['coded_bytes']:>10,} "
              f"{r['pack_bytes']:>10,} {100 * r['zero_fraction']:5.1f}% {r['ratio']:6.1f}x "
              f"{r['pack_s']:7.2f} {r['unpack_s']:8.2f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(os.path.abspath(args.json)), delete=False) as f:
            json.dump(rows, f, indent=2)
        os.replace(f.name, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
