"""`tfcompress bench`: benchmark .tflite files locally, on Android phones over adb, on boards over ssh.

    tfcompress bench a.tflite b.tflite --device adb:all --binary android_aarch64_benchmark_model \
        --threads 1,4 --delegate cpu,xnnpack --json out.json --compare
"""
import os
import sys

from tfcompress.commands import json_flag
from tfcompress.errors import InputError

DELEGATE_NAMES = ("cpu", "xnnpack", "gpu", "nnapi")


def add_parser(parser):
    parser.add_argument("models", nargs="+", metavar="FILE.tflite", help="models to measure")
    parser.add_argument("--device", action="append", default=None,
                        help="local (default), adb (the only device), adb:SERIAL, adb:all, ssh:[USER@]HOST; "
                             "repeat or separate with commas for several devices (run in parallel)")
    parser.add_argument("--binary", help="benchmark_model binary for the Android device's ABI (adb devices)")
    parser.add_argument("--threads", default="1", help="comma-separated --num_threads values (default 1)")
    parser.add_argument("--delegate", default="xnnpack", help="comma-separated: cpu, xnnpack, gpu, nnapi "
                                                              "(default xnnpack; cpu means XNNPACK off)")
    parser.add_argument("--runs", type=int, default=50, help="--num_runs: minimum timed runs (default 50)")
    parser.add_argument("--warmup", type=int, default=1, help="--warmup_runs (default 1)")
    parser.add_argument("--min_secs", type=float, default=1.0, help="minimum seconds of timed runs (default 1)")
    parser.add_argument("--warmup_min_secs", type=float, default=0.5, help="minimum warm-up seconds (default 0.5)")
    parser.add_argument("--max_secs", type=float, default=150.0,
                        help="most seconds of warm-up or of timed runs (default 150)")
    parser.add_argument("--target_ci", type=float, default=0.0, metavar="PCT",
                        help="local and ssh devices: keep running (up to --max_secs) until the 95%% confidence "
                             "interval of the mean is within ±PCT %% of it (default 0: off)")
    parser.add_argument("--enable_op_profiling", action="store_true", help="print the slowest ops (adb)")
    json_flag.add(parser, "the results (a list of BenchResult)")
    parser.add_argument("--csv", metavar="OUT", help="write the results as CSV")
    parser.add_argument("--plot", metavar="OUT.png", help="a PNG of the median latency per model and configuration, "
                                                          "whiskers p5-p95, one panel per device")
    parser.add_argument("--compare", action="store_true",
                        help="say how much slower or faster each model is than the first (median latency); the "
                             "JSON then carries the ratio as vs_first")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is killed (default 600)")
    parser.add_argument("--cooldown", type=float, default=0.0,
                        help="seconds to rest between runs; waits for the temperature to fall back where readable")
    parser.add_argument("--cpu_mask", help="hexadecimal CPU affinity mask, e.g. f0 for the big cores (taskset)")
    parser.add_argument("--keep", action="store_true", help="leave pushed files on the device")
    parser.add_argument("--adb", metavar="PATH", help="adb executable (default $ADB, then PATH)")
    parser.add_argument("--remote_python", default="python3", help="python on ssh boards (default python3)")
    from tfcompress.exits import bench as exits_bench
    exits_bench.add_arguments(parser)


def _csv_list(text, what, convert=str):
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise InputError(f"--{what} is empty")
    try:
        return list(dict.fromkeys(convert(t) for t in items))
    except ValueError:
        raise InputError(f"--{what} must be a comma-separated list. Got: {text!r}") from None


def _check_models(paths):
    for path in paths:
        if not os.path.isfile(path):
            raise InputError(f"model not found: {path}")
        with open(path, "rb") as f:
            head = f.read(8)
        if head[4:8] != b"TFL3":
            raise InputError(f"{path} is not a .tflite file (no TFL3 identifier)")


def _configs(args):
    from android_bench.errors import BenchError
    from android_bench.runners import BenchConfig
    threads = _csv_list(args.threads, "threads", int)
    delegates = _csv_list(args.delegate, "delegate", lambda s: s.lower())
    bad = [d for d in delegates if d not in DELEGATE_NAMES]
    if bad:
        raise InputError(f"--delegate must be among {', '.join(DELEGATE_NAMES)}. Got: {', '.join(bad)}")
    if args.timeout <= 0 or args.cooldown < 0:
        raise InputError(f"--timeout must be > 0 and --cooldown >= 0. Got: {args.timeout}, {args.cooldown}")
    try:
        return [BenchConfig(threads=t, delegate=d, runs=args.runs, warmup=args.warmup, min_secs=args.min_secs,
                            warmup_min_secs=args.warmup_min_secs, op_profiling=args.enable_op_profiling,
                            max_secs=args.max_secs, target_ci=args.target_ci)
                for t in threads for d in delegates]
    except BenchError as e:
        raise InputError(str(e)) from None


def _runners(args):
    from android_bench.adb import Adb
    from android_bench.adb_runner import AdbRunner
    from android_bench.errors import BenchError
    from android_bench.runners import LocalRunner
    from android_bench.ssh_runner import SshRunner
    specs = [s.strip() for d in (args.device or ["local"]) for s in d.split(",") if s.strip()]
    runners = []
    try:
        for spec in dict.fromkeys(specs):
            kind, _, rest = spec.partition(":")
            if kind == "local" and not rest:
                runners.append(LocalRunner(cpu_mask=args.cpu_mask, timeout=args.timeout))
            elif kind == "ssh":
                runners.append(SshRunner(rest, python=args.remote_python, timeout=args.timeout, keep=args.keep,
                                         cpu_mask=args.cpu_mask))
            elif kind == "adb":
                if args.target_ci:
                    raise InputError("--target_ci works on local and ssh devices only: benchmark_model on "
                                     "Android has no such flag (raise --min_secs instead)")
                for serial in _adb_serials(Adb(path=args.adb), rest):
                    runners.append(AdbRunner(Adb(serial=serial, path=args.adb), args.binary, keep=args.keep,
                                             timeout=args.timeout, cpu_mask=args.cpu_mask))
            else:
                raise InputError(f"--device must be local, adb, adb:SERIAL, adb:all or ssh:HOST. Got: {spec!r}")
    except BenchError as e:
        raise InputError(str(e)) from None
    return runners


def _adb_serials(adb, rest):
    from android_bench.errors import BenchError
    devices = adb.devices()
    ready = [s for s, state in devices if state == "device"]
    if rest == "all" or not rest:
        if not ready:
            raise InputError("no adb device is connected and authorized (adb devices lists none in state "
                             "'device')")
        if not rest and len(ready) > 1:
            raise InputError(f"several adb devices ({', '.join(ready)}): pass --device adb:SERIAL or adb:all")
        return ready
    if rest not in dict(devices) and ":" in rest:  # a network device: connect it first
        try:
            adb.connect(rest)
        except BenchError as e:
            raise InputError(str(e)) from None
        devices = adb.devices()
    state = dict(devices).get(rest)
    if state != "device":
        hint = " (accept the USB debugging prompt on the phone)" if state == "unauthorized" else ""
        raise InputError(f"adb device {rest} is {state or 'not connected'}{hint}")
    return [rest]


def _check_outputs(args):
    from tfcompress.fileio import check_output
    outs = [p for p in (json_flag.path(args), args.csv, args.plot) if p]
    if len({os.path.abspath(p) for p in outs}) != len(outs):
        raise InputError("--json, --csv and --plot must name different files")
    for path in outs:
        if any(os.path.abspath(path) == os.path.abspath(m) for m in args.models + [args.binary or ""]):
            raise InputError(f"output {path} would overwrite an input; choose another name")
        check_output(path, inputs=args.models + ([args.binary] if args.binary else []))
    if args.plot and not args.plot.lower().endswith(".png"):
        raise InputError(f"--plot writes a PNG file; name it .png. Got: {args.plot}")


def _write(path, writer, inputs):
    from tfcompress.fileio import atomic_path
    with atomic_path(path, inputs=inputs) as tmp:
        writer(tmp)


def main(args):
    from android_bench import report
    from android_bench.runners import LocalRunner, run_matrix
    _check_models(args.models)
    configs = _configs(args)
    _check_outputs(args)
    runners = _runners(args)
    if args.stages:  # early-exit files: one run per stage signature, and the expected latency under a policy
        from tfcompress.exits import bench as exits_bench
        return exits_bench.main(args, runners, configs)
    total = len(runners) * len(args.models) * len(configs)
    progress = report.Progress(total)
    results = run_matrix(runners, args.models, configs, cooldown=args.cooldown, progress=progress)
    fatal = [getattr(r, "fatal_at_prepare", None) for r in runners]
    if all(fatal):  # nothing could run anywhere: a user error, no output file
        raise InputError(str(fatal[0]))
    inputs = args.models + ([args.binary] if args.binary else [])
    if json_flag.path(args):
        _write(args.json, lambda tmp: open(tmp, "w", encoding="utf-8").write(report.to_json(results, args.compare)),
               inputs)
    if args.csv:
        _write(args.csv, lambda tmp: open(tmp, "w", newline="").write(report.to_csv(results)), inputs)
    if args.plot:
        _write(args.plot, lambda tmp: report.plot(results, tmp), inputs)
    say = json_flag.people(args)
    for runner in runners:
        if getattr(runner, "props", None):
            print(f"{runner.device}: {runner.describe()}", file=say)
        elif isinstance(runner, LocalRunner):  # whether int8 beats float32 here is a property of this CPU
            from tfcompress import machine
            print(f"local: {machine.line(machine.describe())}", file=say)
    print(report.format_table(results, compare=args.compare), file=say)
    if args.enable_op_profiling:
        _print_top_ops(results, file=say)
    if args.json == json_flag.STDOUT:
        print(report.to_json(results, args.compare), end="")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"tfcompress: {len(failed)} of {len(results)} configurations failed", file=sys.stderr)
        return 1
    return 0


def _print_top_ops(results, n=5, file=None):
    for r in results:
        if r.op_profile:
            print(f"\nslowest ops: {r.model} {r.device} thr={r.threads} {r.delegate}", file=file)
            for row in sorted(r.op_profile, key=lambda row: -row["avg_ms"])[:n]:
                print(f"  {row['avg_ms']:9.3f} ms  {row['percent']:6.2f}%  {row['type']:<24} {row['name']}",
                      file=file)
