"""A latency lookup table measured on the device: one tiny int8 file per layer configuration.

A model's int8 file runs as a chain of ops; most of them are one layer with what TFLite fuses into it
(a convolution or Dense with the BatchNormalization folded into it and its ReLU / ReLU6, an Add with its
ReLU). `units(model)` cuts a model into those ops; each is keyed by its layers' classes and configs
(without names, initializers, regularizers) and its input shapes, which is where the channel counts,
kernel, stride and spatial size live. `LatencyTable` measures every unit it has not seen as a one-unit
int8 file through `android_bench` (local LiteRT, `adb[:SERIAL]`, `ssh:HOST`), keeps the milliseconds in
a JSON file per device, and predicts a model's latency as the fixed per-invoke overhead (a one-op file of
one element) plus each unit's measured time less that overhead. `check` compares the prediction with the
whole model's file, both measured in interleaved rounds.

Example:

```python
table = tfc.LatencyTable("local")            # or "adb:SERIAL" (binary=...), "ssh:pi@board"
table.predict(model)                         # ms; measures the units it does not know yet
print(table.check(model).format())           # predicted vs measured, in interleaved rounds
```
"""
import argparse
import dataclasses
import json
import os
import re
import socket
import tempfile

import numpy as np

from tfcompress.errors import InputError

_DROPPED = ("name", "trainable", "dtype", "activity_regularizer")
VERSION = 1


def cache_folder():
    """`$TFCOMPRESS_CACHE/latency`, else `~/.cache/tfcompress/latency`."""
    root = os.environ.get("TFCOMPRESS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tfcompress")
    return os.path.join(root, "latency")


@dataclasses.dataclass
class Unit:
    """One op of the int8 file: `layers` (the first and what fuses into it), its input shapes, its key."""
    layers: list
    input_shapes: list
    key: str = ""


def _clean(config):
    return {k: v for k, v in config.items() if k not in _DROPPED and not k.endswith(("_initializer",
                                                                                       "_regularizer",
                                                                                       "_constraint"))}


def _kind_facts(layer):
    from tfcompress.graph.kinds import kind_of
    kind = kind_of(layer)
    return kind, (kind.fused_activation(layer) if kind is not None and kind.fused_activation else None)


def _fuses(unit, layer):
    """Whether the converter folds `layer` into the op `unit` ends in (the layer table's `fuses`)."""
    head = _kind_facts(unit.layers[0])[0]
    absorbs = head.fuses if head is not None else ()
    has_act = any(_kind_facts(l)[1] for l in unit.layers[1:]) or unit.layers[0].get_config().get(
        "activation") not in (None, "linear")
    kind, activation = _kind_facts(layer)
    if kind is not None and kind.affine is not None:
        return "affine" in absorbs and len(unit.layers) == 1 and not has_act
    return activation is not None and "activation" in absorbs and not has_act


def units(model):
    """The model cut into the ops of its int8 file, in order (see the module doc)."""
    from tfcompress.graph import functional, nodes, tensor_key
    from tfcompress.graph.keras3 import tf_keras_model
    from tfcompress.graph.kinds import kind_of
    from tfcompress.graph.walk import node_inputs, node_outputs, readers
    model = functional(tf_keras_model(model))
    read = readers(model)
    out, open_at = [], {}  # tensor key -> unit whose last layer made it
    for node in nodes(model):
        layer = node.layer
        kind = kind_of(layer)
        if kind is not None and kind.inference_identity:
            continue
        ins, outs = node_inputs(node), node_outputs(node)
        if not ins:
            continue
        k = tensor_key(ins[0])
        unit = open_at.get(k) if len(ins) == 1 else None
        if unit is not None and len(read.get(k, ())) == 1 and _fuses(unit, layer):
            unit.layers.append(layer)
        else:
            unit = Unit([layer], [tuple(int(d) for d in t.shape[1:]) for t in ins])
            out.append(unit)
        for t in outs:
            open_at[tensor_key(t)] = unit
    for u in out:
        u.key = json.dumps([[[type(l).__name__, _clean(l.get_config())] for l in u.layers], u.input_shapes],
                           sort_keys=True, default=str, separators=(",", ":"))
    return out


def unit_file(unit, path, seed=0, mode="int8"):
    """Writes the unit alone as a `mode` file (int8: full-int8, int8 input and output, ReLU6 pinned)."""
    from tfcompress._tf import keras
    from tfcompress.exporting import export
    from tfcompress.graph import clone_layer
    inputs = [keras.Input(s) for s in unit.input_shapes]
    x = inputs if len(inputs) > 1 else inputs[0]
    for layer in unit.layers:
        x = clone_layer(layer)(x)
    rng = np.random.default_rng(seed)
    data = [rng.normal(size=(16,) + s).astype(np.float32) for s in unit.input_shapes]
    export(keras.Model(inputs, x), path, mode=mode, representative_data=data if len(data) > 1 else data[0],
           samples=16, layer_samples=0)
    return path


def stored_file(unit, folder, mode="int8"):
    """The unit's file in `folder` (named by a digest of its key), exported the first time it is asked for."""
    import hashlib
    os.makedirs(folder, exist_ok=True)
    name = "overhead" if unit is None else hashlib.sha1(unit.key.encode()).hexdigest()[:20]
    path = os.path.join(folder, f"{name}_{mode}.tflite")
    if not os.path.exists(path):
        overhead_file(path, mode) if unit is None else unit_file(unit, path, mode=mode)
    return path


def model_file(model, path, data=None, mode="int8"):
    """The whole model as a `mode` file (full-int8 by default), calibrated on `data` (random by default)."""
    from tfcompress.exporting import export
    if data is None:
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        data = np.random.default_rng(0).normal(size=(64,) + shape).astype(np.float32)
    export(model, path, mode=mode, representative_data=data, samples=64, layer_samples=0)
    return path


def overhead_file(path, mode="int8"):
    """A one-op file of one element: what every invoke costs before any work."""
    from tfcompress._tf import keras
    return unit_file(Unit([keras.layers.ReLU()], [(1,)]), path, mode=mode)


def device_key(spec, config, mode="int8"):
    """The cache file's name for a device, benchmark configuration and export mode."""
    host = socket.gethostname() if spec == "local" else spec
    raw = f"{host}-t{config.threads}-{config.delegate}-{mode}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def make_runners(devices, binary=None, adb=None, cpu_mask=None, timeout=600.0, remote_python="python3"):
    """android_bench runners for device specs as `tfcompress bench --device` takes them."""
    from tfcompress.commands.bench import _runners
    specs = [devices] if isinstance(devices, str) else list(devices)
    args = argparse.Namespace(device=specs, cpu_mask=cpu_mask, timeout=timeout, keep=False, adb=adb,
                              binary=binary, remote_python=remote_python, target_ci=0.0)
    return _runners(args)


def bench_config(threads=1, delegate="xnnpack", runs=100, min_secs=0.3, warmup_min_secs=0.1):
    from android_bench.runners import BenchConfig
    return BenchConfig(threads=threads, delegate=delegate, runs=runs, warmup=5, min_secs=min_secs,
                       warmup_min_secs=warmup_min_secs)


def _ms(result):
    if not result.ok:
        raise InputError(f"benchmark failed on {result.device} for {os.path.basename(result.model)}: "
                         f"{result.error}")
    return result.p50_ms if result.p50_ms is not None else result.avg_ms


def measure(runners, paths, config, progress=None):
    """{device: [milliseconds of each path]} from one benchmark run per file, devices in parallel."""
    from android_bench.runners import run_matrix
    results = run_matrix(runners, list(paths), [config], progress=progress)
    out = {}
    for r in results:
        out.setdefault(r.device, []).append(_ms(r))
    return out


class LatencyTable:
    """Milliseconds of every unit (one op with what fuses into it) on one device, cached on disk.

    Args:
      device: `"local"`, `"adb"`, `"adb:SERIAL"` or `"ssh:[USER@]HOST"` (as `tfcompress bench --device`), or
        an android_bench `Runner`. Defaults to `"local"`.
      cache: the table's JSON file, or a folder for `<device key>.json`. Defaults to `None`
        (`cache_folder()`, i.e. `~/.cache/tfcompress/latency`).
      binary: benchmark_model for adb devices. Defaults to `None`.
      config: an `android_bench.runners.BenchConfig`. Defaults to `None` (1 thread, XNNPACK, >= 100 runs
        and >= 0.3 s per file, the median run kept).
      mode: the export mode of the unit files, `"int8"` or `"float32"`. Defaults to `"int8"`.
      repeats: each new entry is the median of this many interleaved rounds over the files being measured
        (a shared or thermally throttling device drifts between single runs). Defaults to `1`.
      progress: call `progress(result)` after each measured file (a bar). Defaults to `None`.
    """

    def __init__(self, device="local", cache=None, binary=None, config=None, mode="int8", progress=None,
                 repeats=1, **runner_options):
        if mode not in ("int8", "float32"):
            raise InputError(f"mode must be int8 or float32. Got: {mode!r}")
        if not isinstance(repeats, int) or repeats < 1:
            raise InputError(f"repeats must be a positive integer. Got: {repeats!r}")
        self.config, self.mode, self.repeats = config or bench_config(), mode, repeats
        if isinstance(device, str):
            self.spec = device
            self.runner = make_runners(device, binary=binary, **runner_options)[0]
        else:
            self.spec, self.runner = device.device, device
        self.device = self.runner.device
        cache = cache_folder() if cache is None else os.fspath(cache)
        name = device_key(self.spec, self.config, mode) + ".json"
        self.path = cache if cache.endswith(".json") else os.path.join(cache, name)
        self.files = os.path.join(os.path.dirname(os.path.abspath(self.path)), "files")
        self.progress = progress
        self.entries, self.overhead_ms = {}, None
        stored = self._stored()
        if stored:
            self.entries, self.overhead_ms = dict(stored["entries"]), stored.get("overhead_ms")

    def _stored(self):
        if not os.path.exists(self.path):
            return None
        with open(self.path) as f:
            data = json.load(f)
        ok = data.get("version") == VERSION and data.get("config") == dataclasses.asdict(self.config)
        return data if ok else None

    def save(self):
        """Writes the table (atomically), keeping entries another process added to the file meanwhile."""
        from tfcompress.fileio import write_text
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        stored = self._stored()
        if stored:
            self.entries = dict(stored["entries"], **self.entries)
        write_text(self.path, json.dumps({"version": VERSION, "device": self.device,
                                          "config": dataclasses.asdict(self.config),
                                          "overhead_ms": self.overhead_ms, "entries": self.entries}, indent=1))

    def missing(self, models):
        """The units of `models` the table has no entry for, one per key."""
        out = {}
        for m in models:
            for u in units(m):
                if u.key not in self.entries:
                    out.setdefault(u.key, u)
        return list(out.values())

    def fill(self, models):
        """Measures every unit of `models` not in the table yet (and the overhead, once); saves the table."""
        todo = self.missing(models)
        if not todo and self.overhead_ms is not None:
            return 0
        fill_tables([self], todo)
        return len(todo)

    def breakdown(self, model):
        """[(first layer's name, op class, ms less the overhead)] for every unit of `model`."""
        self.fill([model])
        return [(u.layers[0].name, type(u.layers[0]).__name__, max(0.0, self.entries[u.key] - self.overhead_ms))
                for u in units(model)]

    def predict(self, model):
        """Predicted milliseconds of the model's int8 file: overhead + the sum of its units' net times."""
        rows = self.breakdown(model)
        return self.overhead_ms + sum(ms for _, _, ms in rows)

    def check(self, model, rounds=5, path=None):
        """The prediction against the model's int8 file, both measured now in `rounds` interleaved rounds
        (each round runs the whole file, the overhead file and every unit file once).

        Returns a `LatencyCheck`: the cached table's prediction, the prediction from this check's own
        rounds, the median measured whole-model latency and the relative errors.
        """
        if rounds < 1:
            raise InputError(f"rounds must be >= 1. Got: {rounds}")
        predicted = self.predict(model)
        us = units(model)
        distinct = list({u.key: u for u in us}.values())
        with tempfile.TemporaryDirectory() as folder:
            whole = path or model_file(model, os.path.join(folder, "whole.tflite"), mode=self.mode)
            files = [stored_file(u, self.files, self.mode) for u in [None] + distinct]
            ms = measure([self.runner], [p for _ in range(rounds) for p in [whole] + files], self.config,
                         self.progress)[self.device]
        per_round = np.array(ms).reshape(rounds, len(files) + 1)
        med = np.median(per_round, axis=0)
        o = med[1]
        net = {u.key: max(0.0, m - o) for u, m in zip(distinct, med[2:])}
        now = o + sum(net[u.key] for u in us)
        return LatencyCheck(self.device, float(predicted), float(now), float(med[0]),
                            [float(r[0]) for r in per_round], len(us))


@dataclasses.dataclass
class LatencyCheck:
    """The table's prediction against a measured whole model (milliseconds)."""
    device: str
    predicted_ms: float
    predicted_now_ms: float
    measured_ms: float
    measured_rounds: list
    units: int

    @property
    def error(self):
        return self.predicted_ms / self.measured_ms - 1

    @property
    def error_now(self):
        return self.predicted_now_ms / self.measured_ms - 1

    def format(self):
        return (f"{self.device}: {self.units} units; measured {self.measured_ms:.4f} ms (median of "
                f"{len(self.measured_rounds)} interleaved rounds); table {self.predicted_ms:.4f} ms "
                f"({self.error:+.1%}); units re-measured in the same rounds {self.predicted_now_ms:.4f} ms "
                f"({self.error_now:+.1%})")

    def to_dict(self):
        return dict(dataclasses.asdict(self), error=self.error, error_now=self.error_now)


def fill_tables(tables, todo):
    """Measures the units `todo` (and any missing overhead) on every table's device, in parallel."""
    from android_bench.runners import run_matrix
    by_config = {}
    for t in tables:
        by_config.setdefault((dataclasses.astuple(t.config), t.mode), []).append(t)
    for group in by_config.values():
        files = [stored_file(u, group[0].files, group[0].mode) for u in [None] + list(todo)]
        repeats = max(t.repeats for t in group)
        results = run_matrix([t.runner for t in group], files * repeats, [group[0].config],
                             progress=group[0].progress)
        for t in group:
            runs = np.array([_ms(r) for r in results if r.device == t.device]).reshape(repeats, len(files))
            ms = [float(v) for v in np.median(runs, axis=0)]
            if t.overhead_ms is None:
                t.overhead_ms = ms[0]
            t.entries.update({u.key: m for u, m in zip(todo, ms[1:])})
            t.save()
