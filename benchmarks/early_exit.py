"""Early exits on digits: Keras vs TFLite exit decisions, and measured latency under a calibrated policy.

    nice python benchmarks/early_exit.py --json out/early_exit.json --png out/early_exit.png

Model: `tfcompress.models.mobilenet_v2_small` made deeper and wider (13 inverted-residual blocks: 3 at
16x16, 4 at 8x8, 6 at 4x4, up to 160 channels, a 512-wide head) at 32x32 input (digits resized), so one
int8 inference takes several hundred microseconds and the per-invoke overhead of the Python runtime
(about ten microseconds per stage) is a small part of it. Two exits, after the last block at 16x16 and
the last at 8x8 (default heads). Training: 1,078 images of the digits train
split (the other 270 are the calibration set), Adam, cosine decay, then BatchNorm statistics
re-estimated on the training images, then `--qat_epochs` of QAT (`tfc.quantize`), so the Keras model
whose exit decisions the file is compared with is the int8 model the file holds. Policies are
calibrated on the calibration set (stage costs = the stages' measured int8 latencies) to at most
`--max_drop` accuracy loss (and to none), against the exported file (`agree_with`: the budget holds on
the file's outputs too, and the expected fraction of differing decisions is at most
`--max_disagreement`) and on Keras alone; everything is measured on the 449 test images with the int8
file. The first policy (`--max_drop`, default 0, calibrated on Keras) is the one saved and reported first.

Latency: LiteRT, 1 thread, XNNPACK, this process. The full model (`tfc.export` of the model without its
exits) and the staged runner alternate sample by sample for `--rounds` passes over the test set, each
timed from float input to label (quantize, invoke(s), dequantize, decide).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import cpu_name  # noqa: E402

# 16x16: blocks 0-2 (stage 0), 8x8: blocks 3-6 (stage 1), 4x4: blocks 7-12 (stage 2), at 32x32 input
BLOCKS = ((1, 16, 1), (4, 24, 2), (4, 24, 1), (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 128, 2),
          (6, 128, 1), (6, 128, 1), (6, 128, 1), (6, 160, 1), (6, 160, 1))
HEAD = 512


def progress(done, total, what, start):
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r{what} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                     f"{time.time() - start:5.0f} s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def load_data(size):
    from tfcompress import data
    x, y = data.load("digits", "train")
    xt, yt = data.load("digits", "test")
    x, _ = data.fit_to_input(x, (None, size, size, 1))
    xt, _ = data.fit_to_input(xt, (None, size, size, 1))
    n_val = 270
    return (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val]), (xt, yt)


def train(args, train_set):
    import tfcompress as tfc
    from tfcompress import models
    from tfcompress._tf import keras, tf
    tf.keras.utils.set_random_seed(args.seed)
    base = models.mobilenet_v2_small((args.size, args.size, 1), blocks=BLOCKS, head=HEAD, dropout=0.1)
    ee = tfc.add_exits(base, at=args.at.split(","))
    x, y = train_set
    steps = args.epochs * int(np.ceil(len(x) / 32))
    lr = keras.optimizers.schedules.CosineDecay(args.lr, steps)
    ee.compile(optimizer=keras.optimizers.Adam(lr), metrics=["accuracy"])
    start = time.time()

    class Bar(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            progress(epoch + 1, args.epochs, "train", start)
    ee.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0, callbacks=[Bar()])
    tfc.recalibrate_batchnorm(ee, x, batch_size=64)
    if not args.qat_epochs:
        return ee, time.time() - start
    # QAT: the Keras model whose exit decisions are compared is then the int8 model the file holds
    qat = tfc.quantize(ee)
    steps = args.qat_epochs * int(np.ceil(len(x) / 32))
    qat.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.qat_lr, steps)),
                loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * len(qat.outputs),
                loss_weights=ee.exit_loss_weights)
    start_q = time.time()

    class QatBar(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            progress(epoch + 1, args.qat_epochs, "QAT", start_q)
    qat.fit(x, [y] * len(qat.outputs), epochs=args.qat_epochs, batch_size=32, verbose=0, callbacks=[QatBar()])
    return qat, time.time() - start


def quantized_full(path):
    from tfcompress.exits.runner import load_interpreter
    from tfcompress.tflite.runtime import dequantize, quantize
    it = load_interpreter(path, num_threads=1)
    d_in, d_out = it.get_input_details()[0], it.get_output_details()[0]

    def run(sample):
        it.set_tensor(d_in["index"], quantize(sample[None], d_in))
        it.invoke()
        return int(np.argmax(dequantize(it.get_tensor(d_out["index"]), d_out)))
    return run


def stage_latencies(runner, xt, repeats):
    """Median microseconds of each stage's invoke alone, on real inputs."""
    from tfcompress.tflite.runtime import quantize
    times = [[] for _ in runner.stages]
    for _ in range(repeats):
        for sample in xt[:100]:
            value = quantize(sample[None], runner.stages[0].input)
            for i, stage in enumerate(runner.stages):
                t = time.perf_counter_ns()
                _, features = stage(value)
                times[i].append((time.perf_counter_ns() - t) / 1e3)
                value = features
    return [float(np.median(t)) for t in times]


def interleaved(full, runner, xt, rounds, what):
    """Mean per-sample microseconds of the full model and of the runner, alternating sample by sample."""
    t_full, t_exit, exits = [], [], []
    start = time.time()
    for r in range(rounds):
        for sample in xt:
            t = time.perf_counter_ns()
            full(sample)
            t_full.append(time.perf_counter_ns() - t)
            t = time.perf_counter_ns()
            _, k = runner.run_sample(sample)
            t_exit.append(time.perf_counter_ns() - t)
            exits.append(k)
        progress(r + 1, rounds, what, start)
    return float(np.mean(t_full)) / 1e3, float(np.mean(t_exit)) / 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--at", default="block2_add,block6_add")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--qat_epochs", type=int, default=3, help="QAT fine-tuning epochs (tfc.quantize); 0: none")
    parser.add_argument("--qat_lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_drop", type=float, default=0.0,
                        help="accuracy budget of the policy reported first (0.01 and 0 are also reported)")
    parser.add_argument("--max_disagreement", type=float, default=0.005,
                        help="calibrate_exits against the file: expected fraction of differing decisions")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", default="out/early_exit")
    parser.add_argument("--json", default=None)
    parser.add_argument("--png", default=None)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    import tfcompress as tfc
    from tfcompress.exits import ExitPolicy, Runner
    from tfcompress.exits.calibration import exit_logits
    from tfcompress.exits.export import backbone
    from tfcompress.tflite import reader
    train_set, val_set, (xt, yt) = load_data(args.size)
    ee, train_s = train(args, train_set)
    keras_test = exit_logits(ee, xt)
    keras_acc = [float((l.argmax(1) == yt).mean()) for l in keras_test]

    exits_path, full_path = os.path.join(args.out, "exits.tflite"), os.path.join(args.out, "full.tflite")
    rep = train_set[0][:256]
    report = tfc.export_exits(ee, exits_path, representative_data=rep)
    full_report = tfc.export(backbone(ee), full_path, mode="int8", representative_data=rep)
    runner = Runner(exits_path)
    model = reader.read(open(exits_path, "rb").read())
    integer_only = not reader.float_ops(model) and all(
        np.dtype(d["dtype"]) == np.int8 for s in runner.stages for d in [s.input, s.logits] + ([s.features] if s.features else []))
    lite_test = runner.all_logits(xt)
    lite_acc = [float((l.argmax(1) == yt).mean()) for l in lite_test]
    np.savez(os.path.join(args.out, "logits.npz"), y_test=yt, y_cal=val_set[1],
             **{f"keras_test{i}": l for i, l in enumerate(keras_test)},
             **{f"lite_test{i}": l for i, l in enumerate(lite_test)},
             **{f"keras_cal{i}": l for i, l in enumerate(exit_logits(ee, val_set[0]))},
             **{f"lite_cal{i}": l for i, l in enumerate(runner.all_logits(val_set[0]))})
    logit_diff = [float(np.abs(k - l).max()) for k, l in zip(keras_test, lite_test)]

    stage_us = stage_latencies(runner, xt, 3)
    full = quantized_full(full_path)
    full_labels = np.array([full(s) for s in xt])
    full_acc = float((full_labels == yt).mean())

    def measure(policy, what):
        """The policy on the test set: the file's exits against Keras's, accuracy, interleaved latency."""
        keras_exits = policy.decide(keras_test[:-1])
        runner.policy = policy
        labels, exits = runner.predict(xt)
        keras_labels = np.stack([l.argmax(1) for l in keras_test])[keras_exits, np.arange(len(yt))]
        f_us, e_us = interleaved(full, runner, xt, args.rounds, f"latency, {what}")
        return {"what": what, "policy": policy.to_dict(), "decisions_equal": float((keras_exits == exits).mean()),
                "labels_equal": float((keras_labels == labels).mean()), "accuracy": float((labels == yt).mean()),
                "full_mean_us": f_us, "exit_mean_us": e_us, "speedup": f_us / e_us,
                "exit_fractions": (np.bincount(exits, minlength=len(runner.stages)) / len(yt)).tolist()}

    rows = []
    for drop in dict.fromkeys((args.max_drop, 0.0, 0.01)):
        for against in (None, exits_path):       # calibrated on Keras alone, or against the file (agree_with)
            p = tfc.calibrate_exits(ee, val_set, max_accuracy_drop=drop, costs=stage_us, agree_with=against,
                                    max_disagreement=args.max_disagreement)
            rows.append(measure(p, f"max_accuracy_drop={drop:g}" + (", agree_with the file" if against else
                                                                      ", Keras alone")))
    head = rows[0]
    policy = ExitPolicy.from_dict(head["policy"])
    policy.save(os.path.join(args.out, "policy.json"))

    sweep = []
    start = time.time()
    grid = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, None]
    for j, t in enumerate(grid):
        runner.policy = ExitPolicy(thresholds=[t] * runner.exits)
        f_us, e_us = interleaved(full, runner, xt, 1, f"sweep {j + 1}/{len(grid)}")
        labels, ex = runner.predict(xt)
        sweep.append({"threshold": t, "accuracy": float((labels == yt).mean()), "mean_us": e_us,
                      "decisions_equal": float((runner.policy.decide(keras_test[:-1]) == ex).mean()),
                      "full_us": f_us, "exit_fractions": (np.bincount(ex, minlength=len(runner.stages)) / len(yt)).tolist()})
    runner.policy = policy

    result = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "runtime": "ai_edge_litert", "threads": 1,
        "model": f"mobilenet_v2_small({args.size}x{args.size}x1, {len(BLOCKS)} blocks, head {HEAD})",
        "exits_at": args.at.split(","), "epochs": args.epochs, "train_seconds": train_s,
        "qat_epochs": args.qat_epochs, "keras_test_accuracy": keras_acc, "tflite_test_accuracy": lite_acc,
        "max_logit_diff": logit_diff,
        "integer_only": bool(integer_only), "ops": report.op_counts, "relu6_pinned":
            f"{sum(r['pinned'] for r in report.relu6)}/{len(report.relu6)}",
        "handoff_requantizes": runner.stage_handoff_requantizes(),
        "stage_us": stage_us, "policy": head["policy"], "max_disagreement": args.max_disagreement,
        "decisions_equal": head["decisions_equal"], "labels_equal": head["labels_equal"],
        "full_accuracy": full_acc, "policy_accuracy": head["accuracy"],
        "accuracy_drop_points": 100 * (full_acc - head["accuracy"]), "exit_fractions": head["exit_fractions"],
        "full_mean_us": head["full_mean_us"], "exit_mean_us": head["exit_mean_us"], "speedup": head["speedup"],
        "rounds": args.rounds, "sweep": sweep, "policies": rows,
        "full_bytes": full_report.bytes, "exits_bytes": report.bytes,
    }
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.png:
        plot(result, args.png)
    return result


def print_table(r):
    print(f"\nCPU: {r['cpu']}, {r['cores']} cores; LiteRT, 1 thread; {r['model']}; exits at {', '.join(r['exits_at'])}")
    print("exit        keras acc  int8 acc  stage us")
    names = [f"exit{i}" for i in range(len(r["exits_at"]))] + ["final"]
    for n, a, b, s in zip(names, r["keras_test_accuracy"], r["tflite_test_accuracy"], r["stage_us"]):
        print(f"{n:<11} {a:9.4f}  {b:8.4f}  {s:8.1f}")
    p = r["policy"]
    print(f"policy ({p['criterion']}): thresholds {[None if t is None else round(t, 4) for t in p['thresholds']]}, "
          f"exit fractions on test {[round(f, 3) for f in r['exit_fractions']]}")
    print("measure                                  value")
    rows = [("TFLite exit decisions = Keras", f"{100 * r['decisions_equal']:.2f} %"),
            ("TFLite labels = Keras (policy)", f"{100 * r['labels_equal']:.2f} %"),
            ("full model int8 accuracy", f"{r['full_accuracy']:.4f}"),
            ("policy int8 accuracy", f"{r['policy_accuracy']:.4f} ({-r['accuracy_drop_points']:+.2f} points)"),
            ("full model mean us / sample", f"{r['full_mean_us']:.1f}"),
            ("early exit mean us / sample", f"{r['exit_mean_us']:.1f}"),
            ("speed-up", f"{r['speedup']:.2f}x"),
            ("every stage integer-only", str(r["integer_only"])),
            ("ReLU6 pinned", r["relu6_pinned"])]
    for k, v in rows:
        print(f"{k:<40} {v}")
    print("calibrated policies (the first is the one above): thresholds, test accuracy, decisions = Keras, latency")
    for s in r["policies"]:
        est = s["policy"].get("expected_disagreement")
        print(f"  {s['what']:<42} {[None if t is None else round(t, 4) for t in s['policy']['thresholds']]} "
              f"acc {s['accuracy']:.4f}, decisions = Keras {100 * s['decisions_equal']:.2f} %"
              f"{'' if est is None else f' (expected on calibration {100 * est:.2f} % differ)'}, "
              f"{s['full_mean_us']:.1f} -> {s['exit_mean_us']:.1f} us ({s['speedup']:.2f}x), exit fractions "
              f"{[round(f, 3) for f in s['exit_fractions']]}")
    print("threshold  accuracy  mean us  full us  decisions=Keras  exit fractions")
    for s in r["sweep"]:
        t = "never" if s["threshold"] is None else f"{s['threshold']:g}"
        print(f"{t:<10} {s['accuracy']:.4f}  {s['mean_us']:7.1f}  {s['full_us']:7.1f}  {100 * s['decisions_equal']:14.2f} %  "
              f"{[round(f, 3) for f in s['exit_fractions']]}")


def plot(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [(s["mean_us"], s["accuracy"], s["threshold"]) for s in r["sweep"]]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label="early exit, one threshold for all exits")
    for x, y, t in pts:
        ax.annotate("never" if t is None else f"{t:g}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, -8))
    ax.plot([r["exit_mean_us"]], [r["policy_accuracy"]], "r*", markersize=12, label="calibrated policy")
    ax.plot([r["full_mean_us"]], [r["full_accuracy"]], "ks", label="full model (no exits)")
    ax.set_xlabel("mean latency per sample, us (LiteRT int8, 1 thread)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Early exits on digits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
