"""Keeps the native log lines TensorFlow and LiteRT print on every start off the command line's stderr.

TensorFlow's C++ code writes them straight to file descriptor 2 while it is imported (absl's "before
InitializeLog" warning, oneDNN, cudart_stub, cpu_feature_guard) and when it first looks for a GPU (cuInit),
before `TF_CPP_MIN_LOG_LEVEL` applies; LiteRT says once that it created its XNNPACK delegate. Python's
logging settings cannot reach them. `filter_stderr()` points fd 2 at a pipe read by a small filter process
that drops exactly these lines and passes everything else through as it arrives, so a real native error
still reaches the user, even one printed just before a crash (the filter outlives its parent).
`TF_ENABLE_ONEDNN_OPTS` is left alone: it changes numerics. `TFCOMPRESS_DEBUG=1` turns the filter off.
"""
import atexit
import logging
import os
import re
import subprocess
import sys

# Each pattern matches one whole line (without its end) that TensorFlow or LiteRT prints on a normal start.
_ABSL = r"[IWE]\d{4} [\d:. ]+\d+ "
NOISE = re.compile("|".join([
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    _ABSL + r"port\.cc:\d+\] oneDNN custom operations are on\..*",
    _ABSL + r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.",
    _ABSL + r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU instructions.*",
    r"To enable the following instructions: .*, in other operations, rebuild TensorFlow with the appropriate "
    r"compiler flags\.",
    _ABSL + r"cuda_platform\.cc:\d+\] failed call to cuInit: .*",
    r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
]))

# Runs as `python -I -S -c _FILTER PATTERN`: stdin is the command's stderr, stdout the user's.
_FILTER = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole process group; the parent decides
noise = re.compile(sys.argv[1].encode())
pending = b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    *lines, pending = re.split(rb"(?<=[\r\n])", pending + chunk)
    keep = b"".join(l for l in lines if not noise.fullmatch(l.rstrip(b"\r\n")))
    if keep:
        os.write(1, keep)
if pending and not noise.fullmatch(pending):
    os.write(1, pending)
"""

_active = None


def filter_stderr():
    """Filters this process's fd 2 (and its children's) until `restore()` or exit; once per process.

    Also lowers TensorFlow's Python logger to errors (the retracing warnings of `fit` and `predict`).
    Does nothing with `TFCOMPRESS_DEBUG=1`, or if the filter cannot start.
    """
    global _active
    if _active is not None or os.environ.get("TFCOMPRESS_DEBUG") == "1":
        return
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        return
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, NOISE.pattern],
                                stdin=subprocess.PIPE, stdout=saved, stderr=saved)
        os.dup2(proc.stdin.fileno(), 2)
        proc.stdin.close()      # fd 2 is now the only end of the pipe this process writes to
    except OSError:
        os.close(saved)
        return
    _active = (saved, proc)
    atexit.register(restore)


def restore(timeout=2.0):
    """Points fd 2 back at the user's stderr and waits for the filter to pass on what it holds."""
    global _active
    if _active is None:
        return
    saved, proc = _active
    _active = None
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(saved, 2)
    os.close(saved)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:  # a child process still holds the pipe; the filter ends after it
        pass
