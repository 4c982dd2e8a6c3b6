"""The real `adb` client through subprocess: devices, properties, push, shell with exit codes, cleanup.

Every command line sent to the device shell is built from arguments quoted with `shlex.quote`, so a
file named `a b;rm -rf x'.tflite` is an argument, never shell syntax. File transfers go through
`adb push` (the sync protocol: no shell involved).
"""
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import uuid

from android_bench.errors import BenchError, DeviceError, DeviceGoneError

_GONE = re.compile(r"device '?[^ ]*'? not found|device offline|no devices/emulators found|"
                   r"device unauthorized|error: closed|protocol fault|connection reset|"
                   r"cannot connect|failed to connect|device still (connecting|authorizing)", re.IGNORECASE)
PROPS = ("ro.product.model", "ro.product.cpu.abi", "ro.product.cpu.abilist", "ro.build.version.sdk",
         "ro.soc.model", "ro.board.platform")


def find_adb(path=None):
    """The adb executable: `path` (from --adb), else $ADB, else the first `adb` on PATH."""
    candidate = path or os.environ.get("ADB") or shutil.which("adb")
    if not candidate:
        raise BenchError("adb not found: install platform-tools (Debian: apt install adb), or pass --adb PATH "
                         "or set $ADB")
    if os.path.sep in candidate or os.path.exists(candidate):
        if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
            raise BenchError(f"adb at {candidate} is not an executable file")
        return candidate
    found = shutil.which(candidate)
    if not found:
        raise BenchError(f"adb not found: {candidate}")
    return found


def quote_command(args):
    """One device-shell command line from a list of arguments, each quoted."""
    return " ".join(shlex.quote(str(a)) for a in args)


class ShellResult:
    """Exit code, stdout and stderr of a command run on the device."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    @property
    def output(self):
        return self.stdout + ("\n" + self.stderr if self.stderr else "")


class Adb:
    """One device through the adb client.

    Args:
      serial: the device serial (`adb -s`); None for the only device. Defaults to `None`.
      path: the adb executable; see `find_adb`. Defaults to `None`.
      server_port: the adb server port (`adb -P`), e.g. to keep tests off the user's server.
        Defaults to `None` ($ANDROID_ADB_SERVER_PORT or 5037).
      timeout: seconds for a quick command (props, stat, rm). Defaults to `30`.
    """

    def __init__(self, serial=None, path=None, server_port=None, timeout=30.0):
        self.path = find_adb(path)
        self.serial = serial
        self.server_port = server_port
        self.timeout = timeout

    def _base(self, with_serial=True):
        cmd = [self.path]
        if self.server_port:
            cmd += ["-P", str(self.server_port)]
        if with_serial and self.serial:
            cmd += ["-s", self.serial]
        return cmd

    def run(self, args, timeout=None, with_serial=True):
        """Runs `adb [-P port] [-s serial] args...`; raises subprocess.TimeoutExpired after `timeout`."""
        try:
            return subprocess.run(self._base(with_serial) + list(args), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace",
                                  timeout=timeout or self.timeout)
        except OSError as e:
            raise BenchError(f"cannot run adb ({self.path}): {e.strerror}") from None

    # devices --------------------------------------------------------------------------------
    def devices(self):
        """[(serial, state)] of every device the adb server knows (state: device, offline, unauthorized…)."""
        p = self.run(["devices"], with_serial=False)
        if p.returncode != 0:
            raise BenchError(f"adb devices failed: {_one_line(p.stderr or p.stdout)}")
        out = []
        for line in p.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith("List of devices") and not line.startswith("*"):
                out.append((parts[0], parts[1]))
        return out

    def connect(self, address):
        """`adb connect HOST:PORT` (network devices); raises DeviceError when it fails."""
        p = self.run(["connect", address], with_serial=False)
        text = (p.stdout + p.stderr).strip()
        if p.returncode != 0 or "connected to" not in text:
            raise DeviceError(f"adb connect {address} failed: {_one_line(text)}")
        return text

    def state(self):
        """`adb get-state` of this device ("device" when usable), or "gone"."""
        try:
            p = self.run(["get-state"], timeout=10)
        except subprocess.TimeoutExpired:
            return "gone"
        return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else "gone"

    def check_alive(self, what):
        state = self.state()
        if state != "device":
            raise DeviceGoneError(f"device {self.serial or ''} disconnected during {what} (state: {state})")

    def properties(self):
        """A dict of the device's system properties (`getprop`)."""
        r = self.shell(["getprop"])
        if r.returncode != 0:
            raise DeviceError(f"getprop failed on {self.serial}: {_one_line(r.output)}")
        props = {}
        for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", r.stdout, re.MULTILINE):
            props[m.group(1)] = m.group(2)
        return props

    # shell ----------------------------------------------------------------------------------
    def shell(self, args, timeout=None):
        """Runs the quoted `args` in the device shell; returns ShellResult with the remote exit code.

        A marker line carries the exit code, so this works without shell_v2 too; its absence means the
        device went away (DeviceGoneError) or adb failed (DeviceError).
        Raises subprocess.TimeoutExpired after `timeout` seconds (the adb client is killed).
        """
        command = args if isinstance(args, str) else quote_command(args)
        marker = f"__TFCOMPRESS_RC_{uuid.uuid4().hex[:8]}="
        p = self.run(["shell", f"{command}; echo {marker}$?"], timeout=timeout)
        m = re.search(re.escape(marker) + r"(\d+)\s*$", p.stdout)
        if m is None:
            text = _one_line(p.stderr or p.stdout)
            if _GONE.search(p.stderr + p.stdout) or self.state() != "device":
                raise DeviceGoneError(f"device {self.serial or ''} disconnected ({text or 'no answer'})")
            raise DeviceError(f"adb shell failed on {self.serial}: {text or f'adb exit {p.returncode}'}")
        return ShellResult(int(m.group(1)), p.stdout[:m.start()], p.stderr)

    def remote_file(self, remote):
        """(size, md5 hex or None) of a device file; (None, None) when it does not exist."""
        path = quote_command([remote])
        r = self.shell(f"stat -c %s {path} && (md5sum {path} 2>/dev/null || true)")
        lines = r.stdout.split("\n") if r.returncode == 0 else []
        try:
            size = int(lines[0].strip())
        except (IndexError, ValueError):
            return None, None
        digest = lines[1].split()[0] if len(lines) > 1 and lines[1].split() else None
        return size, (digest if digest and re.fullmatch(r"[0-9a-f]{32}", digest) else None)

    def push(self, local, remote, timeout=None):
        """`adb push`, skipped when the remote file already has the local size (and, where the device
        has md5sum, the same MD5: a retrained model often keeps its size). Returns True if copied."""
        size, digest = self.remote_file(remote)
        if size == os.path.getsize(local) and (digest is None or digest == _md5(local)):
            return False
        try:
            p = self.run(["push", local, remote], timeout=timeout or max(self.timeout, 120))
        except subprocess.TimeoutExpired:
            raise DeviceError(f"push of {os.path.basename(local)} to {self.serial} timed out") from None
        if p.returncode != 0:
            lines = (p.stderr + "\n" + p.stdout).splitlines()
            text = next((ln.strip() for ln in lines if "error" in ln.lower()), _one_line(p.stderr + p.stdout))
            if _GONE.search(text):
                raise DeviceGoneError(f"device {self.serial} disconnected during push ({text})")
            raise DeviceError(f"push of {os.path.basename(local)} to {self.serial}:{remote} failed: {text}")
        return True

    def remove(self, paths):
        if paths:
            self.shell(["rm", "-rf", "--"] + list(paths))


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
