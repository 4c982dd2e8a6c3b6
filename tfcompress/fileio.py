"""Atomic output: write to a temporary name in the target folder, rename into place."""
import contextlib
import os
import shutil
import tempfile

from tfcompress.errors import InputError


def check_output(path, inputs=()):
    """Refuses an output path whose folder is missing or that names one of the inputs."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"output folder does not exist: {folder}")
    for src in inputs:
        if src and os.path.exists(src) and os.path.exists(path) and os.path.samefile(src, path):
            raise InputError(f"output {path} would overwrite the input {src}; choose another name")
    return path


@contextlib.contextmanager
def atomic_path(path, inputs=(), suffix=None):
    """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds."""
    path = check_output(path, inputs)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix or os.path.splitext(base)[1] or ".tmp",
                               dir=folder)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path, data, inputs=()):
    with atomic_path(path, inputs) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def write_text(path, text, inputs=()):
    return write_bytes(path, text.encode("utf-8"), inputs)
