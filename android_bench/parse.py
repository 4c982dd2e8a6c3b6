"""Read any era of TFLite / LiteRT `benchmark_model` console output into a `BenchResult`.

Eras handled (real samples live in tests/data/benchmark_outputs/):

- 2019: `Average inference timings in us: Warmup: X, Init: Y, no stats: Z`
- 2020+: `Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..`,
  `Peak memory footprint (MB): init=.. overall=..`, `Memory footprint delta ... (MB): init=.. overall=..`
- later: the same lines prefixed with `INFO: `, stat lines with `p5= median= p95=`, numbers in `%g`
  notation (`2.95034e+06`), `Replacing N out of M node(s) with delegate`.
- LiteRT: the `========== BENCHMARK RESULTS ==========` block, in milliseconds.
- op-profiling tables, delegate applied / partially applied / failed lines, `Benchmarking failed.`
"""
import re

from android_bench.results import BenchResult

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PREFIX = re.compile(r"^(?:(?:INFO|VERBOSE|WARNING|ERROR|DEBUG):\s*(?:\[[^\]]*\]\s*)?)")
_STAT_KEY = re.compile(rf"(\w+)=({_NUM})")

_INFERENCE = re.compile(
    rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
    rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})")
_OLD_AVERAGE = re.compile(
    rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), no stats: ({_NUM})")
_INIT_SESSION = re.compile(rf"Initialized session in ({_NUM}) ?ms")
_PEAK = re.compile(rf"Peak memory footprint \(MB\): init=({_NUM}) overall=({_NUM})")
_DELTA = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init=({_NUM}) overall=({_NUM})")
_MONITORED = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_CI = re.compile(rf"95% confidence interval of the mean in us: \+-({_NUM})")
_PERCENTILES = re.compile(rf"Percentiles in us: p50=({_NUM}) p90=({_NUM}) p95=({_NUM}) p99=({_NUM})")
_REPLACING = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \(([^)]*)\)")
_FULL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be completely executed")
_PARTIAL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be partially executed"
                      r"(?: by the delegate w/ (\d+) delegate kernels)?")
_NO_DELEGATE = re.compile(r"No delegate applied: all (\d+) node\(s\) run on the built-in kernels")
_NOT_APPLIED = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")
_FAILED_DELEGATE = re.compile(r"Failed to apply (?:the )?(\S+) delegate")
_THREADS = re.compile(r"^(?:Num threads|#threads used for CPU inference): \[(\d+)\]")
_GRAPH = re.compile(r"^Graph: \[(.*)\]$")
_USE = re.compile(r"^Use (gpu|nnapi|xnnpack|hexagon|coreml) ?: \[(1|true)\]", re.IGNORECASE)

# LiteRT's BenchmarkLoggingListener block (litert/tools/benchmark_litert_model.h), values in ms / MB.
_LITERT = {
    "init_ms": re.compile(rf"Model initialization:\s*({_NUM}) ms"),
    "first_ms": re.compile(rf"Warmup \(first\):\s*({_NUM}) ms"),
    "warmup_avg_ms": re.compile(rf"Warmup \(avg\):\s*({_NUM}) ms"),
    "avg_ms": re.compile(rf"Inference \(avg\):\s*({_NUM}) ms"),
    "min_ms": re.compile(rf"Inference \(min\):\s*({_NUM}) ms"),
    "max_ms": re.compile(rf"Inference \(max\):\s*({_NUM}) ms"),
    "std_ms": re.compile(rf"Inference \(std\):\s*({_NUM})"),
    "mem_init_mb": re.compile(rf"Init footprint:\s*({_NUM}) MB"),
    "mem_overall_mb": re.compile(rf"Overall footprint:\s*({_NUM}) MB"),
    "mem_peak_mb": re.compile(rf"Peak memory:\s*({_NUM}) MB"),
}
_LITERT_RUNS = re.compile(r"Inference \(avg\):.*\((\d+) runs\)")


def _ms(us):
    return None if us is None else float(us) / 1000.0


def _stat_line(line):
    """`count=50 first=.. curr=.. min=.. max=.. avg=.. std=.. [p5=.. median=.. p95=..]` -> dict."""
    if not line.startswith("count="):
        return None
    return {k: float(v) for k, v in _STAT_KEY.findall(line)}


def _strip(line):
    return _PREFIX.sub("", line.rstrip("\r\n")).strip()


def _profile_rows(lines):
    """Per-op rows of the regular-run `Run Order` table (or the only one, in 2019 output)."""
    start = None
    for i, line in enumerate(lines):
        if "Operator-wise Profiling Info for Regular Benchmark Runs" in line:
            start = i
            break
    if start is None:
        start = 0
    rows, inside = [], False
    for line in lines[start:]:
        if "Run Order" in line and line.strip().startswith("="):
            if inside:
                break
            inside = True
            continue
        if not inside:
            continue
        if line.strip().startswith("=") or not line.strip():
            if rows or line.strip().startswith("="):
                break
            continue
        cells = [c.strip() for c in line.strip("\n").split("\t") if c.strip()]
        if len(cells) < 9 or cells[0].startswith("["):
            continue
        try:
            rows.append({"type": cells[0], "first_ms": float(cells[2]), "avg_ms": float(cells[3]),
                         "percent": float(cells[4].rstrip("%")), "times_called": int(float(cells[7])),
                         "name": "\t".join(cells[8:])})
        except ValueError:
            continue
    return rows or None


def parse_output(text, **known):
    """Parses `benchmark_model` output (stdout and stderr together) into a `BenchResult`.

    Args:
      text: the console output.
      **known: fields the caller already knows (model, device, runner, threads, delegate); they win
        over what the output says.

    Returns:
      A `BenchResult`; `ok` is False, with a one-line `error`, when the run failed or printed no timing.
    """
    raw_lines = text.splitlines()
    lines = [_strip(line) for line in raw_lines]
    r = BenchResult()
    stats, errors, delegate_failure = [], [], None
    failed = False
    in_litert = False
    profile_timings = []
    profile_section = None

    for raw, line in zip(raw_lines, lines):
        if not line:
            continue
        if "Operator-wise Profiling Info for Regular Benchmark Runs" in line:
            profile_section = "runs"
        elif "Profiling Info for Benchmark Initialization" in line:
            profile_section = "init"
        if "BENCHMARK RESULTS" in line and "=" in line:
            in_litert = True
            continue
        if in_litert:
            for name, pattern in _LITERT.items():
                m = pattern.search(line)
                if m:
                    setattr(r, name, float(m.group(1)))
            m = _LITERT_RUNS.search(line)
            if m:
                r.runs = int(m.group(1))
            if set(line) == {"="}:
                in_litert = False
            continue
        if line.startswith("Timings (microseconds):"):
            profile_timings.append((profile_section, _stat_line(line.split(":", 1)[1].strip())))
            continue
        s = _stat_line(line)
        if s is not None:
            stats.append(s)
            continue
        m = _INFERENCE.search(line)
        if m:
            r.init_ms, r.first_ms, r.warmup_avg_ms, r.avg_ms = (_ms(v) for v in m.groups())
            continue
        m = _OLD_AVERAGE.search(line)
        if m:
            r.warmup_avg_ms, r.init_ms, r.avg_ms = (_ms(v) for v in m.groups())
            continue
        m = _INIT_SESSION.search(line)
        if m and r.init_ms is None:
            r.init_ms = float(m.group(1))
            continue
        m = _PEAK.search(line)
        if m:
            r.mem_init_mb, r.mem_overall_mb = float(m.group(1)), float(m.group(2))
            r.mem_peak_mb = r.mem_peak_mb if r.mem_peak_mb is not None else r.mem_overall_mb
            continue
        m = _DELTA.search(line)
        if m:
            r.mem_init_mb, r.mem_overall_mb = float(m.group(1)), float(m.group(2))
            continue
        m = _MONITORED.search(line)
        if m:
            r.mem_peak_mb = float(m.group(1))
            continue
        m = _CI.search(line)
        if m:
            r.ci95_ms = _ms(m.group(1))
            continue
        m = _PERCENTILES.search(line)
        if m:
            r.p50_ms, r.p90_ms, r.p95_ms, r.p99_ms = (_ms(v) for v in m.groups())
            continue
        m = _REPLACING.search(line)
        if m:
            r.delegated_nodes = (r.delegated_nodes or 0) + int(m.group(1))
            if m.group(2):
                r.total_nodes = int(m.group(2))
            continue
        m = _NO_DELEGATE.search(line)
        if m:
            r.delegated_nodes, r.total_nodes = 0, int(m.group(1))
            continue
        m = _NOT_APPLIED.search(line)
        if m:
            r.delegated_nodes = 0
            continue
        m = _FAILED_DELEGATE.search(line)
        if m:
            delegate_failure = line.rstrip(".")
            continue
        m = _THREADS.search(line)
        if m:
            r.threads = int(m.group(1))
            continue
        m = _GRAPH.search(line)
        if m:
            r.model = m.group(1)
            continue
        m = _USE.search(line)
        if m:
            r.delegate = m.group(1).lower()
            continue
        if line.startswith("Benchmarking failed"):
            failed = True
        if raw.lstrip().startswith("ERROR:") or any(marker in line for marker in _ERROR_MARKERS):
            errors.append(line)

    if stats:
        _apply_stats(r, stats)
    elif r.avg_ms is None:
        runs = [t for section, t in profile_timings if section in ("runs", None) and t and "avg" in t]
        if runs:  # only the profiler's summary survived: its run timings are the same runs
            _apply_stats(r, runs[-1:])
        inits = [t for section, t in profile_timings if section == "init" and t]
        if r.init_ms is None and inits and "curr" in inits[-1]:
            r.init_ms = _ms(inits[-1]["curr"])

    if delegate_failure or failed or r.avg_ms is None:
        reason = delegate_failure or next((e for e in errors), None)
        if delegate_failure and errors:
            reason = f"{delegate_failure}: {errors[0]}"
        if reason is None:
            reason = "benchmark_model failed" if failed else "no inference timings in the benchmark output"
        r.failed(reason)
    r.op_profile = _profile_rows(raw_lines)
    for key, value in known.items():
        if value is not None:
            setattr(r, key, value)
    return r


_ERROR_MARKERS = ("ERROR:", "Failed to", "failed to", "Model file doesn't exist", "Error:",
                  "Permission denied", "not found", "No such file", "Exec format error")


def _apply_stats(r, stats):
    run = stats[-1]
    warm = stats[-2] if len(stats) >= 2 else None
    r.runs = int(run["count"]) if "count" in run else r.runs
    if "avg" in run:
        r.avg_ms = _ms(run["avg"])
    r.std_ms = _ms(run.get("std"))
    r.min_ms = _ms(run.get("min"))
    r.max_ms = _ms(run.get("max"))
    if "p5" in run and r.p5_ms is None:
        r.p5_ms = _ms(run["p5"])
    if "median" in run and r.p50_ms is None:
        r.p50_ms = _ms(run["median"])
    if "p95" in run and r.p95_ms is None:
        r.p95_ms = _ms(run["p95"])
    if warm is not None:
        if r.first_ms is None:
            r.first_ms = _ms(warm.get("first", warm.get("curr")))
        if r.warmup_avg_ms is None and "avg" in warm:
            r.warmup_avg_ms = _ms(warm["avg"])
