"""AdbRunner: the user's benchmark_model binary on an Android device, driven through `adb`."""
import os
import posixpath
import re
import subprocess

from android_bench.adb import Adb, quote_command
from android_bench.elf import check_abi
from android_bench.errors import BenchError, BinaryError, DeviceError, DeviceGoneError
from android_bench.parse import parse_output
from android_bench.results import BenchResult
from android_bench.runners import Runner

REMOTE_DIR = "/data/local/tmp/tfcompress"
_NOT_EXECUTABLE = re.compile(r"permission denied|not executable|exec format error|cannot execute|"
                             r"syntax error: unexpected|not found", re.IGNORECASE)


class AdbRunner(Runner):
    """Pushes benchmark_model and the models to `REMOTE_DIR`, runs each configuration, cleans up.

    Args:
      adb: an `Adb` for the device.
      binary: path of the benchmark_model binary built for the device's ABI.
      keep: leave the pushed files on the device (later runs skip pushing them). Defaults to `False`.
      timeout: seconds one benchmark may run before it is killed. Defaults to `600`.
      cpu_mask: hexadecimal CPU mask; runs go through `taskset MASK`. Defaults to `None`.
    """
    name = "adb"

    def __init__(self, adb, binary, keep=False, timeout=600.0, cpu_mask=None, remote_dir=REMOTE_DIR):
        if not isinstance(adb, Adb):
            raise TypeError(f"adb must be an android_bench.adb.Adb. Got: {type(adb).__name__}")
        if not binary:
            raise BenchError("--binary is required for adb devices: the benchmark_model binary for the phone "
                             "(e.g. android_aarch64_benchmark_model from the TFLite/LiteRT releases)")
        if not os.path.isfile(binary):
            raise BenchError(f"benchmark binary not found: {binary}")
        if cpu_mask is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", str(cpu_mask)):
            raise BenchError(f"--cpu_mask must be hexadecimal (e.g. f0). Got: {cpu_mask!r}")
        self.adb, self.binary, self.keep = adb, binary, keep
        self.timeout, self.cpu_mask, self.remote_dir = timeout, cpu_mask, remote_dir
        self.device = f"adb:{adb.serial}" if adb.serial else "adb"
        self.props = {}
        self.pushed, self.remote_models = [], {}
        self.remote_binary = posixpath.join(remote_dir, "benchmark_model")
        self.pid_file = posixpath.join(remote_dir, ".benchmark_model.pid")

    def describe(self):
        """"model (soc, abi, Android SDK)" of the device, from its properties."""
        p = self.props
        soc = p.get("ro.soc.model") or p.get("ro.board.platform") or "?"
        return (f"{p.get('ro.product.model', '?')} ({soc}, {p.get('ro.product.cpu.abi', '?')}, "
                f"SDK {p.get('ro.build.version.sdk', '?')})")

    def prepare(self, models):
        try:
            self.props = self.adb.properties()
        except DeviceError as e:
            raise DeviceGoneError(str(e)) if self.adb.state() != "device" else BinaryError(str(e)) from None
        abis = [a for a in self.props.get("ro.product.cpu.abilist", "").split(",") if a]
        abis = abis or [self.props.get("ro.product.cpu.abi", "")]
        check_abi(self.binary, abis, device=f"{self.device} ({self.describe()})")
        r = self.adb.shell(["mkdir", "-p", self.remote_dir])
        if r.returncode != 0:
            raise BinaryError(f"cannot create {self.remote_dir} on {self.device}: {r.output.strip()}")
        try:
            if self.adb.push(self.binary, self.remote_binary):
                self.pushed.append(self.remote_binary)
        except DeviceError as e:
            if isinstance(e, DeviceGoneError):
                raise
            raise BinaryError(str(e)) from None
        self.adb.shell(["chmod", "755", self.remote_binary])
        names = set()
        for model in models:
            base = os.path.basename(model)
            name, i = base, 1
            while name in names:  # two models with one name from different folders
                name, i = f"{i}_{base}", i + 1
            names.add(name)
            self.remote_models[model] = posixpath.join(self.remote_dir, name)

    def _push_model(self, model):
        remote = self.remote_models[model]
        if remote not in self.pushed and self.adb.push(model, remote):
            self.pushed.append(remote)
        return remote

    def command(self, remote_model, config):
        """The device-shell command line: every argument quoted."""
        args = [self.remote_binary] + config.flags(remote_model)
        if self.cpu_mask:
            args = ["taskset", self.cpu_mask.lower().replace("0x", "")] + args
        # The inner sh writes its PID to a file and becomes benchmark_model, so a hung run can be killed on
        # the device after the client is; the outer shell survives to report the exit code.
        pid = quote_command([self.pid_file])
        return (f"cd {quote_command([self.remote_dir])} && "
                f"sh -c 'echo $$ > \"$0\"; exec \"$@\"' {pid} {quote_command(args)}; "
                f"rc=$?; rm -f {pid}; (exit $rc)")

    def run(self, model, config):
        known = self.known(model, config)
        try:
            remote = self._push_model(model)
        except DeviceGoneError:
            raise
        except DeviceError as e:
            return BenchResult(**known).failed(str(e))
        try:
            r = self.adb.shell(self.command(remote, config), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._kill_remote()
            self.adb.check_alive("a benchmark run")
            return BenchResult(**known).failed(f"timed out after {self.timeout:g} s; benchmark_model was killed")
        except DeviceGoneError as e:
            raise DeviceGoneError(f"{e} while running {os.path.basename(model)}") from None
        text = r.stdout + "\n" + r.stderr
        if r.returncode in (126, 127) or (r.returncode != 0 and "STARTING!" not in text
                                           and _NOT_EXECUTABLE.search(text)):
            raise BinaryError(f"benchmark_model cannot run on {self.device} (exit {r.returncode}): "
                              f"{_last_line(text)}; check that the binary is built for "
                              f"{self.props.get('ro.product.cpu.abi', 'the device')} and executable")
        result = parse_output(text, **known)
        if result.ok and r.returncode != 0:
            result.failed(f"benchmark_model exited with {r.returncode}: {_last_line(text)}")
        return result

    def _kill_remote(self):
        pid = quote_command([self.pid_file])
        try:
            self.adb.shell(f"[ -f {pid} ] && kill -9 $(cat {pid}); rm -f {pid}", timeout=15)
        except (BenchError, subprocess.TimeoutExpired):
            pass

    def temperatures(self):
        try:
            r = self.adb.shell("cat /sys/class/thermal/thermal_zone*/temp 2>/dev/null", timeout=15)
        except (BenchError, subprocess.TimeoutExpired):
            return []
        return [int(t) for t in r.stdout.split() if re.fullmatch(r"-?\d+", t)]

    def cleanup(self):
        if self.keep or not self.pushed:
            return
        try:
            self.adb.remove(self.pushed)
            self.adb.shell(f"rmdir {quote_command([self.remote_dir])} 2>/dev/null || true")
            self.pushed = []
        except (DeviceError, subprocess.TimeoutExpired):
            pass


def _last_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
