"""pytest fixtures for the android_bench tests: tiny models, a private adb server, an emulated device.

Test modules import them: `from adb_device.fixtures import adb_server, device, models`.
"""
import os
import shutil
import socket
import subprocess
import sys

import pytest

from .emulator import FakeDevice, make_elf

ADB = shutil.which("adb")
_HOME = os.path.expanduser("~")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_models(folder):
    """Tiny .tflite files (built once per test session, in a subprocess so this process stays TF-free)."""
    os.makedirs(folder, exist_ok=True)
    done = os.path.join(folder, "done")
    if not os.path.exists(done):
        code = (
            "import sys; sys.path.insert(0, sys.argv[2])\n"
            "from tfcompress._tf import tf, keras\n"
            "import os\n"
            "def save(m, name):\n"
            "    open(os.path.join(sys.argv[1], name), 'wb').write(tf.lite.TFLiteConverter.from_keras_model(m).convert())\n"
            "save(keras.Sequential([keras.layers.Input((16,)), keras.layers.Dense(8, activation='relu'),"
            " keras.layers.Dense(4)]), 'dense.tflite')\n"
            "save(keras.Sequential([keras.layers.Input((24, 24, 3)), keras.layers.Conv2D(8, 3, activation='relu'),"
            " keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)]), 'conv.tflite')\n")
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        subprocess.run([sys.executable, "-c", code, folder, repo], check=True, capture_output=True,
                       env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"))
        with open(done + ".tmp", "w"):
            pass
        os.replace(done + ".tmp", done)
    paths = {"dense": os.path.join(folder, "dense.tflite"), "conv": os.path.join(folder, "conv.tflite")}
    evil = os.path.join(folder, "a b;rm -rf x'.tflite")
    shutil.copyfile(paths["dense"], evil)
    paths["evil"] = evil
    broken = os.path.join(folder, "broken.tflite")
    with open(paths["dense"], "rb") as f:
        head = f.read(64)
    with open(broken, "wb") as f:
        f.write(head)  # TFL3 identifier, then nothing: loads nowhere
    paths["broken"] = broken
    paths["binary"] = make_elf(os.path.join(folder, "android_aarch64_benchmark_model"), "arm64-v8a")
    paths["binary_x86"] = make_elf(os.path.join(folder, "x86_64_benchmark_model"), "x86_64")
    return paths


def _cache_folder(tmp_path_factory):
    """Models depend only on the TensorFlow version: keep them across sessions in ~/.cache."""
    from importlib import metadata
    try:
        version = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        return str(tmp_path_factory.getbasetemp() / "android_bench_models")
    return os.path.join(_HOME, ".cache", "tfcompress-test-models", f"tf-{version}-v1")


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return build_models(_cache_folder(tmp_path_factory))


@pytest.fixture(scope="session")
def adb_server(tmp_path_factory):
    """A private adb server (its own port and key folder), killed at the end of the session."""
    if ADB is None:
        pytest.skip("the adb client is not installed (Debian package adb)")
    port = _free_port()
    home = str(tmp_path_factory.mktemp("adb_home"))
    saved = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)  # every adb client of the tests talks to this server
    try:
        # the server keeps its adb keys in its own HOME, away from the user's ~/.android
        subprocess.run([ADB, "-P", str(port), "start-server"], check=True, capture_output=True, timeout=30,
                       env=dict(os.environ, HOME=home, ANDROID_SDK_HOME=home, ANDROID_USER_HOME=home))
        yield port
    finally:
        subprocess.run([ADB, "-P", str(port), "kill-server"], capture_output=True, timeout=30)
        if saved is None:
            os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
        else:
            os.environ["ANDROID_ADB_SERVER_PORT"] = saved


@pytest.fixture
def device(adb_server):
    """An emulated phone, connected to the private adb server as 127.0.0.1:PORT."""
    d = FakeDevice(thermal=[41000, 39000])
    p = subprocess.run([ADB, "-P", str(adb_server), "connect", d.serial], capture_output=True, text=True,
                       timeout=30)
    assert "connected to" in p.stdout, p.stdout + p.stderr
    try:
        yield d
    finally:
        subprocess.run([ADB, "-P", str(adb_server), "disconnect", d.serial], capture_output=True, timeout=30)
        d.close()
