"""The pruning procedures of the literature side by side, on digits: LeNet-300-100 and LeNet-5.

    nice python benchmarks/procedures.py [--seeds 3] [--first-seed 0] [--models lenet300,lenet5]
        [--parts schedules,lottery,channels] [--variants plain,l1,l2,dropout] [--start 70] [--stop 1.0]
        [--json out/procedures.json] [--png out/procedures.png]
    python benchmarks/procedures.py --merge a.json,b.json --json all.json --png all.png   (table and PNG only)

Three parts, each over `--seeds` seeds (mean and spread reported):

  schedules  the highest sparsity (of all kernels) within 0.5 point of the dense model's accuracy (the plain
             one, 30 epochs, the same for every variant) for one-shot, iterative and polynomial pruning;
             each plain, with L1 or L2 on the kernels (`tfc.regularizers`, attached for the dense training
             and kept through every fine-tune), and with dropout at D0 * sqrt(C_i / C_i0) for the target's
             C_i. iterative: prune 10 points more, fine-tune `step` epochs, repeat (Han et al.), two chains
             from 5 and 10 % (a 5-point grid). one-shot (prune at once) and polynomial (Zhu & Gupta ramp
             over the first 2/3) get the iterative budget at that level: steps_to(s) * step epochs. They
             scan up from `--start` (down first while it loses more than 0.5 point) and stop after the
             first level losing more than `--stop` points, as does each chain. Reported: the highest level
             within 0.5 point per seed, and where the seeds' mean curve crosses the 0.5-point line.
  lottery    `tfc.lottery_ticket` on LeNet-300-100 (20 % of the remaining weights per round, global ranking,
             output layer kept dense, rewind to init) against its controls, random re-init and random mask,
             at 51.2 / 21.0 / 8.6 / 4.4 % of the hidden kernels kept (rounds 3, 7, 11, 14).
  channels   LeNet-5 with half the channels of every group removed (`tfc.prune_channels`, L1) and fine-tuned,
             against the same small architecture freshly initialized and trained from scratch for the
             dense model's epochs (Liu et al. 2019, "Rethinking the value of network pruning").

The digits test split has 449 images: one image is 0.22 point, so gaps of one or two images are noise.
The models carry Dropout (0.3 after fc1 and fc2 of LeNet-300-100, after fc1 of LeNet-5), so the dropout
rows differ from the plain ones.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from common import cpu_name  # noqa: E402

GRID = tuple(round(0.5 + 0.05 * i, 4) for i in range(10))        # 50, 55, ..., 95 %
OFFSETS = (0.05, 0.1)   # iterative chains o, o + 10, o + 20, ... points: together the 5-point grid
VARIANTS = ("plain", "l1", "l2", "dropout")
PENALTY = {"l1": 2e-5, "l2": 1e-4}
SETTINGS = {"lenet300": {"shape": (8, 8, 1), "epochs": 30, "step": 2},
            "lenet5": {"shape": (16, 16, 1), "epochs": 30, "step": 1}}
PROCEDURES = ("one-shot", "iterative", "polynomial")
LOTTERY_ROUNDS = 14
LOTTERY_AT = (3, 7, 11, 14)
LOTTERY_EPOCHS = 12
CHANNELS = {"epochs": 10, "finetune": 3}   # LeNet-5: dense and scratch epochs, fine-tune epochs
TOLERANCE = 0.005
STOP = [0.01]


def build(name, seed):
    import tfcompress as tfc
    from tfcompress._tf import keras
    from tfcompress.graph import Rewrite
    keras.utils.set_random_seed(seed)
    model = tfc.models.REGISTRY[name](SETTINGS[name]["shape"])
    rewrite = Rewrite(model)
    for layer in ("fc1", "fc2") if name == "lenet300" else ("fc1",):
        rewrite.insert_after(layer, keras.layers.Dropout(0.3, name=f"drop_{layer}"))
    return rewrite.apply()


def compile_fit(model, data, epochs, lr, callbacks=()):
    from tfcompress.recipe.state import compile_model
    compile_model(model, lr)
    model.fit(*data, epochs=epochs, batch_size=32, verbose=0, callbacks=list(callbacks))
    return model


def acc(model, test):
    from tfcompress.evaluation import keras_accuracy
    return keras_accuracy(model, *test)


def steps_to(sparsity):
    """How many 10-point iterative steps reach `sparsity` (the chain o, o + 10, ... that ends on it)."""
    return int(np.ceil(round(sparsity * 10, 6)))


def prune_once(dense, original, target, epochs, train, schedule, variant):
    """One pruning run from `dense` to `target` with `epochs` of fine-tuning; returns the stripped model.

    one-shot / iterative step: all of the target's weights removed at the first step, then fine-tuned;
    polynomial: the Zhu & Gupta ramp from 0 to the target over the first 2/3 of the fine-tuning steps.
    The dropout variant fine-tunes with D0 * sqrt(C_i / C_i0) for the target's C_i from the start.
    """
    import tfcompress as tfc
    from tfcompress.pruning.dropout import adjust_for_schedule, set_rates
    steps = -(-len(train[0]) // 32) * epochs
    if schedule == "polynomial":
        sched = tfc.PolynomialDecay(target, begin_step=0, end_step=max(1, steps * 2 // 3), frequency=10)
    else:
        sched = tfc.ConstantSparsity(target, begin_step=0, frequency=10 ** 6)
    model = dense
    if variant == "dropout":   # D0 from the original, C from what the masks will keep
        rates = {l.name: l.rate for l in original.layers if hasattr(l, "rate")}
        model = adjust_for_schedule(set_rates(dense, rates), sched)
    wrapped = tfc.prune(model, sched)
    compile_fit(wrapped, train, epochs, 5e-4, [tfc.CompressionCallback()])
    return tfc.strip(wrapped)


def zeros_fraction(model):
    kernels = [l.kernel.numpy() for l in model.layers if hasattr(l, "kernel")]
    return sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)


def penalty_share(model, train):
    """The kernel penalty's share of the training loss (cross-entropy + penalty) of a trained model."""
    from tfcompress._tf import keras
    ce = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(train[1], model.predict(
        train[0], verbose=0)))
    penalty = float(sum(float(l) for l in model.losses))
    return penalty / (ce + penalty)


def schedules_part(name, seed, train, test, echo, variants=VARIANTS, start=0.7, bar=None):
    """The dense accuracies, penalty shares and {variant: {procedure: [(sparsity, accuracy), ...]}}.

    Budgets: an iterative step fine-tunes `step` epochs, so the model at s has had steps_to(s) * step
    epochs since the dense one; one-shot and polynomial at s get exactly that many epochs too.
    """
    import tfcompress as tfc
    cfg = SETTINGS[name]
    original = build(name, seed)
    dense = {"plain": compile_fit(build(name, seed), train, cfg["epochs"], 1e-3)}
    for v in (v for v in PENALTY if v in variants):
        reg = {"l1": tfc.regularizers.l1, "l2": tfc.regularizers.l2}[v](PENALTY[v])
        dense[v] = compile_fit(tfc.regularizers.attach(build(name, seed), reg), train, cfg["epochs"], 1e-3)
    dense["dropout"] = dense["plain"]
    base = acc(dense["plain"], test)
    dense_acc = {v: acc(m, test) for v, m in dense.items()}
    shares = {v: penalty_share(dense[v], train) for v in PENALTY if v in dense}
    echo(f"  {name} seed {seed}: dense {base:.4f} " + ", ".join(
        f"({v} {dense_acc[v]:.4f}, penalty {100 * shares[v]:.0f} % of the loss)" for v in shares))
    curves = {}
    for variant in variants:
        curves[variant] = {}
        for schedule in ("one-shot", "polynomial"):
            def point(s):
                model = prune_once(dense[variant], original, s, steps_to(s) * cfg["step"], train, schedule, variant)
                return zeros_fraction(model), acc(model, test)
            curves[variant][schedule] = scan(point, base, start)
        points = []
        for offset in OFFSETS:
            current, s = dense[variant], offset
            while s < GRID[-1] + 1e-9:
                current = prune_once(current, original, s, cfg["step"], train, "iterative", variant)
                points.append((zeros_fraction(current), acc(current, test)))
                if points[-1][1] < base - STOP[0]:
                    break
                s = round(s + 0.1, 4)
        curves[variant]["iterative"] = sorted(points)
        best = {k: highest(p, base) for k, p in curves[variant].items()}
        echo(f"    {variant:8s} highest sparsity within 0.5 point: " +
             ", ".join(f"{k} {100 * b[0]:.1f} %" for k, b in best.items()))
        if bar is not None:
            bar.update(1)
    return base, dense_acc, shares, curves


def scan(point, base, start):
    """[point(s)], each (sparsity, accuracy), up the grid from `start` until a level loses more than STOP;
    when `start` itself loses more than TOLERANCE, down the grid first until a level is within it."""
    levels = [s for s in GRID if s >= start - 1e-9]
    points = [point(levels[0])]
    below = [s for s in GRID if s < levels[0] - 1e-9][::-1]
    while points[0][1] < base - TOLERANCE - 1e-9 and below:
        points.insert(0, point(below.pop(0)))
    for s in levels[1:]:
        if points[-1][1] < base - STOP[0]:
            break
        points.append(point(s))
    return points


def highest(points, base):
    """(sparsity, accuracy) of the highest sparsity within TOLERANCE of `base`, or (0, base)."""
    ok = [p for p in points if p[1] >= base - TOLERANCE - 1e-9]
    return max(ok) if ok else (0.0, base)


def mean_curve(runs, variant, procedure):
    """[(sparsity, mean accuracy)] over the levels every seed reached (sparsity rounded to the grid)."""
    per_seed = [{round(s, 3): a for s, a in r["curves"][variant][procedure]} for r in runs]
    levels = sorted(set.intersection(*(set(d) for d in per_seed)))
    return [(s, float(np.mean([d[s] for d in per_seed]))) for s in levels]


def crossing(curve, line):
    """(sparsity, "") where `curve` falls below `line` after its highest level on or above it, linearly
    interpolated between that level and the next; (its first level, "<") when no level is on or above
    the line, (its last level, ">") when the last one is."""
    above = [i for i, (_, a) in enumerate(curve) if a >= line]
    if not above:
        return curve[0][0], "<"
    if above[-1] == len(curve) - 1:
        return curve[-1][0], ">"
    (s0, a0), (s1, a1) = curve[above[-1]], curve[above[-1] + 1]
    return s0 + (s1 - s0) * (a0 - line) / (a0 - a1), ""


def lottery_part(seed, train, test, echo):
    import tfcompress as tfc
    from tfcompress._tf import keras
    keras.utils.set_random_seed(seed)
    model = tfc.models.lenet300(SETTINGS["lenet300"]["shape"])
    started = time.time()
    _, history = tfc.lottery_ticket(model, (train, test), LOTTERY_ROUNDS, control=["reinit", "random_mask"],
                                    control_rounds=LOTTERY_AT, epochs=LOTTERY_EPOCHS, batch_size=32,
                                    seed=seed, verbose=0)
    rows = [r for r in history.rounds if r["round"] in (0,) + LOTTERY_AT]
    echo(f"  lottery seed {seed} ({time.time() - started:.0f} s): " + ", ".join(
        f"{100 * r['kept']:.1f} % {r['accuracy']:.3f}/{r.get('reinit_accuracy', float('nan')):.3f}/"
        f"{r.get('random_mask_accuracy', float('nan')):.3f}" for r in rows))
    return history.rounds


def channels_part(seed, train, test, echo):
    import tfcompress as tfc
    from tfcompress.pruning.lottery import reinitialize
    cfg = CHANNELS
    dense = compile_fit(build("lenet5", seed), train, cfg["epochs"], 1e-3)
    small = tfc.prune_channels(dense, 0.5)
    params = small.count_params()
    before = acc(small, test)
    tuned = compile_fit(small, train, cfg["finetune"], 5e-4)
    tuned_acc = acc(tuned, test)
    scratch = tfc.prune_channels(dense, 0.5)
    reinitialize(scratch, seed=seed + 100)
    scratch_acc = acc(compile_fit(scratch, train, cfg["epochs"], 1e-3), test)
    row = {"seed": seed, "dense": acc(dense, test), "dense_params": dense.count_params(), "params": params,
           "pruned_before_finetune": before, "finetuned": tuned_acc, "scratch": scratch_acc}
    echo(f"  channels seed {seed}: dense {row['dense']:.4f}, pruned {before:.4f}, fine-tuned {tuned_acc:.4f}, "
         f"scratch {scratch_acc:.4f} ({params} of {row['dense_params']} parameters)")
    return row


def mean_sd(values):
    return float(np.mean(values)), float(np.std(values))


def schedule_rows(name, runs):
    """One row per variant: (variant, {procedure: (per-seed highest levels, crossing of the mean curve)})."""
    line = np.mean([r["dense"] for r in runs]) - TOLERANCE
    rows = []
    for variant in [v for v in VARIANTS if v in runs[0]["curves"]]:
        cells = {}
        for procedure in PROCEDURES:
            best = [highest(r["curves"][variant][procedure], r["dense"])[0] for r in runs]
            cells[procedure] = (best, crossing(mean_curve(runs, variant, procedure), line))
        rows.append((variant, cells))
    return rows


def summarize(result):
    lines = []
    for name, runs in result.get("schedules", {}).items():
        lines.append(f"\n{name}: highest sparsity % within 0.5 point of its seed's dense model, mean ± sd "
                     f"(per seed) over {len(runs)} seeds; [where the {len(runs)}-seed mean curve crosses "
                     f"0.5 point below the mean dense {100 * np.mean([r['dense'] for r in runs]):.2f} %]")
        lines.append(f"{'variant':8s} " + " ".join(f"{p:>34s}" for p in PROCEDURES))
        for variant, cells in schedule_rows(name, runs):
            out = []
            for best, cross in cells.values():
                m, sd = mean_sd(best)
                seeds = "/".join(f"{100 * b:g}" for b in best)
                out.append(f"{100 * m:5.1f} ± {100 * sd:3.1f} ({seeds}) [{cross[1]}{100 * cross[0]:4.1f}]")
            lines.append(f"{variant:8s} " + " ".join(f"{c:>34s}" for c in out))
    if "lottery" in result:
        lines.append(f"\nlottery ticket vs controls, LeNet-300-100, test accuracy % (mean ± sd over "
                     f"{len(result['lottery'])} seeds)")
        lines.append(f"{'kept %':>7s} {'ticket':>14s} {'reinit':>14s} {'random mask':>14s} {'ticket-reinit':>14s}")
        for r in LOTTERY_AT:
            rows = [runs[r] for runs in result["lottery"]]
            cells = [mean_sd([x[k] for x in rows]) for k in ("accuracy", "reinit_accuracy", "random_mask_accuracy")]
            gap = mean_sd([x["accuracy"] - x["reinit_accuracy"] for x in rows])
            lines.append(f"{100 * rows[0]['kept']:7.1f} " + " ".join(f"{100 * m:8.2f} ± {100 * s:3.1f}"
                                                                    for m, s in cells + [gap]))
    if "channels" in result:
        rows = result["channels"]
        lines.append(f"\nLeNet-5, half the channels: fine-tuned vs from scratch (mean ± sd, {len(rows)} seeds)")
        for key in ("dense", "pruned_before_finetune", "finetuned", "scratch"):
            m, s = mean_sd([r[key] for r in rows])
            lines.append(f"{key:24s} {100 * m:6.2f} ± {100 * s:3.1f} %")
    return "\n".join(lines)


def plot(result, path):
    """Schedules: one panel per model and variant, the mean accuracy over seeds at every level per
    procedure, the 0.5-point line dashed; the lottery ticket and its controls in a last row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(result.get("schedules", {}))
    rows, cols = len(names) + ("lottery" in result), len(VARIANTS)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for row, name in zip(axes, names):
        runs = result["schedules"][name]
        line = 100 * (np.mean([r["dense"] for r in runs]) - TOLERANCE)
        for ax, variant in zip(row, VARIANTS):
            if variant not in runs[0]["curves"]:
                ax.set_visible(False)
                continue
            for procedure, style in zip(PROCEDURES, ("o-", "s-", "^-")):
                pts = [p for p in mean_curve(runs, variant, procedure) if p[0] >= 0.5 - 1e-9]
                ax.plot([100 * p[0] for p in pts], [100 * p[1] for p in pts], style, ms=3, label=procedure)
            ax.axhline(line, ls="--", color="gray", lw=1, label="dense − 0.5 point")
            ax.set(title=f"{name}, {variant} ({len(runs)} seeds)", xlabel="sparsity % (all kernels)",
                   ylabel="test accuracy % (mean)", ylim=(line - 6, line + 2.5))
            ax.legend(fontsize=7)
    if "lottery" in result:
        for other in axes[-1][1:]:
            other.set_visible(False)
        ax = axes[-1][0]
        for key, label in (("accuracy", "ticket"), ("reinit_accuracy", "random re-init"),
                           ("random_mask_accuracy", "random mask")):
            rounds = [r for r in result["lottery"][0] if key in r]
            xs = [100 * r["kept"] for r in rounds]
            ys = [100 * np.mean([runs[r["round"]][key] for runs in result["lottery"]]) for r in rounds]
            ax.plot(xs, ys, "o-", label=label)
        ax.set(xscale="log", xlabel="% of hidden weights kept", ylabel="test accuracy % (mean of seeds)",
               title="lottery ticket, LeNet-300-100")
        ax.invert_xaxis()
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def merge(paths):
    """The results of several runs (e.g. one per model or per seed) as one: parts and seeds joined."""
    result = {}
    for path in paths:
        if not os.path.exists(path):
            sys.exit(f"no results file {path}")
        with open(path) as f:
            part = json.load(f)
        for key, value in part.items():
            if key == "schedules":
                for name, runs in value.items():
                    known = {r["seed"] for r in result.setdefault("schedules", {}).setdefault(name, [])}
                    result["schedules"][name] += [r for r in runs if r["seed"] not in known]
                    result["schedules"][name].sort(key=lambda r: r["seed"])
            elif key in ("lottery", "channels"):
                result.setdefault(key, []).extend(value)
            elif key == "seconds":
                result[key] = result.get(key, 0) + value
            else:
                result.setdefault(key, value)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--models", default="lenet300,lenet5")
    parser.add_argument("--parts", default="schedules,lottery,channels")
    parser.add_argument("--json", default="out/procedures.json")
    parser.add_argument("--png", default="out/procedures.png")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--start", type=float, default=70, help="lowest one-shot / polynomial level, %%")
    parser.add_argument("--stop", type=float, default=1.0, help="points lost at which a scan stops")
    parser.add_argument("--step", type=int, default=0, help="epochs per iterative step (0: 2 / 1 per model)")
    parser.add_argument("--merge", default="", help="JSON files of earlier runs to join: table and PNG only")
    args = parser.parse_args(argv)
    STOP[0] = args.stop / 100
    for cfg in SETTINGS.values() if args.step else ():
        cfg["step"] = args.step
    from tqdm import tqdm
    from tfcompress.data import fit_to_input, load
    from tfcompress.fileio import atomic_path, write_text
    for path in (p for p in (args.json, args.png) if os.path.dirname(p)):
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def save():
        write_text(args.json, json.dumps(result, indent=1, default=float), inputs=args.merge.split(","))

    def finish():
        print(summarize(result))
        save()
        with atomic_path(args.png) as tmp:
            plot(result, tmp)
        print(f"\nwritten {args.json}, {args.png} ({result.get('seconds', 0):.0f} s of runs)")

    if args.merge:
        result = merge(args.merge.split(","))
        return finish() or 0
    echo = tqdm.write
    parts, seeds = args.parts.split(","), range(args.first_seed, args.first_seed + args.seeds)
    started = time.time()
    raw_train, raw_test = load("digits", "train"), load("digits", "test")

    def split(name):
        shape = (None,) + SETTINGS[name]["shape"]
        return ((fit_to_input(raw_train[0], shape)[0], raw_train[1]), (fit_to_input(raw_test[0], shape)[0], raw_test[1]))

    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
              "date": time.strftime("%Y-%m-%d"), "test_images": int(len(raw_test[1]))}
    if "lottery" in parts:
        train, test = split("lenet300")
        result["lottery"] = []
        for seed in tqdm(seeds, desc="lottery seeds"):
            result["lottery"].append(lottery_part(seed, train, test, echo))
            save()
    if "channels" in parts:
        train, test = split("lenet5")
        result["channels"] = []
        for seed in tqdm(seeds, desc="channel seeds"):
            result["channels"].append(channels_part(seed, train, test, echo))
            save()
    if "schedules" in parts:
        result["schedules"], variants, models = {}, args.variants.split(","), args.models.split(",")
        result["settings"] = {"settings": SETTINGS, "penalty": PENALTY, "grid": GRID, "offsets": OFFSETS,
                              "start": args.start, "stop": args.stop, "dropout": 0.3}
        bar = tqdm(total=len(models) * len(seeds) * len(variants), desc="schedules (model, seed, variant)")
        for name in models:
            train, test = split(name)
            result["schedules"][name] = []
            for seed in seeds:
                t0 = time.time()
                base, dense_acc, shares, curves = schedules_part(name, seed, train, test, echo, variants,
                                                                 args.start / 100, bar)
                result["schedules"][name].append({"seed": seed, "dense": base, "dense_by_variant": dense_acc,
                                                  "penalty_share": shares, "curves": curves,
                                                  "seconds": time.time() - t0})
                save()
        bar.close()
    result["seconds"] = time.time() - started
    finish()
    return 0


if __name__ == "__main__":
    from tfcompress.errors import InputError
    try:
        sys.exit(main())
    except InputError as e:
        sys.exit(str(e))
