"""Benchmark configurations, the LocalRunner, and running a models × configs × devices matrix.

A runner measures one (model, config) at a time and returns a `BenchResult`:

- `LocalRunner` (this module): the edge runner with LiteRT in a child process on this machine.
- `AdbRunner` (android_bench.adb_runner): the user's benchmark_model on an Android device.
- `SshRunner` (android_bench.ssh_runner): edge_runner.py on a Linux board over ssh.
"""
import concurrent.futures
import dataclasses
import glob
import os
import signal
import subprocess
import sys
import time

from android_bench import edge_runner
from android_bench.errors import BenchError, DeviceGoneError, FatalDeviceError
from android_bench.parse import parse_output
from android_bench.results import BenchResult

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benchmark configuration; the flag names are benchmark_model's.

    Args:
      threads: --num_threads. Defaults to `1`.
      delegate: "cpu" (XNNPACK off), "xnnpack", "gpu" or "nnapi". Defaults to `"xnnpack"`.
      runs: --num_runs, the minimum number of timed runs. Defaults to `50`.
      warmup: --warmup_runs. Defaults to `1`.
      min_secs: --min_secs, the minimum time of the timed runs. Defaults to `1.0`.
      warmup_min_secs: --warmup_min_secs. Defaults to `0.5`.
      op_profiling: --enable_op_profiling. Defaults to `False`.
      max_secs: --max_secs, the most seconds a phase (warm-up or timed runs) may take. Defaults to `150`.
      target_ci: the edge runner's --target_ci: run until the 95 % confidence interval of the mean is
        within ±target_ci % (local and ssh devices; benchmark_model has no such flag). Defaults to `0` (off).
      signature: --signature_to_run_for: time this signature (one stage of an early-exit file). Defaults to
        `None` (the model's default subgraph).
    """
    threads: int = 1
    delegate: str = "xnnpack"
    runs: int = 50
    warmup: int = 1
    min_secs: float = 1.0
    warmup_min_secs: float = 0.5
    op_profiling: bool = False
    max_secs: float = 150.0
    target_ci: float = 0.0
    signature: str = None

    def __post_init__(self):
        if self.delegate not in DELEGATES:
            raise BenchError(f"delegate must be one of {', '.join(DELEGATES)}. Got: {self.delegate!r}")
        if int(self.threads) < 1 or int(self.runs) < 1 or int(self.warmup) < 0:
            raise BenchError(f"threads and runs must be >= 1 and warmup >= 0. Got: threads={self.threads}, "
                             f"runs={self.runs}, warmup={self.warmup}")
        if self.min_secs < 0 or self.warmup_min_secs < 0 or self.target_ci < 0:
            raise BenchError(f"min_secs, warmup_min_secs and target_ci must be >= 0. Got: {self.min_secs}, "
                             f"{self.warmup_min_secs}, {self.target_ci}")
        if self.max_secs <= 0:
            raise BenchError(f"max_secs must be > 0. Got: {self.max_secs}")

    def flags(self, graph):
        """benchmark_model's command-line flags for this configuration."""
        out = [f"--graph={graph}", f"--num_threads={self.threads}", f"--num_runs={self.runs}",
               f"--warmup_runs={self.warmup}", f"--min_secs={self.min_secs:g}",
               f"--warmup_min_secs={self.warmup_min_secs:g}", f"--max_secs={self.max_secs:g}",
               f"--use_xnnpack={'true' if self.delegate == 'xnnpack' else 'false'}"]
        if self.delegate == "gpu":
            out.append("--use_gpu=true")
        if self.delegate == "nnapi":
            out.append("--use_nnapi=true")
        if self.op_profiling:
            out.append("--enable_op_profiling=true")
        if self.target_ci:
            out.append(f"--target_ci={self.target_ci:g}")
        if self.signature:
            out.append(f"--signature_to_run_for={self.signature}")
        return out


class Runner:
    """The interface every runner implements."""
    name = "runner"
    device = "?"
    fatal_at_prepare = None  # set by run_device when prepare failed: nothing ran on this device

    def prepare(self, models):
        """Everything needed before the first run (push binaries, check the device)."""

    def run(self, model, config):
        """Measures `model` under `config`; returns a BenchResult (failed ones have ok=False)."""
        raise NotImplementedError

    def temperatures(self):
        """Thermal zone readings in m°C, or [] where unreadable (cool-down then only waits)."""
        return []

    def cleanup(self):
        """Removes what prepare/run left behind."""

    def known(self, model, config):
        return dict(model=model, device=self.device, runner=self.name, threads=config.threads,
                    delegate=config.delegate)


def read_local_temperatures(root="/sys/class/thermal"):
    temps = []
    for path in glob.glob(os.path.join(root, "thermal_zone*", "temp")):
        try:
            with open(path) as f:
                temps.append(int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return temps


def mask_cpus(mask):
    """The CPU numbers of a hexadecimal affinity mask ("f0" -> {4, 5, 6, 7})."""
    try:
        value = int(str(mask).lower().replace("0x", ""), 16)
    except ValueError:
        raise BenchError(f"--cpu_mask must be hexadecimal (e.g. f0). Got: {mask!r}") from None
    cpus = {i for i in range(value.bit_length()) if value >> i & 1}
    if not cpus:
        raise BenchError(f"--cpu_mask selects no CPU. Got: {mask!r}")
    return cpus


class LocalRunner(Runner):
    """Benchmarks on this machine: the edge runner with LiteRT (ai_edge_litert, else tflite_runtime) in a
    child process per configuration, so every run starts from a fresh process (clean memory figures, no
    state left by the previous model), a crash fails only its configuration, and a hung run is killed.

    Args:
      cpu_mask: hexadecimal CPU mask; each run is pinned to those CPUs (Linux). Defaults to `None`.
      timeout: seconds one configuration may take before its process is killed. Defaults to `600`.
      python: the interpreter that runs the edge runner. Defaults to this one.
    """
    name = "local"

    def __init__(self, device="local", cpu_mask=None, timeout=600.0, python=None):
        self.device = device
        self.cpus = None
        self.timeout = float(timeout)
        self.python = python or sys.executable
        if cpu_mask is not None:
            usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
            self.cpus = mask_cpus(cpu_mask) & usable
            if not self.cpus:
                raise BenchError(f"--cpu_mask {cpu_mask} selects none of this machine's CPUs {sorted(usable)}")

    def command(self, model, config):
        return [self.python, edge_runner.__file__.replace(".pyc", ".py")] + config.flags(model)

    def run(self, model, config):
        known = self.known(model, config)
        cpus = self.cpus
        try:
            proc = subprocess.Popen(self.command(model, config), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
                                    preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        except OSError as e:
            raise FatalDeviceError(f"cannot start {self.python}: {e.strerror}") from None
        try:
            text, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return BenchResult(**known).failed(f"timed out after {self.timeout:g} s; the run was killed")
        except BaseException:  # Ctrl-C: take the child down with us
            _kill_group(proc)
            raise
        result = parse_output(text, **known)
        if proc.returncode < 0:
            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:
                name = f"signal {-proc.returncode}"
            return result.failed(f"the benchmark process died with {name}")
        if result.ok and proc.returncode != 0:
            result.failed(f"edge runner exited with {proc.returncode}")
        return result

    def temperatures(self):
        return read_local_temperatures()


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def cool_down(runner, seconds, baseline, margin=1000, limit=None, sleep=time.sleep, clock=time.monotonic):
    """Waits `seconds`, then (where the device reports temperatures) until its hottest thermal zone is
    within `margin` m°C of `baseline` or `limit` seconds (default 10 × seconds, at most 300) have passed.

    Returns the seconds waited.
    """
    if not seconds or seconds <= 0:
        return 0.0
    start = clock()
    sleep(seconds)
    limit = min(300.0, 10 * seconds) if limit is None else limit
    if baseline:
        while clock() - start < limit:
            temps = runner.temperatures()
            if not temps or max(temps) <= max(baseline) + margin:
                break
            sleep(min(1.0, seconds))
    return clock() - start


def run_device(runner, models, configs, cooldown=0.0, progress=None):
    """All models × configs on one runner, in order; a fatal device error fails the rest, keeping the done."""
    results, fatal = [], None
    jobs = [(m, c) for m in models for c in configs]
    try:
        try:
            runner.prepare(models)
        except FatalDeviceError as e:
            fatal = runner.fatal_at_prepare = e
        baseline = runner.temperatures() if cooldown and not fatal else []
        for i, (model, config) in enumerate(jobs):
            if fatal is None:
                if i and cooldown:
                    cool_down(runner, cooldown, baseline)
                try:
                    r = runner.run(model, config)
                except FatalDeviceError as e:
                    fatal = e
                except BenchError as e:  # this configuration only
                    r = BenchResult(**runner.known(model, config)).failed(str(e))
            if fatal is not None:
                r = BenchResult(**runner.known(model, config)).failed(f"{runner.device}: {fatal}")
            results.append(r)
            if progress:
                progress(r)
    finally:
        if not isinstance(fatal, DeviceGoneError):  # a vanished device has nothing left to clean
            try:
                runner.cleanup()
            except BenchError:
                pass
    return results


def run_matrix(runners, models, configs, cooldown=0.0, progress=None):
    """Runs every runner (device) in its own thread; returns results ordered by device, model, config."""
    if len(runners) == 1:
        return run_device(runners[0], models, configs, cooldown, progress)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(runners)) as pool:
        futures = [pool.submit(run_device, r, models, configs, cooldown, progress) for r in runners]
        return [res for f in futures for res in f.result()]
