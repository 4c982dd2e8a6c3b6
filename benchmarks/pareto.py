"""Accuracy against measured int8 latency on the ResNet-style digits model: magnitude pruning (tfmot) vs
uniform channel pruning vs `optimize` (NetAdapt on the device's latency table), each followed by QAT.

Parts (``--parts``, comma-separated):

* ``check``: the latency table's prediction against whole int8 files (the unpruned model and a uniformly
  channel-pruned one), locally and on the tests' emulated adb device (tests/adb_device, whose
  benchmark_model is the edge runner), median of interleaved rounds.
* ``pareto``: per seed, train `resnet_style((8, 8, 1), widths=(32, 64), stem_stride=1)` 30 epochs (the
  protocol of benchmarks/channel_pruning.py); then (a) `tfc.prune` to 50/75/90 % (polynomial, 8 epochs at
  3e-4) + QAT; (b) `tfc.prune_channels` uniform at several ratios (l1, compensated, BN re-estimated,
  fine-tuned ``--uniform_epochs``) + QAT; (c) `optimize` (NetAdapt, QAT, int8) at several speed-ups; the
  unpruned model + QAT as reference. QAT is 3 epochs at 1e-4 everywhere. Every int8 file of a seed is timed
  in one process, interleaved (LiteRT, 1 thread, XNNPACK; benchmarks/common.interleaved_ms).

``nice -n 10 python benchmarks/pareto.py --parts check,pareto --seeds 0 --json out/pareto.json --png
out/pareto.png``
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import tfcompress as tfc  # noqa: E402
from channel_pruning import _digits_model, _train  # noqa: E402
from common import cpu_name, interleaved_ms  # noqa: E402
from tfcompress import latency  # noqa: E402
from tfcompress._tf import keras  # noqa: E402
from tfcompress.latency.pipeline import optimize  # noqa: E402
from tfcompress.choose.netadapt import _compile  # noqa: E402


def _qat_int8(model, x, y, xt, yt, path, seed):
    qat = tfc.quantize(model)
    keras.utils.set_random_seed(seed)
    _compile(qat, 1e-4)
    qat.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[tfc.CompressionCallback()])
    return tfc.export(qat, path, eval_data=(xt, yt), layer_samples=0).tflite_accuracy


def _magnitude(base, sparsity, x, y, seed):
    steps = 8 * int(np.ceil(len(x) / 64))
    pruned = tfc.prune(base, tfc.PolynomialDecay(sparsity, end_step=steps * 2 // 3, frequency=10))
    keras.utils.set_random_seed(seed)
    _compile(pruned, keras.optimizers.schedules.CosineDecay(3e-4, steps))
    pruned.fit(x, y, epochs=8, batch_size=64, verbose=0, callbacks=[tfc.CompressionCallback()])
    return tfc.strip(pruned)


def _uniform(base, ratio, x, y, epochs, seed):
    small = tfc.prune_channels(base, ratio, round_to=8, compensate=x)
    tfc.recalibrate_batchnorm(small, x, batch_size=64)
    return _train(small, x, y, epochs, 3e-4, seed)


def pareto(seeds, sparsities, ratios, speedups, uniform_epochs, step, decay, finetune_steps, folder, cache, save,
           progress_dir):
    x, y = tfc.data.load("digits", "train")
    xt, yt = tfc.data.load("digits", "test")
    rows = []
    for seed in tqdm(seeds, desc="seeds"):
        base = _train(_digits_model(seed), x, y, 30, 3e-3, seed)
        files, cases = [], []

        def add(method, setting, path, acc, extra=None):
            files.append(path)
            cases.append(dict(seed=seed, method=method, setting=setting, accuracy=float(acc), **(extra or {})))
        path = os.path.join(folder, f"s{seed}_unpruned.tflite")
        add("unpruned", "", path, _qat_int8(base, x, y, xt, yt, path, seed))
        for sp in tqdm(speedups, desc="optimize", leave=False):  # first: the longest, and the one in question
            path = os.path.join(folder, f"s{seed}_optimize{sp}.tflite")
            hist_path = os.path.join(folder, f"s{seed}_optimize{sp}_history.json")
            small, rep = optimize(base, ((x, y), (xt, yt)), path, speedup=sp, step=step, decay=decay, seed=seed,
                                  cache=cache, history=hist_path, finetune_steps=finetune_steps, verbose=1)
            add("optimize", f"speedup {sp}", path, rep.int8_accuracy,
                {"iterations": len(rep.history["iterations"]), "optimize_speedup": rep.speedup["local"],
                 "kept": [(r["group"], r["kept"]) for r in rep.history["iterations"]],
                 "history": rep.history})
            rep.plot(os.path.join(progress_dir, f"optimize_s{seed}_{sp}.png"))
            save(rows + cases)
        for r in tqdm(ratios, desc="uniform", leave=False):
            path = os.path.join(folder, f"s{seed}_uniform{int(100 * r)}.tflite")
            small = _uniform(base, r, x, y, uniform_epochs, seed)
            add("uniform channels", f"ratio {r}", path, _qat_int8(small, x, y, xt, yt, path, seed),
                {"flops": tfc.analysis.flops(small) / tfc.analysis.flops(base)})
            save(rows + cases)
        for s in tqdm(sparsities, desc="magnitude", leave=False):
            path = os.path.join(folder, f"s{seed}_mag{int(100 * s)}.tflite")
            add("tfmot magnitude", f"{int(100 * s)} %", path, _qat_int8(_magnitude(base, s, x, y, seed), x, y, xt,
                                                                         yt, path, seed))
            save(rows + cases)
        times = interleaved_ms(files, rounds=40, per_round=50,
                               rounds_iter=lambda r: tqdm(r, desc="latency", leave=False))
        med = [float(np.median(t)) for t in times]
        for c, m in zip(cases, med):
            c.update(ms=m, speedup=med[0] / m, delta=100 * (c["accuracy"] - cases[0]["accuracy"]))
        rows += cases
        _print(cases)
    return rows


def _print(cases):
    print(f"\n{'seed':>4}  {'method':<18}{'setting':<14}{'int8 acc':>9}{'Δ pt':>7}{'ms':>9}{'speed-up':>9}")
    for c in cases:
        print(f"{c['seed']:>4}  {c['method']:<18}{c['setting']:<14}{c['accuracy']:>9.4f}{c['delta']:>+7.2f}"
              f"{c['ms']:>9.4f}{c['speedup']:>8.2f}x")


def summary(rows, limit=1.0):
    """Per method, the lowest mean latency (ms, speed-up) among settings within `limit` points (mean)."""
    out = {}
    keys = {(r["method"], r["setting"]) for r in rows}
    for method, setting in keys:
        rs = [r for r in rows if (r["method"], r["setting"]) == (method, setting)]
        delta, sp = np.mean([r["delta"] for r in rs]), np.mean([r["speedup"] for r in rs])
        if delta >= -limit and (method not in out or sp > out[method][1]):
            out[method] = (setting, float(sp), float(delta))
    return out


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for method, marker in (("unpruned", "k*"), ("tfmot magnitude", "s-"), ("uniform channels", "o-"),
                           ("optimize", "^-")):
        for seed in sorted({r["seed"] for r in rows}):
            rs = sorted([r for r in rows if r["method"] == method and r["seed"] == seed], key=lambda r: r["ms"])
            if rs:
                ax.plot([r["ms"] * 1000 for r in rs], [100 * r["accuracy"] for r in rs], marker,
                        label=f"{method} (seed {seed})", markersize=8 if method == "unpruned" else 5)
    ax.set_xlabel("measured int8 latency (µs, 1 thread, XNNPACK)")
    ax.set_ylabel("int8 test accuracy (%)")
    ax.set_title("ResNet-style on digits: accuracy against measured latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _adb_device():
    """The tests' emulated phone behind a private adb server; returns (serial, binary, stop)."""
    import shutil
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from adb_device.emulator import FakeDevice, make_elf
    adb = shutil.which("adb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tempfile.mkdtemp()
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    env = dict(os.environ, HOME=home, ANDROID_SDK_HOME=home, ANDROID_USER_HOME=home)
    subprocess.run([adb, "-P", str(port), "start-server"], check=True, capture_output=True, env=env, timeout=30)
    d = FakeDevice()
    subprocess.run([adb, "-P", str(port), "connect", d.serial], check=True, capture_output=True, timeout=30)
    binary = make_elf(os.path.join(home, "android_aarch64_benchmark_model"), "arm64-v8a")

    def stop():
        subprocess.run([adb, "-P", str(port), "kill-server"], capture_output=True, timeout=30)
        d.close()
    return d.serial, binary, stop


def check(cache, rounds, repeats):
    x, y = tfc.data.load("digits", "train")
    base = _train(_digits_model(0), x, y, 30, 3e-3, 0)
    models = {"unpruned": base, "uniform 0.5": tfc.prune_channels(base, 0.5, round_to=8),
              "uniform 0.25": tfc.prune_channels(base, 0.25, round_to=8)}
    serial, binary, stop = _adb_device()
    rows = []
    try:
        for dev in ("local", f"adb:{serial}"):
            table = latency.LatencyTable(dev, cache=cache, binary=binary if dev != "local" else None,
                                         repeats=repeats)
            for name, m in models.items():
                c = table.check(m, rounds=rounds)
                print(f"{name:<14}{c.format()}", flush=True)
                rows.append(dict(model=name, **c.to_dict()))
    finally:
        stop()
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="check,pareto")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--sparsities", default="0.5,0.75,0.9")
    p.add_argument("--ratios", default="0.25,0.4,0.5,0.6")
    p.add_argument("--speedups", default="1.5,2")
    p.add_argument("--uniform_epochs", type=int, default=10)
    p.add_argument("--step", type=float, default=0.08, help="NetAdapt's first latency cut (default 0.08)")
    p.add_argument("--decay", type=float, default=0.96)
    p.add_argument("--finetune_steps", type=int, default=100, help="NetAdapt's short fine-tune (default 100)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the table check")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds per new table entry (median)")
    p.add_argument("--cache", default=None, help="latency tables (default ~/.cache/tfcompress/latency)")
    p.add_argument("--json", default="out/pareto.json")
    p.add_argument("--png", default="out/pareto.png")
    a = p.parse_args(argv)
    nums = lambda s: [float(v) for v in s.split(",") if v]  # noqa: E731
    out = {"cpu": cpu_name(), "parts": a.parts}
    parts = a.parts.split(",")
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)

    def save():
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1, default=float)
        os.replace(tmp, a.json)
    if "check" in parts:
        out["check"] = check(a.cache, a.rounds, a.repeats)
        save()
    if "pareto" in parts:
        with tempfile.TemporaryDirectory() as folder:
            def partial(rows):
                out["rows_partial"] = rows
                save()
            out["rows"] = pareto([int(s) for s in a.seeds.split(",")], nums(a.sparsities), nums(a.ratios),
                                 nums(a.speedups), a.uniform_epochs, a.step, a.decay, a.finetune_steps, folder,
                                 a.cache, partial, os.path.dirname(os.path.abspath(a.png)))
        out["best_within_1pt"] = summary(out["rows"])
        print("\nbest mean speed-up within 1 point of the unpruned int8 model:")
        for method, (setting, sp, delta) in sorted(out["best_within_1pt"].items()):
            print(f"  {method:<18}{setting:<14}{sp:.2f}x  ({delta:+.2f} points)")
        save()
        _plot(out["rows"], a.png)


if __name__ == "__main__":
    main()
