"""Architecture changes: low-rank factorisation (`tfc.low_rank`) and depthwise-separable replacement
(`tfc.separable`), measured.

Parts (``--parts``, comma-separated):

* ``exact``: `low_rank` at full rank (weight and spatial SVD) on the ResNet-style digits model and on
  LeNet-300-100: max |output difference|, MACs and parameters against the counts by formula, and the
  CONV_2D / FULLY_CONNECTED ops of the int8 file against the original's.
* ``lenet``: LeNet-300-100 (`tfc.models.lenet300`) on digits resized to 28x28; per seed: train, factor
  every fully connected layer with `ratio` of their MACs kept (ranks by singular-value energy, multiples
  of 8), fine-tune; test accuracy at each step.
* ``separable``: the ResNet-style digits model of `channel_pruning.py` (8x8x1, widths 32-64); per seed:
  train, replace every 3x3 Conv2D by DepthwiseConv2D 3x3 + Conv2D 1x1 (`tfc.separable`), re-estimate the
  BN statistics (`tfc.recalibrate_batchnorm`), distil back from the original (`tfc.Distiller`, hints on
  every replaced layer's output, 120 epochs on a transfer set whose every other pass is shifted by up to
  one pixel; `--hint_epochs` of hints alone first); for reference the same separable architecture
  trained from scratch on labels for as many passes over the same images; test accuracy, the replaced
  layers' MACs, the int8 file's ops, and int8 latency (LiteRT, 1
  thread, XNNPACK, original and separable interleaved), also on the 64x64x3 ResNet-style model.

`nice -n 5 python benchmarks/architecture.py --json out/architecture.json --png out/architecture.png`
(all parts, 3 seeds). Prints one table per part.
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

from common import cpu_name, interleaved_ms  # noqa: E402
import tfcompress as tfc  # noqa: E402
from tfcompress._tf import keras  # noqa: E402
from tfcompress.analysis import macs, params  # noqa: E402
from tfcompress.analysis.cost import layer_macs  # noqa: E402
from tfcompress.architecture.ranks import plan_ranks  # noqa: E402
from tfcompress.architecture.separate import hint_pairs, separable_errors  # noqa: E402
from tfcompress.data import fit_to_input, load  # noqa: E402
from tfcompress.tflite.reader import inspect  # noqa: E402
from tfcompress.tflite.runtime import Interpreter  # noqa: E402

resnet_style = tfc.models.resnet_style


def _digits(shape):
    (x, y), (xt, yt) = load("digits", "train"), load("digits", "test")
    return fit_to_input(x, (None,) + shape)[0], y, fit_to_input(xt, (None,) + shape)[0], yt


def _train(model, x, y, epochs, lr, seed, batch=64):
    keras.utils.set_random_seed(seed)
    steps = epochs * int(np.ceil(len(x) / batch))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)
    return model


def _acc(model, x, y):
    return float((np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y).mean())


def _ops(model, x, folder, tag):
    path = os.path.join(folder, f"{tag}.tflite")
    tfc.export(model, path, mode="int8", representative_data=x[:256])
    counts = inspect(path)["op_counts"]
    return path, {k: counts.get(k, 0) for k in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")}


def _digits_resnet(seed):
    keras.utils.set_random_seed(seed)
    return resnet_style((8, 8, 1), widths=(32, 64), classes=10, stem_stride=1, name="digits_resnet")


# ---------------------------------------------------------------- exact


def exact():
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cases = [("lenet300", tfc.models.lenet300(), (28, 28, 1), "weight"),
                 ("digits_resnet", _digits_resnet(0), (8, 8, 1), "weight"),
                 ("digits_resnet", _digits_resnet(0), (8, 8, 1), "spatial")]
        for name, model, shape, method in tqdm(cases, desc="exact", leave=False):
            x = np.random.default_rng(0).uniform(0, 1, (256,) + shape).astype(np.float32)
            plan = plan_ranks(model, energy=1.0, method=method, round_to=1)
            full = {r.name: r.full_rank for r in plan}
            new = tfc.low_rank(model, ranks=full, method=method)
            old_l, new_l = layer_macs(model), layer_macs(new)
            _, ops_old = _ops(model, x, folder, f"{name}_{method}_orig")
            _, ops_new = _ops(new, x, folder, f"{name}_{method}_lr")
            ref = model(x[:32]).numpy()
            rows.append({"model": name, "method": method, "layers": len(full),
                         "max_abs_diff": float(np.abs(new(x[:32]).numpy() - ref).max()),
                         "output_scale": float(np.abs(ref).max()),
                         "macs_before": macs(model), "macs_after": macs(new),
                         "macs_by_formula": macs(model) + sum(_formula(model, n, k, method) - old_l[n]
                                                               for n, k in full.items()),
                         "layer_macs_match": all(new_l[f"{n}_lr"] + new_l[n] == _formula(model, n, k, method)
                                                 for n, k in full.items()),
                         "params_before": params(model), "params_after": params(new),
                         "params_by_formula": params(model) + sum(_param_formula(model, n, k, method)
                                                                 for n, k in full.items()),
                         "ops_before": ops_old, "ops_after": ops_new})
    print(f"\n{'low_rank at full rank':<28}{'method':<9}{'max |diff|':>11}{'MACs':>11}{'by formula':>11}"
          f"{'params':>9}{'by formula':>11}  CONV_2D+FC before -> after (factored layers)")
    for r in rows:
        before = r["ops_before"]["CONV_2D"] + r["ops_before"]["FULLY_CONNECTED"]
        after = r["ops_after"]["CONV_2D"] + r["ops_after"]["FULLY_CONNECTED"]
        print(f"{r['model']:<28}{r['method']:<9}{r['max_abs_diff']:>11.2e}{r['macs_after']:>11,}"
              f"{r['macs_by_formula']:>11,}{r['params_after']:>9,}{r['params_by_formula']:>11,}  "
              f"{before} -> {after} ({r['layers']})")
    return rows


def _out_hw(size, k, s, d, padding):
    return -(-size // s) if padding == "same" else (size - d * (k - 1) - 1) // s + 1


def _formula(model, name, k, method):
    """MACs of the two factor layers at rank k, from the layer's shapes alone."""
    layer = model.get_layer(name)
    if isinstance(layer, keras.layers.Dense):
        return int(layer.input.shape[-1]) * k + k * layer.units
    _, h, w, cin = layer.input.shape
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    ho, wo = _out_hw(h, kh, sh, dh, layer.padding), _out_hw(w, kw, sw, dw, layer.padding)
    if method == "weight":
        return ho * wo * (kh * kw * cin * k + k * layer.filters)
    return ho * w * kh * cin * k + ho * wo * kw * k * layer.filters


def _param_formula(model, name, k, method):
    """Parameters added by factoring at rank k (new kernels minus the old one)."""
    layer = model.get_layer(name)
    old = int(np.prod(layer.kernel.shape))
    if isinstance(layer, keras.layers.Dense):
        return int(layer.input.shape[-1]) * k + k * layer.units - old
    kh, kw, cin, cout = layer.kernel.shape
    if method == "weight":
        return kh * kw * cin * k + k * cout - old
    return kh * cin * k + kw * k * cout - old


# ---------------------------------------------------------------- LeNet-300-100


def lenet(seeds, ratio=0.25, epochs=30, finetune=10, finetune_lr=5e-4):
    x, y, xt, yt = _digits((28, 28, 1))
    rows = []
    for seed in tqdm(seeds, desc="lenet seeds", leave=False):
        keras.utils.set_random_seed(seed)
        model = _train(tfc.models.lenet300(), x, y, epochs, 1e-3, seed, batch=32)
        plan = plan_ranks(model, ratio=ratio, layers=["fc1", "fc2", "fc3"])
        small = tfc.low_rank(model, ratio=ratio, layers=["fc1", "fc2", "fc3"])
        cut = _acc(small, xt, yt)
        _train(small, x, y, finetune, finetune_lr, seed, batch=32)
        fc_before = sum(r.macs_before for r in plan)
        rows.append({"seed": seed, "original": _acc(model, xt, yt), "factored": cut, "fine_tuned": _acc(small, xt, yt),
                     "fc_macs_before": fc_before, "fc_macs_after": sum(r.macs_after for r in plan),
                     "params_before": params(model), "params_after": params(small),
                     "ranks": {r.name: r.rank for r in plan}, "energy": {r.name: round(r.energy, 4) for r in plan}})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("original", "factored", "fine_tuned")}
    print(f"\nLeNet-300-100 on digits 28x28, fully connected MACs kept {ratio:.0%} (ratio={ratio}), "
          f"{epochs} epochs + {finetune} fine-tuning")
    print(f"{'seed':<6}{'original':>10}{'factored':>10}{'fine-tuned':>12}{'FC MACs':>18}{'params':>18}  ranks")
    for r in rows:
        print(f"{r['seed']:<6}{r['original']:>10.4f}{r['factored']:>10.4f}{r['fine_tuned']:>12.4f}"
              f"{r['fc_macs_before']:>9,}->{r['fc_macs_after']:<8,}{r['params_before']:>9,}->{r['params_after']:<8,} "
              f"{r['ranks']}")
    print(f"{'mean':<6}{mean['original']:>10.4f}{mean['factored']:>10.4f}{mean['fine_tuned']:>12.4f}   "
          f"loss {100 * (mean['original'] - mean['fine_tuned']):+.2f} points (goal <= 1)")
    return {"ratio": ratio, "epochs": epochs, "finetune": finetune, "finetune_lr": finetune_lr, "seeds": rows,
            "mean": mean, "loss_points": 100 * (mean["original"] - mean["fine_tuned"])}


# ---------------------------------------------------------------- separable


def _time_pair(paths, rounds=40, per_round=50, warmup=50):
    """Interleaved rounds; per-invoke milliseconds of each file (1 thread, XNNPACK)."""
    return interleaved_ms(paths, rounds, per_round, warmup, lambda r: tqdm(r, desc="latency", leave=False))


def shifted(x, rng):
    """`x` (N, H, W, C) with every image moved by -1, 0 or +1 pixel along each axis (zeros shifted in)."""
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    for i, (dy, dx) in enumerate(rng.integers(-1, 2, size=(len(x), 2))):
        src = x[i, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        out[i, max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return out


def transfer_set(x, y, epochs, rng):
    """`epochs` passes over (x, y) in one array, every other pass shifted by a pixel (teacher and student
    see the same images: the teacher's answers on them are the targets)."""
    return (np.concatenate([shifted(x, rng) if e % 2 else x for e in range(epochs)]),
            np.concatenate([y] * epochs))


def _distil(student, teacher, data, lr, seed, alpha, feature_weight):
    keras.utils.set_random_seed(seed)
    steps = int(np.ceil(len(data[0]) / 64))
    trainer = tfc.Distiller(student, teacher, temperature=4.0, alpha=alpha, features=hint_pairs(teacher),
                            feature_weight=feature_weight)
    trainer.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)), metrics=["accuracy"])
    trainer.fit(*data, batch_size=64, epochs=1, verbose=0, shuffle=True, callbacks=[tfc.CompressionCallback()])
    return trainer.student


def separable(seeds, epochs=30, distil=120, distil_lr=2e-3, feature_weight=1.0, hint_epochs=0):
    x, y, xt, yt = _digits((8, 8, 1))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in tqdm(seeds, desc="separable seeds", leave=False):
            model = _train(_digits_resnet(seed), x, y, epochs, 3e-3, seed)
            pairs = hint_pairs(model)
            errors = separable_errors(model)
            student = tfc.separable(model)
            cut = _acc(student, xt, yt)
            tfc.recalibrate_batchnorm(student, x, batch_size=64)     # BN statistics of the new convs' outputs
            recal = _acc(student, xt, yt)
            rng = np.random.default_rng(seed)
            hinted = None
            if hint_epochs:                         # layer-wise hints alone first (no logits, no labels)
                student = _distil(student, model, transfer_set(x, y, hint_epochs, rng), distil_lr, seed, 1.0,
                                  10.0 * feature_weight)
                hinted = _acc(student, xt, yt)
            student = _distil(student, model, transfer_set(x, y, distil - hint_epochs, rng), distil_lr, seed, 0.9,
                              feature_weight)
            old, new = layer_macs(model), layer_macs(student)
            names = [n for n, _ in pairs]
            scratch = _train(tfc.separable(_digits_resnet(seed + 100)), *transfer_set(x, y, epochs + distil, rng), 1,
                             3e-3, seed)
            row = {"seed": seed, "original": _acc(model, xt, yt), "separated": cut, "recalibrated": recal,
                   "hinted": hinted, "distilled": _acc(student, xt, yt), "scratch": _acc(scratch, xt, yt),
                   "layers": names, "layers_macs_before": sum(old[n] for n in names),
                   "layers_macs_after": sum(new[n] + new[f"{n}_dw"] for n in names),
                   "macs_before": macs(model), "macs_after": macs(student),
                   "params_before": params(model), "params_after": params(student),
                   "init_relative_error": {n: round(e, 4) for n, e in errors.items()}}
            if seed == seeds[0]:
                a, row["ops_before"] = _ops(model, x, folder, "orig")
                b, row["ops_after"] = _ops(student, x, folder, "separable")
                row["latency_ms"] = _latency(a, b)
            rows.append(row)
        big = resnet_style()                  # 64x64x3, widths 32-64-128, as channel_pruning.py's exact part
        xb = np.random.default_rng(0).uniform(0, 1, (64, 64, 64, 3)).astype(np.float32)
        a, ops_a = _ops(big, xb, folder, "big_orig")
        b, ops_b = _ops(tfc.separable(big), xb, folder, "big_separable")
        big_row = {"model": "resnet_style 64x64x3 (untrained)", "macs_before": macs(big),
                   "macs_after": macs(tfc.separable(big)), "ops_before": ops_a, "ops_after": ops_b,
                   "latency_ms": _latency(a, b)}
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("original", "separated", "recalibrated", "distilled",
                                                              "scratch")}
    r0 = rows[0]
    print(f"\nseparable on the 3x3 convs of the ResNet-style digits model ({len(r0['layers'])} layers), "
          f"{epochs} epochs, then {distil} epochs of distillation with hints")
    print(f"{'seed':<6}{'original':>10}{'separated':>11}{'BN recal.':>11}{'distilled':>11}{'scratch':>9}"
          f"{'3x3 MACs':>22}{'x':>6}{'model MACs':>22}")
    for r in rows:
        print(f"{r['seed']:<6}{r['original']:>10.4f}{r['separated']:>11.4f}{r['recalibrated']:>11.4f}"
              f"{r['distilled']:>11.4f}{r['scratch']:>9.4f}"
              f"{r['layers_macs_before']:>11,}->{r['layers_macs_after']:<9,}"
              f"{r['layers_macs_before'] / r['layers_macs_after']:>6.2f}{r['macs_before']:>11,}->{r['macs_after']:<9,}")
    print(f"{'mean':<6}{mean['original']:>10.4f}{mean['separated']:>11.4f}{mean['recalibrated']:>11.4f}"
          f"{mean['distilled']:>11.4f}{mean['scratch']:>9.4f}   "
          f"loss {100 * (mean['original'] - mean['distilled']):+.2f} points (goal <= 1)")
    print(f"int8 ops: original {r0['ops_before']}, separable {r0['ops_after']}")
    print(f"int8 latency, LiteRT 1 thread XNNPACK, original and separable interleaved, {cpu_name()}:")
    for name, lat in (("digits model 8x8x1", r0["latency_ms"]), (big_row["model"], big_row["latency_ms"])):
        print(f"  {name:<36} original {lat['original_median']:.4f} ms, separable {lat['separable_median']:.4f} ms "
              f"(median; p10 {lat['original_p10']:.4f} / {lat['separable_p10']:.4f}); "
              f"speed-up {lat['original_median'] / lat['separable_median']:.2f}x")
    print(f"  64x64x3 MACs {big_row['macs_before']:,} -> {big_row['macs_after']:,}")
    return {"epochs": epochs, "distil": distil, "distil_lr": distil_lr, "feature_weight": feature_weight,
            "hint_epochs": hint_epochs, "transfer": "every other pass shifted by up to one pixel",
            "seeds": rows, "mean": mean, "loss_points": 100 * (mean["original"] - mean["distilled"]),
            "large": big_row}


def _latency(a, b):
    ta, tb = _time_pair([a, b])
    return {"original_median": float(np.median(ta)), "separable_median": float(np.median(tb)),
            "original_p10": float(np.percentile(ta, 10)), "separable_p10": float(np.percentile(tb, 10)),
            "invocations": len(ta)}


def _plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, steps, title in ((axes[0], "lenet", ("original", "factored", "fine_tuned"),
                                   "low_rank: LeNet-300-100, FC MACs 25 %"),
                                  (axes[1], "separable", ("original", "separated", "recalibrated", "distilled"),
                                   "separable: ResNet-style 3x3 convs")):
        if key not in result:
            ax.set_visible(False)
            continue
        for r in result[key]["seeds"]:
            ax.plot(range(len(steps)), [r[s] for s in steps], marker="o", label=f"seed {r['seed']}")
        ax.set_xticks(range(len(steps)), steps)
        ax.set_ylabel("test accuracy (digits)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="exact,lenet,separable")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--ratio", type=float, default=0.25, help="LeNet: fraction of FC MACs kept (default: 0.25)")
    p.add_argument("--finetune", type=int, default=10, help="LeNet fine-tuning epochs (default: 10)")
    p.add_argument("--distil", type=int, default=120, help="separable: distillation epochs (default: 120)")
    p.add_argument("--hint_epochs", type=int, default=0,
                   help="separable: of those, epochs of hints alone first (default: 0)")
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    parts = args.parts.split(",")
    result = {"cpu": cpu_name(), "machine": platform.machine(), "tensorflow": __import__("tensorflow").__version__}
    if "exact" in parts:
        result["exact"] = exact()
    if "lenet" in parts:
        result["lenet"] = lenet(seeds, args.ratio, finetune=args.finetune)
    if "separable" in parts:
        result["separable"] = separable(seeds, distil=args.distil, hint_epochs=args.hint_epochs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=float)
    if args.png and ("lenet" in result or "separable" in result):
        _plot(result, args.png)
    return result


if __name__ == "__main__":
    main()
