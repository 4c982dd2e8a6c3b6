"""Cross-layer equalization and bias correction for per-tensor int8 post-training quantization, measured.

Model: `tfc.models.mobilenet_v2_small` (16x16x1 digits) with every ReLU6 replaced by ReLU before
training (a positive per-channel scale commutes with ReLU, not with ReLU6's clip at 6; see part
``relu6``). Per seed: train, re-estimate the BN statistics, fold BN, then make it *hard*: an inverse
equalization with random per-channel scales `10 ** U(-spread, spread)` on every pair `tfc.equalize`
would scale (the first layer's output channel c divided by s[c], the next layer's input channel c
multiplied by it), which leaves the float function as it is and spreads the per-channel weight ranges
within a layer over orders of magnitude, as BN folding does in trained MobileNetV2s. Then int8 PTQ
(LiteRT, ReLU6-free so nothing is pinned) of: the hard model per channel and per tensor, per tensor with
bias correction, equalized (`tfc.equalize`) per tensor, equalized per tensor with bias correction, and
the trained model before the inverse equalization per tensor (for reference).

Part ``relu6`` (seed 0): the unmodified ReLU6 model trained the same way; which pairs `tfc.equalize`
skips with `relu6="skip"`, and what `relu6="relu"` costs in float accuracy.

`nice -n 10 python benchmarks/equalization.py --json out/equalization.json --png out/equalization.png`
(3 seeds, spread 1.0). Prints the table (accuracy per seed, mean, points against float, and the mean
|E[file logits - float logits]| over the 10 logits on the test split) and the acceptance checks.
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
from tfcompress.graph import Rewrite  # noqa: E402
from tfcompress.quantization.equalize import channel_range_ratios, find_pairs, fold_batchnorm, rescale  # noqa: E402
from tfcompress.tflite.runtime import run  # noqa: E402

SHAPE = (16, 16, 1)
CONFIGS = [  # (key, label, which model, per_channel, bias_correction)
    ("trained_pt", "trained, per-tensor", "trained", False, False),
    ("hard_pc", "hard, per-channel", "hard", True, False),
    ("hard_pt", "hard, per-tensor", "hard", False, False),
    ("hard_pt_bc", "hard, per-tensor + BC", "hard", False, True),
    ("eq_pt", "equalized, per-tensor", "equalized", False, False),
    ("eq_pt_bc", "equalized, per-tensor + BC", "equalized", False, True),
]


def _digits():
    (x, y), (xt, yt) = load("digits", "train"), load("digits", "test")
    return fit_to_input(x, (None,) + SHAPE)[0], y, fit_to_input(xt, (None,) + SHAPE)[0], yt


def _relu_variant(model):
    r = Rewrite(model)
    for layer in model.layers:
        if isinstance(layer, keras.layers.ReLU):
            r.replace(layer.name, lambda l, t: keras.layers.ReLU(name=l.name)(t))
    return r.apply()


def _train(model, x, y, seed, epochs):
    keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    tfc.recalibrate_batchnorm(model, x)
    return model


def _acc(model, x, y):
    return float((np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y).mean())


def make_hard(model, seed, spread):
    """BN folded, then every equalizable pair scaled by random per-channel factors (function unchanged)."""
    hard, _ = fold_batchnorm(model)
    pairs, _ = find_pairs(hard)
    rs = np.random.RandomState(1000 + seed)
    for a, b, _ in pairs:
        rescale(hard, (a, b), 10 ** rs.uniform(-spread, spread, int(hard.get_layer(a).output.shape[-1])))
    return hard, len(pairs)


def _ratios(model):
    r = channel_range_ratios(model)
    return {"max": max(r.values()), "median": float(np.median(list(r.values()))),
            "layers_over_100": sum(v >= 100 for v in r.values()), "layers": len(r)}


def run_seed(seed, args, x, y, xt, yt, folder):
    keras.utils.set_random_seed(seed)
    trained = _train(_relu_variant(tfc.models.mobilenet_v2_small(SHAPE)), x, y, seed, args.epochs)
    hard, n_pairs = make_hard(trained, seed, args.spread)
    started = time.perf_counter()
    equalized, report = tfc.equalize(hard, report=True)
    eq_seconds = time.perf_counter() - started
    ref = trained.predict(xt, verbose=0)
    row = {"seed": seed, "float": _acc(trained, xt, yt), "pairs": n_pairs, "equalize_passes": report.iterations,
           "equalize_seconds": eq_seconds,
           "hard_max_abs_diff": float(np.abs(hard.predict(xt, verbose=0) - ref).max()),
           "equalized_max_abs_diff": float(np.abs(equalized.predict(xt, verbose=0) - ref).max()),
           "ratios_trained": _ratios(trained), "ratios_hard": _ratios(hard), "ratios_equalized": _ratios(equalized)}
    models = {"trained": trained, "hard": hard, "equalized": equalized}
    for key, _, which, per_channel, bc in tqdm(CONFIGS, desc=f"seed {seed} exports", leave=False):
        path = os.path.join(folder, f"{key}.tflite")
        rep = tfc.export(models[which], path, representative_data=x[:256], eval_data=(xt, yt),
                         per_channel=per_channel, bias_correction=bc, layer_samples=0)
        row[key] = rep.tflite_accuracy
        # the mean logit shift of the file against the float model: what bias correction targets
        row[f"{key}_shift"] = float(np.abs((run(path, xt) - ref).mean(0)).mean())
    return row


def run_relu6(args, x, y, xt, yt):
    """The ReLU6 model: what equalize skips, and the float cost of relu6='relu'."""
    trained = _train(tfc.models.mobilenet_v2_small(SHAPE), x, y, 0, args.epochs)
    _, skip = tfc.equalize(trained, relu6="skip", report=True)
    relu, conv = tfc.equalize(trained, relu6="relu", report=True)
    diff = float(np.abs(relu.predict(xt, verbose=0) - trained.predict(xt, verbose=0)).max())
    return {"float": _acc(trained, xt, yt), "skip_pairs": [p["pair"] for p in skip.pairs],
            "skipped": len(skip.skipped), "skipped_example": skip.skipped[0] if skip.skipped else None,
            "relu_pairs": len(conv.pairs), "converted": len(conv.converted), "relu_float": _acc(relu, xt, yt),
            "relu_max_abs_diff": diff}


def _table(rows):
    head = (f"{'configuration':<30}" + "".join(f"{'seed ' + str(r['seed']):>9}" for r in rows)
            + f"{'mean':>9}{'vs float':>10}{'logit shift':>13}")
    lines = [head, "-" * len(head)]
    fl = np.mean([r["float"] for r in rows])
    lines.append(f"{'float (Keras)':<30}" + "".join(f"{100 * r['float']:9.2f}" for r in rows) + f"{100 * fl:9.2f}")
    for key, label, *_ in CONFIGS:
        vals = [r[key] for r in rows]
        lines.append(f"{label:<30}" + "".join(f"{100 * v:9.2f}" for v in vals)
                     + f"{100 * np.mean(vals):9.2f}{100 * (np.mean(vals) - fl):+10.2f}"
                     + f"{np.mean([r[key + '_shift'] for r in rows]):13.4f}")
    return "\n".join(lines)


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = ["float"] + [c[1] for c in CONFIGS]
    keys = ["float"] + [c[0] for c in CONFIGS]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for i, k in enumerate(keys):
        vals = [100 * r[k] for r in rows]
        ax.bar(i, np.mean(vals), color="#4c72b0" if i == 0 else ("#c44e52" if k.startswith("hard") else "#55a868"))
        ax.scatter([i] * len(vals), vals, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("digits test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"MobileNetV2-style (ReLU), per-channel weight ranges spread >= 100x: int8 PTQ, {len(rows)} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--spread", type=float, default=1.0, help="random scales 10**U(-spread, spread)")
    p.add_argument("--parts", default="main,relu6")
    p.add_argument("--json", default="out/equalization.json")
    p.add_argument("--png", default="out/equalization.png")
    args = p.parse_args(argv)
    x, y, xt, yt = _digits()
    parts = args.parts.split(",")
    out = {"machine": cpu_name(), "python": platform.python_version(), "spread": args.spread,
           "epochs": args.epochs, "rows": []}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    if "main" in parts:
        with tempfile.TemporaryDirectory() as folder:
            for seed in tqdm([int(s) for s in args.seeds.split(",")], desc="seeds"):
                out["rows"].append(run_seed(seed, args, x, y, xt, yt, folder))
                with open(args.json, "w") as f:
                    json.dump(out, f, indent=2, default=float)
        rows = out["rows"]
        print(_table(rows))
        for r in rows:
            print(f"seed {r['seed']}: range ratio per layer (largest / median, layers >= 100x of {r['ratios_hard']['layers']}): "
                  f"trained {r['ratios_trained']['max']:.0f} / {r['ratios_trained']['median']:.1f} "
                  f"({r['ratios_trained']['layers_over_100']}), hard {r['ratios_hard']['max']:.0f} / "
                  f"{r['ratios_hard']['median']:.0f} ({r['ratios_hard']['layers_over_100']}), equalized "
                  f"{r['ratios_equalized']['max']:.1f} / {r['ratios_equalized']['median']:.1f} "
                  f"({r['ratios_equalized']['layers_over_100']}); max |logits - trained's|: hard "
                  f"{r['hard_max_abs_diff']:.2e}, equalized {r['equalized_max_abs_diff']:.2e}; equalize "
                  f"{r['equalize_passes']} passes over {r['pairs']} pairs in {r['equalize_seconds']:.1f} s")
        fl = np.mean([r["float"] for r in rows])
        checks = {"equalized equals the original to 1e-4": max(r["equalized_max_abs_diff"] for r in rows) <= 1e-4,
                  "ranges differ >= 100x within a layer": min(r["ratios_hard"]["max"] for r in rows) >= 100,
                  "per-tensor loses >= 5 points without": fl - np.mean([r["hard_pt"] for r in rows]) >= 0.05,
                  "<= 1 point with equalization + BC": fl - np.mean([r["eq_pt_bc"] for r in rows]) <= 0.01}
        out["checks"] = checks
        for k, v in checks.items():
            print(f"  {'PASS' if v else 'FAIL'}  {k}")
        _plot(rows, args.png)
    if "relu6" in parts:
        out["relu6"] = run_relu6(args, x, y, xt, yt)
        r = out["relu6"]
        print(f"ReLU6 model (seed 0, float {100 * r['float']:.2f}): relu6='skip' equalizes {len(r['skip_pairs'])} "
              f"pairs {r['skip_pairs']} and skips {r['skipped']} (e.g. {r['skipped_example']}); relu6='relu' "
              f"turns {r['converted']} ReLU6 into ReLU, equalizes {r['relu_pairs']} pairs, float "
              f"{100 * r['relu_float']:.2f} (max |logit diff| {r['relu_max_abs_diff']:.3g})")
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
