"""Stability and overhead of `tfcompress bench` on the local device.

Runs `tfcompress bench MODEL` REPEATS times (each a fresh process, as a user would) on a model of
≥ 5 ms per inference and reports:

- the coefficient of variation of avg_ms across the repetitions (target ≤ 3 %);
- the harness overhead per model: wall time of the command minus the time spent inside the warm-up
  and timed runs (runs × avg_ms + warm-ups × warmup_avg_ms; target ≤ 2 s);
- the machine's own drift at the same time scale: after each repetition, a fixed NumPy matrix-multiply
  loop that fits in the L1 cache runs for as long as that repetition's timed runs did, on the same CPUs,
  in a fresh process; the CV of its mean time per loop is the floor no harness can go below.

    python benchmarks/bench_stability.py --json stability.json [--model M.tflite] [--repeats 5] \
        [--target_ci 1] [--cpu_mask 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_model(path):
    """A small conv net that takes ≥ 5 ms per inference on one thread."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[2])\n"
        "from tfcompress._tf import tf, keras\n"
        "L = keras.layers\n"
        "m = keras.Sequential([L.Input((112, 112, 3))] + [L.Conv2D(32, 3, activation='relu') for _ in range(4)]"
        " + [L.GlobalAveragePooling2D(), L.Dense(10)])\n"
        "open(sys.argv[1], 'wb').write(tf.lite.TFLiteConverter.from_keras_model(m).convert())\n")
    subprocess.run([sys.executable, "-c", code, path, REPO], check=True, capture_output=True)
    return path


REFERENCE = (
    "import os, sys, time\n"
    "os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')\n"
    "import numpy as np\n"
    "if sys.argv[2]: os.sched_setaffinity(0, {i for i in range(64) if int(sys.argv[2], 16) >> i & 1})\n"
    "a = np.random.default_rng(0).random((64, 64), dtype=np.float32)\n"
    "times, end = [], time.perf_counter() + float(sys.argv[1])\n"
    "while time.perf_counter() < end:\n"
    "    t = time.perf_counter()\n"
    "    for _ in range(200):\n"
    "        a @ a\n"
    "    times.append(time.perf_counter() - t)\n"
    "print(1000.0 * sum(times) / len(times))\n")


def reference_ms(seconds, cpu_mask=None):
    """Mean ms of a fixed L1-resident compute loop run for `seconds` in a fresh single-threaded process."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", REFERENCE, str(seconds), cpu_mask or ""], check=True,
                         capture_output=True, text=True, env=env)
    return float(out.stdout.strip())


def _cv(values):
    return 100.0 * statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="where to write the measurements")
    parser.add_argument("--model", help="a .tflite model (default: a conv net built here)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--min_secs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--delegate", default="xnnpack")
    parser.add_argument("--cpu_mask", help="pin the runs (e.g. 1 for CPU 0)")
    parser.add_argument("--target_ci", type=float, default=0.0,
                        help="bench --target_ci: run until the mean's 95%% CI is within ± this %%")
    parser.add_argument("--max_secs", type=float, default=150.0)
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="bench-stability-")
    model = args.model or build_model(os.path.join(work, "conv112.tflite"))
    rows = []
    for i in range(args.repeats):
        out = os.path.join(work, f"run{i}.json")
        cmd = [sys.executable, "-m", "tfcompress.cli", "bench", model, "--json", out, "--threads", str(args.threads),
               "--delegate", args.delegate, "--runs", str(args.runs), "--warmup", str(args.warmup),
               "--warmup_min_secs", "0", "--min_secs", str(args.min_secs)]
        if args.cpu_mask:
            cmd += ["--cpu_mask", args.cpu_mask]
        if args.target_ci:
            cmd += ["--target_ci", str(args.target_ci), "--max_secs", str(args.max_secs)]
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
        wall = time.perf_counter() - start
        [r] = json.load(open(out))
        inside = (r["runs"] * r["avg_ms"] + args.warmup * r["warmup_avg_ms"]) / 1000.0
        ref = reference_ms(r["runs"] * r["avg_ms"] / 1000.0, args.cpu_mask)
        rows.append({"reference_ms": ref, "repeat": i + 1, "avg_ms": r["avg_ms"], "ci95_ms": r["ci95_ms"], "std_ms": r["std_ms"],
                     "p50_ms": r["p50_ms"],
                     "runs": r["runs"], "wall_s": wall, "inside_runs_s": inside, "overhead_s": wall - inside,
                     "loadavg_1min": load})

    avgs = [row["avg_ms"] for row in rows]
    cv = _cv(avgs)
    cv_p50 = _cv([row["p50_ms"] for row in rows])
    cv_ref = _cv([row["reference_ms"] for row in rows])
    overhead = max(row["overhead_s"] for row in rows)
    summary = {"model": model, "threads": args.threads, "delegate": args.delegate, "repeats": args.repeats,
               "mean_avg_ms": statistics.mean(avgs), "cv_avg_ms_percent": cv,
               "cv_p50_ms_percent": cv_p50, "cv_reference_percent": cv_ref, "cpus": os.cpu_count(), "min_secs": args.min_secs,
               "target_ci": args.target_ci, "cpu_mask": args.cpu_mask, "max_overhead_s": overhead,
               "mean_overhead_s": statistics.mean(row["overhead_s"] for row in rows),
               "cv_target_percent": 3.0, "overhead_target_s": 2.0,
               "pass": cv <= 3.0 and overhead <= 2.0, "repeats_detail": rows}

    print(f"{'repeat':>6}  {'avg ms':>8}  {'±95% ms':>8}  {'std ms':>7}  {'p50 ms':>7}  {'runs':>5}  {'wall s':>7}  "
          f"{'in runs s':>9}  {'overhead s':>10}  {'ref. ms':>8}  {'load':>5}")
    for row in rows:
        print(f"{row['repeat']:>6}  {row['avg_ms']:8.3f}  {row['ci95_ms'] or 0:8.3f}  {row['std_ms']:7.3f}  "
              f"{row['p50_ms']:7.3f}  {row['runs']:>5}  {row['wall_s']:7.2f}  {row['inside_runs_s']:9.2f}  "
              f"{row['overhead_s']:10.2f}  {row['reference_ms']:8.3f}  {row['loadavg_1min']:5.2f}")
    print(f"\nmachine drift: CV of the reference loop {cv_ref:.2f} % over the same durations")
    print(f"mean avg_ms {summary['mean_avg_ms']:.3f} ms, CV {cv:.2f} % (target ≤ 3 %; p50 CV {cv_p50:.2f} %), "
          f"overhead max {overhead:.2f} s / mean {summary['mean_overhead_s']:.2f} s (target ≤ 2 s): "
          f"{'PASS' if summary['pass'] else 'FAIL'}")
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, args.json)
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
