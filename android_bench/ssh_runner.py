"""SshRunner: edge_runner.py on a Linux board (numpy + ai_edge_litert or tflite_runtime) over ssh."""
import os
import posixpath
import re
import subprocess

from android_bench import edge_runner
from android_bench.adb import quote_command
from android_bench.errors import BenchError, BinaryError, DeviceGoneError
from android_bench.parse import parse_output
from android_bench.results import BenchResult
from android_bench.runners import Runner

REMOTE_DIR = "/tmp/tfcompress-bench"
_SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]


class SshRunner(Runner):
    """Copies edge_runner.py and the models with `scp`, runs them with `ssh`, removes them after.

    Args:
      host: `user@host` (anything ssh accepts, including a ~/.ssh/config alias).
      python: the interpreter on the board. Defaults to `"python3"`.
      timeout: seconds one benchmark may run before it is killed. Defaults to `600`.
      keep: leave the copied files on the board. Defaults to `False`.
      cpu_mask: hexadecimal CPU mask for `taskset`. Defaults to `None`.
      ssh, scp: the client executables. Defaults to `"ssh"` and `"scp"`.
    """
    name = "ssh"

    def __init__(self, host, python="python3", timeout=600.0, keep=False, cpu_mask=None, ssh="ssh", scp="scp",
                 remote_dir=REMOTE_DIR):
        if not host or host.startswith("-"):
            raise BenchError(f"ssh device needs a host, as ssh:user@host. Got: {host!r}")
        self.host, self.python, self.timeout, self.keep = host, python, timeout, keep
        self.cpu_mask, self.ssh, self.scp, self.remote_dir = cpu_mask, ssh, scp, remote_dir
        self.device = f"ssh:{host}"
        self.remote_models, self.copied = {}, False

    def _ssh(self, command, timeout=60.0):
        try:
            return subprocess.run([self.ssh] + _SSH_OPTIONS + [self.host, command], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace", timeout=timeout)
        except OSError as e:
            raise BenchError(f"cannot run {self.ssh}: {e.strerror}") from None

    def prepare(self, models):
        p = self._ssh(quote_command(["mkdir", "-p", self.remote_dir]))
        if p.returncode != 0:
            raise DeviceGoneError(f"cannot reach {self.host} over ssh: {_last(p.stderr or p.stdout)}")
        sources = [edge_runner.__file__.replace(".pyc", ".py")]
        for i, model in enumerate(models):
            # scp may hand remote paths to the remote shell: copy under a plain name
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(model))
            self.remote_models[model] = posixpath.join(self.remote_dir, f"{i}_{safe}")
        self.copied = True
        for local, remote in [(sources[0], posixpath.join(self.remote_dir, "edge_runner.py"))] + [
                (m, r) for m, r in self.remote_models.items()]:
            try:
                p = subprocess.run([self.scp, "-q"] + _SSH_OPTIONS + [local, f"{self.host}:{remote}"],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise BinaryError(f"scp to {self.host} failed: {e}") from None
            if p.returncode != 0:
                raise BinaryError(f"scp of {os.path.basename(local)} to {self.host} failed: {_last(p.stderr)}")

    def command(self, remote_model, config):
        args = [self.python, posixpath.join(self.remote_dir, "edge_runner.py")] + config.flags(remote_model)
        if self.cpu_mask:
            args = ["taskset", str(self.cpu_mask).lower().replace("0x", "")] + args
        return f"echo __TFCOMPRESS_PID=$$ && exec {quote_command(args)}"

    def run(self, model, config):
        known = self.known(model, config)
        try:
            p = self._ssh(self.command(self.remote_models[model], config), timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            m = re.search(r"__TFCOMPRESS_PID=(\d+)", out)
            if m:
                self._ssh(quote_command(["kill", "-9", m.group(1)]), timeout=30)
            return BenchResult(**known).failed(f"timed out after {self.timeout:g} s; the run was killed")
        text = p.stdout + "\n" + p.stderr
        if p.returncode == 255 and "STARTING!" not in text:  # ssh's own failure
            raise DeviceGoneError(f"lost the ssh connection to {self.host}: {_last(p.stderr)}")
        result = parse_output(text, **known)
        if result.ok and p.returncode != 0:
            result.failed(f"edge runner exited with {p.returncode}: {_last(text)}")
        return result

    def cleanup(self):
        if self.keep or not self.copied:
            return
        try:
            self._ssh(quote_command(["rm", "-rf", "--", self.remote_dir]), timeout=60)
        except (BenchError, subprocess.TimeoutExpired):
            pass


def _last(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
