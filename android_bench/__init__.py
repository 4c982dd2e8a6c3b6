"""On-device benchmarking of .tflite files: over adb, over ssh on an edge board, or in this process.

Importing this package never imports TensorFlow (it runs on boards that only have a LiteRT runtime).
Runners are loaded on first use: `android_bench.LocalRunner`, `AdbRunner`, `SshRunner`.
"""
import importlib

from android_bench.parse import parse_output
from android_bench.results import FIELDS, BenchResult

_LAZY = {"BenchConfig": "android_bench.runners", "LocalRunner": "android_bench.runners",
         "run_matrix": "android_bench.runners", "Adb": "android_bench.adb",
         "AdbRunner": "android_bench.adb_runner", "SshRunner": "android_bench.ssh_runner"}

__all__ = ["BenchResult", "FIELDS", "parse_output", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'android_bench' has no attribute {name!r}")
