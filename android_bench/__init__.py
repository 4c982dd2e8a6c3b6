"""On-device benchmarking of .tflite files: over adb, over ssh on an edge board, or in this process.

Importing this package never imports TensorFlow (it runs on boards that only have a LiteRT runtime).
"""
from android_bench.parse import parse_output
from android_bench.results import FIELDS, BenchResult

__all__ = ["BenchResult", "FIELDS", "parse_output"]
