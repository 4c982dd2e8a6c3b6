"""What the benchmark scripts share: the CPU's name for the tables (`tfcompress.machine`, which also knows the
CPU features that decide int8 speed), and interleaved LiteRT timing."""
import time

import numpy as np

from tfcompress.machine import cpu_name  # noqa: F401  (the benchmarks' tables name the CPU)


def interleaved_ms(paths, rounds=40, per_round=50, warmup=50, rounds_iter=None):
    """Milliseconds per invoke of each .tflite file (1 thread, XNNPACK), the files taking turns round by
    round so that load changes hit all of them alike. `rounds_iter` wraps `range(rounds)` (a progress bar)."""
    from tfcompress.tflite.runtime import Interpreter
    its = [Interpreter(p, num_threads=1).interpreter for p in paths]
    for it in its:
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        for _ in range(warmup):
            it.invoke()
    times = [[] for _ in its]
    for _ in (rounds_iter or (lambda r: r))(range(rounds)):
        for i, it in enumerate(its):
            for _ in range(per_round):
                t = time.perf_counter()
                it.invoke()
                times[i].append(time.perf_counter() - t)
    return [np.array(t) * 1e3 for t in times]
