#!/usr/bin/env python3
"""benchmark_model for a Linux board that has only numpy and a LiteRT / tflite_runtime interpreter.

A single self-contained file (copy it to the board; it imports nothing from tfcompress). It takes
benchmark_model's flag names and prints benchmark_model's output format, so `android_bench.parse`
reads its output like the real tool's:

    python3 edge_runner.py --graph=model.tflite --num_threads=4 --num_runs=50 --warmup_runs=1 \
        --min_secs=1 --use_xnnpack=true

Flags: --graph, --num_threads (default 1), --num_runs (50), --warmup_runs (1), --min_secs (1.0),
--max_secs (150), --warmup_min_secs (0.5), --use_xnnpack (true), --use_gpu, --use_nnapi,
--external_delegate_path, --enable_op_profiling (accepted; the Python runtime has no op profiler),
--signature_to_run_for=KEY (time that signature's subgraph, e.g. one stage of an early-exit file), and one
of its own: --target_ci=PCT keeps the timed runs going (past --num_runs and --min_secs, up to --max_secs)
until the 95 % confidence interval of the mean latency is within ±PCT % of it.

The confidence interval comes from batch means (10 contiguous batches), so slow drifts of the machine
widen it where the plain standard error would not; it is printed after the percentiles whenever there
are at least 20 timed runs. Exit code 0 on success, 1 with `Benchmarking failed.` otherwise.
"""
import os
import sys
import time

FLAGS = {"graph": "", "num_threads": 1, "num_runs": 50, "warmup_runs": 1, "min_secs": 1.0,
         "max_secs": 150.0, "warmup_min_secs": 0.5, "use_xnnpack": True, "use_gpu": False,
         "use_nnapi": False, "external_delegate_path": "", "enable_op_profiling": False, "target_ci": 0.0,
         "signature_to_run_for": ""}
_GPU_LIBS = ("libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so")


class BenchmarkError(Exception):
    """A failure benchmark_model would report before `Benchmarking failed.`.

    `delegate` names the delegate that failed to apply, if that is what happened.
    """

    def __init__(self, message, delegate=None):
        super().__init__(" ".join(str(message).split()))
        self.delegate = delegate

    def lines(self):
        out = [f"ERROR: {self}"]
        if self.delegate:
            out.append(f"Failed to apply {self.delegate} delegate.")
        return out


def interpreter_module():
    """ai_edge_litert first, tflite_runtime second, TensorFlow's copy last."""
    try:
        from ai_edge_litert import interpreter
        return interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter
        return interpreter
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError:
        raise BenchmarkError("no TFLite runtime: install ai-edge-litert or tflite-runtime") from None
    return tf.lite


def parse_flags(argv):
    values = dict(FLAGS)
    for arg in argv:
        if not arg.startswith("--"):
            raise BenchmarkError(f"unexpected argument: {arg}")
        name, sep, value = arg[2:].partition("=")
        if name not in FLAGS:
            print(f"WARNING: unknown flag --{name} ignored", flush=True)
            continue
        default = FLAGS[name]
        if isinstance(default, bool):
            value = (value.lower() in ("1", "true", "yes")) if sep else True
        elif isinstance(default, int):
            value = int(value)
        elif isinstance(default, float):
            value = float(value)
        values[name] = value
    return values


def _memory_mb():
    """(current RSS, peak RSS) of this process in MB, from /proc; (None, None) where unreadable."""
    rss = hwm = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024.0
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return rss, hwm


def _random_input(detail, rng):
    import numpy as np
    shape = [max(1, int(d)) for d in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    raise BenchmarkError(f"input {detail['name']} has unsupported type {dtype}")


def _delegated_nodes(interpreter):
    """(delegated, total) original nodes, reconstructed from the DELEGATE nodes' partitions."""
    try:
        ops = interpreter._get_ops_details()
    except Exception:  # private API: absent in some runtimes
        return None, None
    plain = [op for op in ops if op.get("op_name") != "DELEGATE"]
    producer = {}
    for op in plain:
        for t in op.get("outputs", []):
            producer[int(t)] = op["index"]
    by_index = {op["index"]: op for op in plain}
    covered = set()
    for op in ops:
        if op.get("op_name") != "DELEGATE":
            continue
        boundary = {int(t) for t in op.get("inputs", [])}
        stack = [int(t) for t in op.get("outputs", [])]
        while stack:
            t = stack.pop()
            index = producer.get(t)
            if index is None or index in covered:
                continue
            covered.add(index)
            stack.extend(int(i) for i in by_index[index].get("inputs", []) if int(i) not in boundary and int(i) >= 0)
    return len(covered), len(plain)


def _make_delegates(module, flags):
    if flags["use_nnapi"]:
        raise BenchmarkError("NNAPI is only available on Android", delegate="NNAPI")
    names = []
    if flags["use_gpu"]:
        names = list(_GPU_LIBS)
    if flags["external_delegate_path"]:
        names = [flags["external_delegate_path"]]
    if not names:
        return [], None
    errors = []
    hook = sys.unraisablehook
    sys.unraisablehook = _quiet_unraisable(hook)
    try:
        for name in names:
            try:
                return [module.load_delegate(name)], ("GPU" if flags["use_gpu"] else "external")
            except (ValueError, OSError, RuntimeError) as e:
                errors.append(str(e).splitlines()[0] if str(e) else type(e).__name__)
    finally:
        import gc
        gc.collect()  # the failed Delegate objects die here, under the quiet hook
        sys.unraisablehook = hook
    what = "GPU" if flags["use_gpu"] else "external"
    raise BenchmarkError(f"Failed to create {what} delegate ({'; '.join(errors)})", delegate=what)


def load(flags):
    """Builds the interpreter as benchmark_model would: (interpreter, init seconds, delegate name)."""
    module = interpreter_module()
    path = flags["graph"]
    if not path or not os.path.isfile(path):
        raise BenchmarkError(f"Model file doesn't exist: {path}")
    delegates, delegate_name = _make_delegates(module, flags)
    kwargs = {"model_path": path, "num_threads": int(flags["num_threads"])}
    if delegates:
        kwargs["experimental_delegates"] = delegates
    resolver = getattr(module, "OpResolverType", None)
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = (
            resolver.AUTO if flags["use_xnnpack"] else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    start = time.perf_counter()
    try:
        interpreter = module.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        text = " ".join(str(e).split())
        if delegates:
            raise BenchmarkError(text, delegate=delegate_name) from None
        raise BenchmarkError(f"Failed to load model {path}: {text}") from None
    return interpreter, time.perf_counter() - start, delegate_name


# Two-sided 97.5 % quantile of Student's t with BATCHES - 1 degrees of freedom.
BATCHES, T_975 = 10, 2.2622


def mean_ci(times):
    """Half-width of the 95 % confidence interval of the mean of `times` by the method of batch means.

    The runs are cut into 10 contiguous batches (the remainder at the start is dropped); the batch means
    are close to independent even when consecutive runs are not, so a machine whose speed drifts gives
    a wide interval. None with fewer than 20 runs.
    """
    size = len(times) // BATCHES
    if size < 2:
        return None
    tail = times[len(times) - size * BATCHES:]
    means = [sum(tail[i * size:(i + 1) * size]) / size for i in range(BATCHES)]
    avg = sum(means) / BATCHES
    var = sum((m - avg) ** 2 for m in means) / (BATCHES - 1)
    return T_975 * (var / BATCHES) ** 0.5


def _run_phase(interpreter, min_runs, min_secs, max_secs, target_ci=0.0):
    """Per-run microseconds: at least `min_runs` runs and `min_secs` seconds, at most `max_secs` seconds;
    with `target_ci` > 0, also until the mean's 95 % confidence interval is within ±target_ci %."""
    times = []
    start = time.perf_counter()
    next_check = 0.0
    while True:
        t0 = time.perf_counter_ns()
        interpreter.invoke()
        times.append((time.perf_counter_ns() - t0) / 1000.0)
        elapsed = time.perf_counter() - start
        if max_secs > 0 and elapsed > max_secs:
            return times
        if len(times) >= min_runs and elapsed >= min_secs:
            if target_ci <= 0:
                return times
            if elapsed >= next_check:  # the check costs O(runs): a few times a second is enough
                next_check = elapsed + 0.25
                ci = mean_ci(times)
                if ci is not None and ci <= target_ci / 100.0 * (sum(times) / len(times)):
                    return times


class _Signature:
    """One signature's subgraph as something with `invoke()`, its inputs set once to random values."""

    def __init__(self, interpreter, key, rng):
        if key not in interpreter.get_signature_list():
            raise BenchmarkError(f"no signature {key!r} in the model (it has: "
                                 f"{', '.join(sorted(interpreter.get_signature_list())) or 'none'})")
        runner = interpreter.get_signature_runner(key)
        runner(**{n: _random_input(d, rng) for n, d in runner.get_input_details().items()})
        wrapper, graph = getattr(interpreter, "_interpreter", None), getattr(runner, "_subgraph_index", None)
        if wrapper is not None and graph is not None and hasattr(wrapper, "Invoke"):
            self.invoke = lambda: wrapper.Invoke(graph)   # inputs stay set: time the invoke alone
        else:
            inputs = {n: _random_input(d, rng) for n, d in runner.get_input_details().items()}
            self.invoke = lambda: runner(**inputs)


def measure(flags):
    """Runs the benchmark; returns a dict of raw numbers in microseconds / MB (see `format_output`)."""
    import numpy as np
    rss0, _ = _memory_mb()
    interpreter, init_s, delegate_name = load(flags)
    rss_init, _ = _memory_mb()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _random_input(detail, rng))
    delegated, total = _delegated_nodes(interpreter)
    if flags["signature_to_run_for"]:
        interpreter = _Signature(interpreter, flags["signature_to_run_for"], rng)
    warm = _run_phase(interpreter, max(1, flags["warmup_runs"]), flags["warmup_min_secs"], flags["max_secs"])
    runs = _run_phase(interpreter, max(1, flags["num_runs"]), flags["min_secs"], flags["max_secs"],
                      flags["target_ci"])
    rss_end, hwm = _memory_mb()
    delta = (lambda a: None if a is None or rss0 is None else max(0.0, a - rss0))
    return {"init_us": init_s * 1e6, "warmup_us": warm, "runs_us": runs, "mem_init_mb": delta(rss_init),
            "mem_overall_mb": delta(rss_end), "mem_peak_mb": hwm, "delegated_nodes": delegated,
            "total_nodes": total, "delegate": delegate_name}


def stats(values):
    """benchmark_model's statistics of a list of microsecond timings (population std)."""
    import numpy as np
    a = np.asarray(values, dtype=np.float64)
    pct = {p: float(np.percentile(a, p)) for p in (5, 50, 90, 95, 99)}
    return {"count": int(a.size), "first": float(a[0]), "curr": float(a[-1]), "min": float(a.min()),
            "max": float(a.max()), "avg": float(a.mean()), "std": float(a.std()), "pct": pct}


def _stat_line(s):
    return (f"count={s['count']} first={s['first']:g} curr={s['curr']:g} min={s['min']:g} max={s['max']:g} "
            f"avg={s['avg']:g} std={s['std']:g} p5={s['pct'][5]:g} median={s['pct'][50]:g} p95={s['pct'][95]:g}")


def format_output(flags, m):
    """benchmark_model's console lines for the numbers `measure` returned."""
    w, r = stats(m["warmup_us"]), stats(m["runs_us"])
    lines = []
    if m["delegated_nodes"]:
        lines.append(f"VERBOSE: Replacing {m['delegated_nodes']} out of {m['total_nodes']} node(s) with delegate "
                     f"(TfLiteXNNPackDelegate) node.")
    elif m["total_nodes"] is not None:
        lines.append(f"INFO: No delegate applied: all {m['total_nodes']} node(s) run on the built-in kernels.")
    lines += [
        f"INFO: Initialized session in {m['init_us'] / 1000.0:.3f}ms.",
        f"INFO: Running benchmark for at least {flags['warmup_runs']} iterations and at least "
        f"{flags['warmup_min_secs']:g} seconds but terminate if exceeding {flags['max_secs']:g} seconds.",
        "INFO: " + _stat_line(w), "",
        f"INFO: Running benchmark for at least {flags['num_runs']} iterations and at least "
        f"{flags['min_secs']:g} seconds but terminate if exceeding {flags['max_secs']:g} seconds.",
        "INFO: " + _stat_line(r), "",
        f"INFO: Inference timings in us: Init: {m['init_us']:g}, First inference: {w['first']:g}, "
        f"Warmup (avg): {w['avg']:g}, Inference (avg): {r['avg']:g}",
        f"INFO: Percentiles in us: p50={r['pct'][50]:g} p90={r['pct'][90]:g} p95={r['pct'][95]:g} "
        f"p99={r['pct'][99]:g}",
    ]
    ci = mean_ci(m["runs_us"])
    if ci is not None:
        lines.append(f"INFO: 95% confidence interval of the mean in us: +-{ci:g} ({100.0 * ci / r['avg']:.2f} %) "
                     f"from {BATCHES} batch means")
        if flags["target_ci"] > 0 and 100.0 * ci / r["avg"] > flags["target_ci"]:
            lines.append(f"WARNING: the confidence interval did not reach +-{flags['target_ci']:g} % within "
                         f"--max_secs={flags['max_secs']:g}")
    if m["mem_init_mb"] is not None:
        lines.append("INFO: Memory footprint delta from the start of the tool (MB): "
                     f"init={m['mem_init_mb']:g} overall={m['mem_overall_mb']:g}")
    if m["mem_peak_mb"] is not None:
        lines.append(f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {m['mem_peak_mb']:g}")
    return "\n".join(lines)


def _quiet_unraisable(hook):
    # ai_edge_litert's Delegate.__del__ raises AttributeError after a failed load_delegate.
    def quiet(info):
        if isinstance(info.exc_value, AttributeError) and "_library" in str(info.exc_value):
            return
        hook(info)
    return quiet


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    print("INFO: STARTING!", flush=True)
    try:
        flags = parse_flags(argv)
        print(f"INFO: Num threads: [{flags['num_threads']}]")
        print(f"INFO: Graph: [{flags['graph']}]")
        print(f"INFO: Use xnnpack: [{int(flags['use_xnnpack'])}]")
        if flags["signature_to_run_for"]:
            print(f"INFO: Signature to run: [{flags['signature_to_run_for']}]")
        if flags["use_gpu"]:
            print("INFO: Use gpu: [1]")
        if flags["use_nnapi"]:
            print("INFO: Use nnapi: [1]")
        if flags["enable_op_profiling"]:
            print("WARNING: op profiling is not available in the Python LiteRT runtime; ignored")
        m = measure(flags)
        print(format_output(flags, m), flush=True)
        return 0
    except BenchmarkError as e:
        print("\n".join(e.lines()), flush=True)
        print("Benchmarking failed.", flush=True)
        return 1
    except Exception as e:  # anything else is still a failed benchmark, reported in its format
        print(f"ERROR: {type(e).__name__}: {' '.join(str(e).split())}", flush=True)
        print("Benchmarking failed.", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
