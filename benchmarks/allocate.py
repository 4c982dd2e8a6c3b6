"""Per-layer ratios from a sensitivity scan (`tfc.allocate`) against one uniform ratio, at the same budget.

    nice -n 10 python benchmarks/allocate.py [--parts lenet,resnet] [--seeds 0,1,2]
        [--json out/allocate.json] [--png out/allocate.png]

Two aggressive budgets on digits, three seeds, the same fine-tuning for every allocation:

  lenet   LeNet-300-100 (`tfc.models.lenet300()`, digits resized to 28x28), 10 % of the weights of fc1, fc2
          and fc3 kept. Uniform: every layer at 90 %. Allocated: `tfc.sensitivity_scan` (weight granularity,
          levels 0.1 ... 0.9, 0.95, 0.98) then `tfc.allocate(report, 0.10, metric="params")` (method
          "size", and AIMET's "greedy"). Each: `tfc.prune(model, PolynomialDecay(..), layers=ratios)` fine-tuned
          10 epochs (Adam, cosine from 5e-4, the sparsity ramp over the first 2/3), stripped.
  resnet  the ResNet-style model of BENCHMARKS.md (`resnet_style((8, 8, 1), widths=(32, 64), stem_stride=1)`),
          25 % of the MACs kept. Uniform: `ratio_for_flops(model, 0.25)`, the same ratio for every group.
          Allocated: channel scan (l1; each candidate repaired as below, on 512 training images, unless
          `--plain_scan`) then `tfc.allocate(report, 0.25, metric="macs", round_to=None)`.
          Each: `tfc.prune_channels(.., compensate=x_train)`, BN re-estimated, fine-tuned 10 epochs (Adam,
          cosine from 3e-4).

Models train on the first 80 % of the digits training split (30 epochs, Adam, cosine from 1e-3 for LeNet, 3e-3
for the ResNet) and are scanned on the other 20 %, which no model trains on; accuracies are on the test split
(449 images: one image is 0.22 point). Budgets are checked on the pruned models themselves (kept non-zero
kernel weights; `tfc.analysis.macs`).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from architecture import _acc, _digits, _digits_resnet, _train  # noqa: E402
from common import cpu_name  # noqa: E402
import tfcompress as tfc  # noqa: E402
from tfcompress._tf import keras  # noqa: E402
from tfcompress.analysis import macs  # noqa: E402
from tfcompress.pruning.channels import ratio_for_flops  # noqa: E402

LENET_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
METHODS = ("uniform", "size", "greedy")


def _split(shape):
    x, y, xt, yt = _digits(shape)
    n = int(0.8 * len(x))
    return (x[:n], y[:n]), (x[n:], y[n:]), (xt, yt)


def _finetune(model, x, y, epochs, lr, seed, batch, callbacks=()):
    keras.utils.set_random_seed(seed)
    steps = epochs * int(np.ceil(len(x) / batch))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True, callbacks=list(callbacks))
    return model


def _kept_weights(model, names):
    kept = sum(int(np.count_nonzero(model.get_layer(n).kernel.numpy())) for n in names)
    return kept / sum(int(np.prod(model.get_layer(n).kernel.shape)) for n in names)


def lenet(seed, budget=0.10, epochs=30, finetune=10, finetune_lr=5e-4, folder=None):
    (x, y), val, (xt, yt) = _split((28, 28, 1))
    keras.utils.set_random_seed(seed)
    base = _train(tfc.models.lenet300(), x, y, epochs, 1e-3, seed, batch=32)
    report = tfc.sensitivity_scan(base, val, sparsities=LENET_LEVELS, verbose=0)
    if folder and seed == 0:
        report.plot(os.path.join(folder, "allocate_lenet_scan.png"), title="LeNet-300-100, weight scan (seed 0)")
    names = list(report.units)
    plans = {"uniform": dict.fromkeys(names, round(1 - budget, 6))}
    for method in METHODS[1:]:
        plans[method] = dict(tfc.allocate(report, budget, metric="params", method=method))
    steps = finetune * int(np.ceil(len(x) / 32))
    row = {"seed": seed, "unpruned": _acc(base, xt, yt), "plans": plans, "report": report.to_dict()}
    for method, ratios in plans.items():
        template = tfc.PolynomialDecay(0.5, begin_step=0, end_step=steps * 2 // 3, frequency=10)
        pruned = tfc.prune(base, template, layers=ratios)
        _finetune(pruned, x, y, finetune, finetune_lr, seed, 32, [tfc.CompressionCallback()])
        small = tfc.strip(pruned)
        row[method] = _acc(small, xt, yt)
        row[f"{method}_kept"] = _kept_weights(small, names)
    return row


def resnet(seed, budget=0.25, epochs=30, finetune=10, finetune_lr=3e-4, folder=None, repair=True, max_ratio=0.95):
    (x, y), val, (xt, yt) = _split((8, 8, 1))
    base = _train(_digits_resnet(seed), x, y, epochs, 3e-3, seed)
    report = tfc.sensitivity_scan(base, val, granularity="channel", repair=x[:512] if repair else None, verbose=0)
    if folder and seed == 0 and max_ratio == 0.95:
        tag = "repair" if repair else "plain"
        report.plot(os.path.join(folder, f"allocate_resnet_scan_{tag}.png"),
                    title=f"ResNet-style, channel scan{' with repair' if repair else ''} (seed 0)")
    uniform = ratio_for_flops(base, budget)
    plans = {"uniform": uniform}
    for method in METHODS[1:]:
        plans[method] = dict(tfc.allocate(report, budget, metric="macs", round_to=None, method=method,
                                          max_ratio=max_ratio))
    row = {"seed": seed, "unpruned": _acc(base, xt, yt), "plans": plans, "report": report.to_dict()}
    total = macs(base)
    for method, ratios in plans.items():
        small = tfc.prune_channels(base, ratios, compensate=x)
        tfc.recalibrate_batchnorm(small, x, batch_size=64)
        row[f"{method}_calibrated"] = _acc(small, xt, yt)
        row[f"{method}_kept"] = macs(small) / total
        row[method] = _acc(_finetune(small, x, y, finetune, finetune_lr, seed, 64), xt, yt)
    return row


def summarize(name, rows, budget, what):
    mean = {m: float(np.mean([r[m] for r in rows])) for m in ("unpruned",) + METHODS}
    kept = {m: float(np.mean([r[f"{m}_kept"] for r in rows])) for m in METHODS}
    print(f"\n{name}: {what} kept, budget {budget:.0%}; test accuracy after the same fine-tuning, seeds "
          f"{[r['seed'] for r in rows]}")
    print(f"{'allocation':<12}{'kept':>8}" + "".join(f"{'seed ' + str(r['seed']):>9}" for r in rows)
          + f"{'mean':>9}{'vs uniform':>12}")
    print(f"{'unpruned':<12}{1:>8.3f}" + "".join(f"{r['unpruned']:>9.4f}" for r in rows) + f"{mean['unpruned']:>9.4f}")
    for m in METHODS:
        gap = "" if m == "uniform" else f"{100 * (mean[m] - mean['uniform']):>+11.2f}p"
        print(f"{m:<12}{kept[m]:>8.4f}" + "".join(f"{r[m]:>9.4f}" for r in rows) + f"{mean[m]:>9.4f}{gap}")
    return {"mean": mean, "kept": kept, "gain_points": {m: 100 * (mean[m] - mean["uniform"]) for m in METHODS[1:]}}


def plot(out, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    parts = [p for p in ("lenet", "resnet") if out.get(p, {}).get("seeds")]
    fig, axes = plt.subplots(1, len(parts), figsize=(5 * len(parts), 4), squeeze=False)
    titles = {"lenet": "LeNet-300-100, 10 % of weights", "resnet": "ResNet-style, 25 % of MACs"}
    for ax, part in zip(axes[0], parts):
        rows = out[part]["seeds"]
        for i, m in enumerate(METHODS):
            vals = [100 * r[m] for r in rows]
            ax.scatter([i] * len(vals), vals, alpha=0.6)
            ax.hlines(np.mean(vals), i - 0.25, i + 0.25, color="k")
        ax.axhline(100 * np.mean([r["unpruned"] for r in rows]), color="grey", ls="--", label="unpruned (mean)")
        ax.set_xticks(range(len(METHODS)), METHODS)
        ax.set_ylabel("test accuracy after fine-tuning (%)")
        ax.set_title(titles[part])
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="lenet,resnet")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--png", default=None, metavar="PATH")
    p.add_argument("--plain_scan", action="store_true",
                   help="resnet: scan without repair (no mean compensation or BN re-estimation per candidate)")
    p.add_argument("--max_ratio", type=float, default=0.95, help="resnet: allocate's max_ratio (default: 0.95)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    folder = os.path.dirname(os.path.abspath(args.png)) if args.png else None
    out = {"cpu": cpu_name(), "date": time.strftime("%Y-%m-%d"), "resnet_scan": "plain" if args.plain_scan else "repair",
           "resnet_max_ratio": args.max_ratio}
    jobs = [(part, seed) for part in args.parts.split(",") for seed in seeds]
    for part, seed in tqdm(jobs, desc="allocate"):
        row = lenet(seed, folder=folder) if part == "lenet" else resnet(seed, folder=folder,
                                                                          repair=not args.plain_scan,
                                                                          max_ratio=args.max_ratio)
        out.setdefault(part, {"seeds": []})["seeds"].append(row)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
    for part, budget, what in (("lenet", 0.10, "weights of fc1-fc3"), ("resnet", 0.25, "MACs")):
        if part in out:
            out[part].update(summarize(part, out[part]["seeds"], budget, what))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.png:
        plot(out, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
