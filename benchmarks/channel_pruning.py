"""Structured channel pruning: exactness, FLOP reduction, TFLite latency and accuracy after fine-tuning.

Parts (``--parts``, comma-separated):

* ``exact``: on a ResNet-style model (identity and projection residuals, 64x64x3, widths 32-128) and the
  MobileNetV2-style reference model, ratio 0.5 (uniform, and for MobileNetV2 also ``keep_residual=True``):
  the shrunk model's outputs against the original with the removed channels zeroed at every consumer
  (max abs diff), and the FLOP reduction.
* ``latency``: both models exported to float32 and int8 TFLite (``tfc.export``), timed with the LiteRT
  Interpreter (1 thread, XNNPACK), original and shrunk interleaved; speed-up vs FLOP reduction.
* ``accuracy``: digits (8x8x1), a small ResNet-style model (widths 32, 64); per seed: train, prune to 50 %
  FLOPs with l1, bn_gamma and random, compensate the removed channels' mean activations and re-estimate
  the BN statistics on the training set, fine-tune briefly at a tenth of the training learning rate; test
  accuracy at every step; mean over seeds (see ``accuracy``).

Run with ``nice``: ``nice -n 10 python benchmarks/channel_pruning.py --parts exact,latency,accuracy
--json bench.json``. FLOPs are 2 x multiply-accumulates of Conv/Dense layers (batch 1).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tfcompress as tfc  # noqa: E402
from tfcompress._tf import keras  # noqa: E402
from tfcompress.analysis import flops, params  # noqa: E402
from tfcompress.pruning.channels import (CUSTOM_OBJECTS, plan_and_prune, ratio_for_flops,  # noqa: E402
                                          zeroed_reference)

L = keras.layers
resnet_style = tfc.models.resnet_style


def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.5, b.shape),
                               rng.normal(0, 0.5, m.shape), rng.uniform(0.5, 2, v.shape)])
    return model


def _models():
    mnv2 = tfc.models.mobilenet_v2_small
    return {"resnet_style_64": (_randomize_bn(resnet_style()), (64, 64, 3)),
            "mobilenet_v2_small": (_randomize_bn(mnv2()), (16, 16, 1)),
            "mobilenet_v2_small_64": (_randomize_bn(mnv2((64, 64, 3), name="mnv2_small_64")), (64, 64, 3))}


def exactness(models, ratio=0.5, round_to=8):
    """Per model: uniform `ratio` on every group, and for the MobileNetV2-style ones also `keep_residual`
    (the residual streams whole, the channels inside the blocks at `ratio`)."""
    rows, variants = [], {}
    for name, (model, shape) in models.items():
        x = np.random.default_rng(0).normal(size=(16,) + shape).astype(np.float32)
        for keep in (False, True) if name.startswith("mobilenet") else (False,):
            r = plan_and_prune(model, ratio, round_to=round_to, keep_residual=keep)
            ref = zeroed_reference(model, r.removed)(x).numpy()
            tag = name + (" keep_residual" if keep else "")
            rows.append({"model": tag, "ratio": ratio, "round_to": round_to, "keep_residual": keep,
                         "max_abs_diff": float(np.abs(r.model(x).numpy() - ref).max()),
                         "output_scale": float(np.abs(ref).max()),
                         "flops_before": flops(model), "flops_after": flops(r.model),
                         "flop_reduction": 1 - flops(r.model) / flops(model),
                         "params_before": params(model), "params_after": params(r.model)})
            variants[tag] = (model, shape, r.model)
    models.clear()
    models.update(variants)
    print(f"\n{'model':<37}{'max|diff|':>11}{'|out|':>8}{'FLOPs before':>14}{'after':>12}{'removed':>9}"
          f"{'params before':>15}{'after':>9}")
    for r in rows:
        print(f"{r['model']:<37}{r['max_abs_diff']:>11.2e}{r['output_scale']:>8.2f}{r['flops_before']:>14,}"
              f"{r['flops_after']:>12,}{r['flop_reduction']:>8.1%}{r['params_before']:>15,}{r['params_after']:>9,}")
    return rows


def _tflite(model, mode, x, folder, tag):
    path = os.path.join(folder, f"{tag}_{mode}.tflite")
    tfc.export(model, path, mode=mode, representative_data=x if mode == "int8" else None, samples=len(x))
    return path


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    data = np.zeros(d["shape"], d["dtype"])
    it.set_tensor(d["index"], data)
    return it


def _time_pair(paths, runs, warmup=20, rounds=30):
    """Interleaved rounds of `runs // rounds` invocations each; per-invoke times of every model."""
    its = [_interpreter(p) for p in paths]
    for it in its:
        for _ in range(warmup):
            it.invoke()
    times = [[] for _ in its]
    for _ in range(rounds):
        for i, it in enumerate(its):
            for _ in range(max(1, runs // rounds)):
                t = time.perf_counter()
                it.invoke()
                times[i].append(time.perf_counter() - t)
    return [np.array(t) * 1e3 for t in times]


def latency(models, runs=300):
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (model, shape, small) in models.items():
            x = np.random.default_rng(0).uniform(0, 1, (64,) + shape).astype(np.float32)
            tag = name.replace(" ", "_")
            fr = flops(model) / flops(small)
            for mode in ("float32", "int8"):
                a, b = _tflite(model, mode, x, folder, tag), _tflite(small, mode, x, folder, tag + "_small")
                ta, tb = _time_pair([a, b], runs)
                speed_med = np.median(ta) / np.median(tb)
                speed_min = np.percentile(ta, 10) / np.percentile(tb, 10)
                rows.append({"model": name, "mode": mode, "threads": 1,
                             "orig_ms_median": float(np.median(ta)), "small_ms_median": float(np.median(tb)),
                             "orig_ms_p10": float(np.percentile(ta, 10)), "small_ms_p10": float(np.percentile(tb, 10)),
                             "flop_ratio": fr, "speedup_median": float(speed_med), "speedup_p10": float(speed_min),
                             "efficiency_median": float(speed_med / fr), "efficiency_p10": float(speed_min / fr),
                             "orig_bytes": os.path.getsize(a), "small_bytes": os.path.getsize(b)})
    print(f"\n{'model':<37}{'mode':<9}{'orig ms':>9}{'small ms':>10}{'FLOP x':>8}{'speed-up':>10}{'eff.':>7}"
          f"{'median-based':>14}")
    for r in rows:
        print(f"{r['model']:<37}{r['mode']:<9}{r['orig_ms_p10']:>9.3f}{r['small_ms_p10']:>10.3f}"
              f"{r['flop_ratio']:>8.2f}{r['speedup_p10']:>10.2f}{r['efficiency_p10']:>7.2f}"
              f"{r['speedup_median']:>9.2f} {r['efficiency_median']:>4.2f}")
    print("ms = 10th percentile of interleaved invocations (1 thread, XNNPACK; robust to other processes on a "
          "shared machine); speed-up = original / shrunk; eff. = speed-up / FLOP ratio")
    return rows


def _digits_model(seed):
    keras.utils.set_random_seed(seed)
    return resnet_style((8, 8, 1), widths=(32, 64), classes=10, stem_stride=1, name="digits_resnet")


def _train(model, x, y, epochs, lr, seed):
    keras.utils.set_random_seed(seed)
    steps = epochs * int(np.ceil(len(x) / 64))
    lr = keras.optimizers.schedules.CosineDecay(lr, steps)  # ends at 0: BN statistics settle on final weights
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    return model


def _without_regularizers(model):
    config = model.get_config()
    for lc in config["layers"]:
        lc["config"].pop("gamma_regularizer", None)
    new = keras.Model.from_config(config, custom_objects=CUSTOM_OBJECTS)
    new.set_weights(model.get_weights())
    return new


def _acc(model, x, y):
    return float((np.argmax(model.predict(x, batch_size=256, verbose=0), -1) == y).mean())


def _copy(model):
    new = keras.models.clone_model(model)
    new.set_weights(model.get_weights())
    return new


def accuracy(seeds=(0, 1, 2), epochs=30, finetune=(5, 10), finetune_lr=3e-4, criteria=("l1", "bn_gamma", "random"),
             fraction=0.5, lr=3e-3, calibrate="mean_bn", slimming=0.0, global_ranking=False):
    """Test accuracy of the unpruned model and of each criterion at the same FLOPs, before and after fine-tuning.

    Per seed: train the unpruned model `epochs` epochs (Adam, batch 64, cosine decay from `lr` to 0; with
    `tfc.regularizers.bn_l1(slimming)` when > 0). Per criterion: the ratio that keeps at most `fraction` of the
    FLOPs (uniform over the groups, so the same channel counts for every criterion), `tfc.prune_channels`
    ("pruned": the removed channels simply gone). `calibrate` then adjusts it without a gradient step
    ("calibrated"): `"bn"` re-estimates the BN statistics with `tfc.recalibrate_batchnorm` on the training
    set; `"mean_bn"` first rebuilds it with `compensate=x_train` (each removed channel's mean activation
    folded into its consumers), then re-estimates; `"none"` leaves it as cut. Then, from those same weights,
    fine-tune for each entry of `finetune` epochs (Adam, batch 64, cosine decay from `finetune_lr` to 0, same
    seed and data order for every criterion). The unpruned model's accuracy is also given after the same BN
    re-estimation ("unpruned_calibrated").
    """
    if calibrate not in ("none", "bn", "mean_bn"):
        raise ValueError(f"calibrate must be none, bn or mean_bn. Got: {calibrate!r}")
    calibrate = None if calibrate == "none" else calibrate
    x, y = tfc.data.load("digits", "train")
    xt, yt = tfc.data.load("digits", "test")
    finetune = tuple(finetune)
    per_seed = []
    for seed in seeds:
        base = _digits_model(seed)
        if slimming:
            base = tfc.regularizers.attach(base, tfc.regularizers.bn_l1(slimming))
        base = _train(base, x, y, epochs, lr, seed)
        row = {"seed": seed, "unpruned": _acc(base, xt, yt)}
        if calibrate:  # the same BN re-estimation on the unpruned model, for reference
            row["unpruned_calibrated"] = _acc(tfc.recalibrate_batchnorm(_copy(base), x, batch_size=64), xt, yt)
        for crit in criteria:
            ratio = ratio_for_flops(base, fraction, criterion=crit, seed=seed, global_ranking=global_ranking)
            row[f"{crit}_ratio"] = ratio
            kw = dict(criterion=crit, seed=seed, global_ranking=global_ranking)
            small = tfc.prune_channels(base, ratio, **kw)
            row[f"{crit}_flop_fraction"] = flops(small) / flops(base)
            row[f"{crit}_pruned"] = _acc(small, xt, yt)
            if calibrate:
                if calibrate == "mean_bn":
                    small = tfc.prune_channels(base, ratio, compensate=x, **kw)
                tfc.recalibrate_batchnorm(small, x, batch_size=64)
                row[f"{crit}_calibrated"] = _acc(small, xt, yt)
            if slimming:
                small = _without_regularizers(small)
            for n in finetune:
                row[f"{crit}_ft{n}"] = _acc(_train(_copy(small), x, y, n, finetune_lr, seed), xt, yt)
        per_seed.append(row)
        print(f"seed {seed}: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "seed"), flush=True)
    mean = {k: float(np.mean([r[k] for r in per_seed])) for k in per_seed[0] if k != "seed"}
    stages = ["pruned"] + (["calibrated"] if calibrate else []) + [f"ft{n}" for n in finetune]
    print(f"\nmean of seeds {list(seeds)}; digits test split ({len(xt)} images, 1 image = "
          f"{100 / len(xt):.2f} points)")
    print(f"{'criterion':<12}{'FLOPs kept':>11}" + "".join(f"{s:>12}" for s in stages)
          + "".join(f"{'d ft' + str(n):>10}" for n in finetune))
    print(f"{'unpruned':<12}{1.0:>11.3f}" + "".join(f"{mean.get('unpruned_' + s, mean['unpruned']):>12.4f}"
                                                    for s in stages))
    for c in criteria:
        print(f"{c:<12}{mean[c + '_flop_fraction']:>11.3f}" + "".join(f"{mean[f'{c}_{s}']:>12.4f}" for s in stages)
              + "".join(f"{(mean[f'{c}_ft{n}'] - mean['unpruned']) * 100:>+9.2f}p" for n in finetune))
    print(f"\nper seed\n{'criterion':<12}{'stage':<12}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds))
    print(f"{'unpruned':<12}{'':<12}" + "".join(f"{r['unpruned']:>9.4f}" for r in per_seed))
    if calibrate:
        print(f"{'unpruned':<12}{'calibrated':<12}" + "".join(f"{r['unpruned_calibrated']:>9.4f}" for r in per_seed))
    for c in criteria:
        for s_ in stages:
            print(f"{c:<12}{s_:<12}" + "".join(f"{r[f'{c}_{s_}']:>9.4f}" for r in per_seed))
    print(f"train {epochs} epochs at lr {lr}" + (f" with bn_l1({slimming})" if slimming else "")
          + (", global ranking" if global_ranking else "") + f", calibrate {calibrate or 'none'}"
          + (f", fine-tune {'/'.join(map(str, finetune))} epochs at lr {finetune_lr}" if finetune else ""))
    return {"per_seed": per_seed, "mean": mean, "epochs": epochs, "lr": lr, "finetune_epochs": list(finetune),
            "finetune_lr": finetune_lr, "calibrate": calibrate or "none", "fraction": fraction, "slimming": slimming,
            "global_ranking": global_ranking}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="exact,latency", help="comma-separated: exact, latency, accuracy")
    p.add_argument("--accuracy", action="store_true", help="add the accuracy part")
    p.add_argument("--runs", type=int, default=300, help="timed invocations per model and mode")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--finetune", default="5,10", help="fine-tuning epochs after pruning; comma-separated runs, "
                   "each from the same pruned weights ('' for none)")
    p.add_argument("--finetune_lr", type=float, default=3e-4,
                   help="initial learning rate of fine-tuning (cosine to 0); training uses 3e-3")
    p.add_argument("--calibrate", default="mean_bn", choices=("none", "bn", "mean_bn"),
                   help="before fine-tuning: nothing, BN statistics re-estimated on the training set, or the "
                   "removed channels' means folded into their consumers and then BN re-estimated")
    p.add_argument("--slimming", type=float, default=0.0,
                   help="train the unpruned model with bn_l1(LAMBDA) on its BN gammas (network slimming)")
    p.add_argument("--global_ranking", action="store_true", help="rank channels across groups (all criteria)")
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)
    parts = set(args.parts.split(",")) | ({"accuracy"} if args.accuracy else set())
    out = {}
    if parts & {"exact", "latency"}:
        models = _models()
        out["exact"] = exactness(models)
        if "latency" in parts:
            out["latency"] = latency(models, args.runs)
    if "accuracy" in parts:
        out["accuracy"] = accuracy(tuple(int(s) for s in args.seeds.split(",")), args.epochs,
                                   tuple(int(n) for n in args.finetune.split(",") if n), args.finetune_lr,
                                   calibrate=args.calibrate, slimming=args.slimming,
                                   global_ranking=args.global_ranking)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
