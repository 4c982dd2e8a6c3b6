"""The pruning procedures of the literature side by side, on digits: LeNet-300-100 and LeNet-5.

    nice python benchmarks/procedures.py [--seeds 3] [--models lenet300,lenet5] [--parts schedules,lottery,channels]
                                         [--json out/procedures.json] [--png out/procedures.png]

Three parts, each over `--seeds` seeds (mean and spread reported):

  schedules  the highest sparsity (of all kernels) whose test accuracy is within 0.5 point of the dense
             model's, for one-shot (prune to s at once, fine-tune), iterative (10-point steps to 90 %, then
             95, 97, 98, 99 %, a short fine-tune after each) and polynomial (Zhu & Gupta ramp over the
             fine-tune); each plain, with an L1 or L2 penalty on the kernels (`tfc.regularizers`, during
             dense training and pruning), and with dropout adjusted by sqrt(C_i / C_i0) (`tfc.adjust_dropout`).
             Sparsity levels: 50, 70, 80, 90, 95, 97, 98, 99 %; a procedure stops at the first level that
             loses more than `--stop` (1.5 points): no higher level is within 0.5 point after that.
  lottery    `tfc.lottery_ticket` on LeNet-300-100 (20 % of the remaining weights per round, global ranking,
             output layer kept dense, rewind to init) against its controls, random re-init and random mask,
             at 51.2 / 21.0 / 8.6 / 4.4 % of the hidden kernels kept (rounds 3, 7, 11, 14).
  channels   LeNet-5 with half the channels of every group removed (`tfc.prune_channels`, L1) and fine-tuned,
             against the same small architecture freshly initialized and trained from scratch for the
             dense model's epochs (Liu et al. 2019, "Rethinking the value of network pruning").

The digits test split has 449 images: one image is 0.22 point, so gaps of one or two images are noise.
The models carry Dropout (0.3 after each hidden Dense layer) so the dropout rows differ from the plain ones.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
CHAIN = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
VARIANTS = ("plain", "l1", "l2", "dropout")
PENALTY = {"l1": 2e-5, "l2": 1e-4}
SETTINGS = {"lenet300": {"shape": (8, 8, 1), "epochs": 20, "finetune": 6, "step": 2},
            "lenet5": {"shape": (16, 16, 1), "epochs": 10, "finetune": 3, "step": 1}}
LOTTERY_ROUNDS = 14
LOTTERY_AT = (3, 7, 11, 14)
LOTTERY_EPOCHS = 12
TOLERANCE = 0.005
STOP = [0.015]


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


def prune_once(dense, original, target, epochs, train, schedule, variant):
    """One pruning run from `dense` to `target`; returns the stripped model."""
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


def schedules_part(name, seed, train, test, echo, variants=VARIANTS):
    """{variant: {schedule: [(sparsity, accuracy), ...]}} and the dense accuracy, for one seed."""
    import tfcompress as tfc
    cfg = SETTINGS[name]
    original = build(name, seed)
    dense = {"plain": compile_fit(build(name, seed), train, cfg["epochs"], 1e-3)}
    for v, lam in PENALTY.items():
        reg = {"l1": tfc.regularizers.l1, "l2": tfc.regularizers.l2}[v](lam)
        dense[v] = compile_fit(tfc.regularizers.attach(build(name, seed), reg), train, cfg["epochs"], 1e-3)
    dense["dropout"] = dense["plain"]
    base = acc(dense["plain"], test)
    dense_acc = {v: acc(m, test) for v, m in dense.items()}
    echo(f"  {name} seed {seed}: dense {base:.4f} (l1 {dense_acc['l1']:.4f}, l2 {dense_acc['l2']:.4f})")
    curves = {}
    for variant in variants:
        curves[variant] = {}
        for schedule in ("one-shot", "polynomial"):
            points = []
            for s in LEVELS:
                model = prune_once(dense[variant], original, s, cfg["finetune"], train, schedule, variant)
                points.append((zeros_fraction(model), acc(model, test)))
                if points[-1][1] < base - STOP[0]:
                    break
            curves[variant][schedule] = points
        points, current = [], dense[variant]
        for s in CHAIN:
            current = prune_once(current, original, s, cfg["step"], train, "iterative", variant)
            points.append((zeros_fraction(current), acc(current, test)))
            if points[-1][1] < base - STOP[0]:
                break
        curves[variant]["iterative"] = points
        best = {k: highest(p, base) for k, p in curves[variant].items()}
        echo(f"    {variant:8s} highest sparsity within 0.5 point: " +
             ", ".join(f"{k} {100 * b[0]:.1f} %" for k, b in best.items()))
    return base, dense_acc, curves


def highest(points, base):
    """(sparsity, accuracy) of the highest sparsity within TOLERANCE of `base`, or (0, base)."""
    ok = [p for p in points if p[1] >= base - TOLERANCE - 1e-9]
    return max(ok) if ok else (0.0, base)


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
    cfg = SETTINGS["lenet5"]
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
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std())


def summarize(result):
    lines = []
    for name, runs in result.get("schedules", {}).items():
        lines.append(f"\n{name}: highest sparsity within 0.5 point of dense (mean ± sd over {len(runs)} seeds; "
                     f"dense {100 * mean_sd([r['dense'] for r in runs])[0]:.2f} %)")
        lines.append(f"{'variant':10s} {'one-shot':>16s} {'iterative':>16s} {'polynomial':>16s}")
        for variant in [v for v in VARIANTS if v in runs[0]["curves"]]:
            cells = []
            for schedule in ("one-shot", "iterative", "polynomial"):
                m, sd = mean_sd([highest(r["curves"][variant][schedule], r["dense"])[0] for r in runs])
                cells.append(f"{100 * m:6.1f} ± {100 * sd:4.1f} %")
            lines.append(f"{variant:10s} " + " ".join(f"{c:>16s}" for c in cells))
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(result.get("schedules", {}))
    fig, axes = plt.subplots(1, len(names) + ("lottery" in result), figsize=(5.5 * (len(names) + 1), 4.2),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        runs = result["schedules"][name]
        for schedule, style in (("one-shot", "o-"), ("iterative", "s-"), ("polynomial", "^-")):
            for variant, color in zip(VARIANTS, ("k", "tab:blue", "tab:green", "tab:red")):
                if variant not in runs[0]["curves"]:
                    continue
                pts = runs[0]["curves"][variant][schedule]
                ax.plot([100 * p[0] for p in pts], [100 * p[1] for p in pts], style, color=color, ms=3,
                        alpha=0.8, label=f"{schedule} {variant}")
        ax.axhline(100 * (runs[0]["dense"] - TOLERANCE), ls=":", color="gray")
        ax.set(title=f"{name} (seed {runs[0]['seed']})", xlabel="sparsity %", ylabel="test accuracy %", ylim=(80, 100))
        ax.legend(fontsize=6, ncol=2)
    if "lottery" in result:
        ax = axes[0][-1]
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default="lenet300,lenet5")
    parser.add_argument("--parts", default="schedules,lottery,channels")
    parser.add_argument("--json", default="out/procedures.json")
    parser.add_argument("--png", default="out/procedures.png")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--stop", type=float, default=1.5, help="points lost at which a scan stops")
    args = parser.parse_args(argv)
    STOP[0] = args.stop / 100
    from tfcompress.data import fit_to_input, load
    echo = lambda line: print(line, flush=True)  # noqa: E731
    parts = args.parts.split(",")
    started = time.time()
    raw_train, raw_test = load("digits", "train"), load("digits", "test")

    def split(name):
        shape = (None,) + SETTINGS[name]["shape"]
        return ((fit_to_input(raw_train[0], shape)[0], raw_train[1]), (fit_to_input(raw_test[0], shape)[0], raw_test[1]))

    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
              "date": time.strftime("%Y-%m-%d"), "test_images": int(len(raw_test[1]))}
    def save():
        if os.path.dirname(args.json):
            os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json + ".tmp", "w") as f:
            json.dump(result, f, indent=1, default=float)
        os.replace(args.json + ".tmp", args.json)

    if "lottery" in parts:
        train, test = split("lenet300")
        result["lottery"] = []
        for seed in range(args.seeds):
            result["lottery"].append(lottery_part(seed, train, test, echo))
            save()
    if "channels" in parts:
        train, test = split("lenet5")
        result["channels"] = []
        for seed in range(args.seeds):
            result["channels"].append(channels_part(seed, train, test, echo))
            save()
    if "schedules" in parts:
        result["schedules"] = {}
        for name in args.models.split(","):
            train, test = split(name)
            result["schedules"][name] = []
            for seed in range(args.seeds):
                base, dense_acc, curves = schedules_part(name, seed, train, test, echo,
                                                         args.variants.split(","))
                result["schedules"][name].append({"seed": seed, "dense": base, "dense_by_variant": dense_acc,
                                                  "curves": curves})
                save()
    result["seconds"] = time.time() - started
    print(summarize(result))
    save()
    if os.path.dirname(args.png):
        os.makedirs(os.path.dirname(args.png), exist_ok=True)
    plot(result, args.png)
    print(f"\nwritten {args.json}, {args.png} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
