"""Wall time of `fit` with tfc.prune + CompressionCallback vs plain fit vs tfmot's prune_low_magnitude +
UpdatePruningStep: LeNet-5 on digits (resized to 28x28), same process, interleaved repetitions.

    python benchmarks/fit_overhead.py [--epochs 5] [--repeats 5] [--json out/fit_overhead.json]

Each variant is built and warmed up by one epoch (tracing excluded), then timed over `--epochs`; the
table gives the median and the minimum over repetitions and each variant's ratio to plain fit.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tfcompress as tfc  # noqa: E402
from tfcompress import data, models  # noqa: E402
from tfcompress._tf import keras, tf, tfmot  # noqa: E402


def build(kind, steps_total):
    keras.utils.set_random_seed(0)
    model = models.lenet5()
    callbacks = []
    if kind == "tfcompress":
        model = tfc.prune(model, tfc.PolynomialDecay(0.8, end_step=steps_total, frequency=20))
        callbacks = [tfc.CompressionCallback()]
    elif kind == "tfmot":
        model = tfmot.sparsity.keras.prune_low_magnitude(
            model, pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, steps_total, frequency=20))
        callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model, callbacks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    x, y = data.load("digits", "train")
    x, _ = data.fit_to_input(x, (None, 28, 28, 1))
    steps = -(-len(x) // args.batch_size) * (args.epochs + 1)
    kinds = ["plain", "tfcompress", "tfmot"]
    built = {k: build(k, steps) for k in kinds}
    for k in kinds:  # trace and warm up
        m, cb = built[k]
        m.fit(x, y, epochs=1, batch_size=args.batch_size, verbose=0, callbacks=cb)
    times = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for k in kinds:
            m, cb = built[k]
            t0 = time.perf_counter()
            m.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0, callbacks=cb)
            times[k].append(time.perf_counter() - t0)
    sparsity = {l.layer.name: round(tfc.pruning.magnitude.sparsity(l), 4)
                for l in tfc.pruning.magnitude.wrappers(built["tfcompress"][0])}
    base = statistics.median(times["plain"])
    rows = []
    print(f"{'variant':<12} {'median s':>9} {'min s':>8} {'ratio (median)':>15} {'ratio (min)':>12}")
    for k in kinds:
        med, mn = statistics.median(times[k]), min(times[k])
        rows.append({"variant": k, "median_s": med, "min_s": mn, "ratio_median": med / base,
                     "ratio_min": mn / min(times["plain"]), "times_s": times[k]})
        print(f"{k:<12} {med:9.3f} {mn:8.3f} {med / base:15.3f} {mn / min(times['plain']):12.3f}")
    print(f"tfcompress sparsity after training: {sparsity}")
    result = {"benchmark": "fit_overhead", "model": "lenet5", "data": "digits 28x28", "epochs": args.epochs,
              "repeats": args.repeats, "batch_size": args.batch_size, "machine": platform.processor() or
              platform.machine(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
              "tensorflow": tf.__version__, "rows": rows, "sparsity": sparsity}
    if args.json:
        from tfcompress.fileio import write_text
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        write_text(args.json, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
