"""Latency measured on the device: the lookup table (`table.py`) and the whole optimize path (`pipeline.py`).

`table.py` cuts a model into the ops of its int8 file and measures each configuration once per device;
`pipeline.py` runs NetAdapt on it, then QAT, the int8 export (ReLU6 pinned) and the benchmark, with a report.
"""
from tfcompress.latency.table import (LatencyCheck, LatencyTable, Unit, bench_config, cache_folder,  # noqa: F401
                                      device_key, fill_tables, make_runners, measure, model_file, overhead_file,
                                      stored_file, unit_file, units)
