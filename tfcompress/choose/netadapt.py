"""NetAdapt (Yang et al., 2018): cut, step by step, the channel group whose cut costs least accuracy for the
latency it saves, latency read from a table measured on the device.

Per iteration i the latency goal falls by `step · decay^i` of the starting model's predicted latency. For
every prunable channel group (`tfc.channel_groups`), the fewest channels are removed (l1 order, the kept
count a multiple of `round_to`) that meet the goal by the `LatencyTable` of every device; each such
candidate is cut physically (`tfc.prune_channels` with mean compensation, BN statistics re-estimated),
fine-tuned for `finetune_steps` steps and scored on a held-out part of the training data; the best one is
kept. Its int8 file is then measured on the devices, interleaved with the starting model's file, and the
loop stops once every device meets the target; a long fine-tune (`final_epochs`) follows. The history
(one row per iteration, with every candidate) and the kept model are written after each iteration, so a
run with the same `history` path resumes where an interrupted one stopped.

Example:

```python
small, history = tfc.netadapt(model, "digits", speedup=2.0, device="local", history="na.json")
print(history.format())
```
"""
import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np

from tfcompress.errors import InputError

MODES = ("int8", "float32")


@dataclasses.dataclass
class NetAdaptHistory:
    """What a NetAdapt run did: its settings, the starting model's latencies, one row per iteration."""
    settings: dict
    base: dict
    iterations: list = dataclasses.field(default_factory=list)
    final: dict = None

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**{k: data[k] for k in ("settings", "base", "iterations", "final") if k in data})

    def format(self):
        devs = list(self.base["measured_ms"])
        head = f"{'iter':>4}  {'cut group':<16}{'kept':>9}{'val acc':>9}" + "".join(f"{d + ' ms':>16}" for d in devs)
        lines = [head, f"{'base':>4}  {'':<16}{'':>9}{self.base['accuracy']:>9.4f}"
                 + "".join(f"{self.base['measured_ms'][d]:>16.4f}" for d in devs)]
        for r in self.iterations:
            lines.append(f"{r['iteration']:>4}  {r['group']:<16}{r['kept']:>4}/{r['size']:<4}{r['accuracy']:>9.4f}"
                         + "".join(f"{r['measured_ms'][d]:>16.4f}" for d in devs))
        if self.final:
            lines.append(f"final fine-tune {self.final['epochs']} epochs: val acc {self.final['accuracy']:.4f}")
        return "\n".join(lines)


def _compile(model, lr):
    from tfcompress._tf import keras
    last = model.layers[-1]
    logits = getattr(getattr(last, "activation", None), "__name__", "") != "softmax"
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                  metrics=["accuracy"])
    return model


def _train(model, x, y, lr, batch_size, steps=None, epochs=None, seed=0, verbose=0):
    from tfcompress._tf import keras
    keras.utils.set_random_seed(seed)
    per_epoch = int(np.ceil(len(x) / batch_size))
    total = steps if steps is not None else epochs * per_epoch
    if total <= 0:
        return model
    _compile(model, keras.optimizers.schedules.CosineDecay(lr, total))
    if steps is not None:  # a number of optimizer steps, whatever the size of an epoch
        idx = np.random.default_rng(seed).permutation(np.resize(np.arange(len(x)), total * batch_size))
        model.fit(x[idx], y[idx], batch_size=batch_size, epochs=1, shuffle=False, verbose=verbose)
    else:
        model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
    return model


def _cut(model, group, remove, x_cal):
    """The model with `remove` channels of `group` gone (l1), compensated and BN re-estimated."""
    from tfcompress.pruning.batchnorm import recalibrate_batchnorm
    from tfcompress.pruning.channels import prune_channels
    small = prune_channels(model, {group.producers[0]: remove / group.size}, criterion="l1", compensate=x_cal)
    return recalibrate_batchnorm(small, x_cal, batch_size=64)


def _groups(model):
    from tfcompress.graph import functional
    from tfcompress.pruning.graph import ChannelGraph
    return [g for g in ChannelGraph(functional(model)).groups if g.prunable]


def _removals(group, round_to):
    """Channel counts to remove, fewest first: each leaves a multiple of `round_to` (at least `round_to`)."""
    free = group.size - len(group.fixed)
    keeps = [k for k in range(group.size - 1, 0, -1) if k % round_to == 0 and group.size - k <= free]
    return [group.size - k for k in keeps]


class _Devices:
    """The latency tables and runners of every device, and interleaved measurements of whole files."""

    def __init__(self, devices, mode, cache, binary, config, rounds):
        from tfcompress import latency
        specs = [devices] if isinstance(devices, str) else list(devices)
        if not specs:
            raise InputError("device must name at least one device")
        self.tables = [latency.LatencyTable(d, cache=cache, binary=binary, config=config, mode=mode) for d in specs]
        self.names = [t.device for t in self.tables]
        self.mode, self.rounds, self.latency = mode, rounds, latency

    def fill(self, models):
        todo = {}
        for t in self.tables:
            for u in t.missing(models):
                todo.setdefault(u.key, u)
        if todo or any(t.overhead_ms is None for t in self.tables):
            self.latency.fill_tables(self.tables, list(todo.values()))

    def predict(self, model):
        return {t.device: t.predict(model) for t in self.tables}

    def measure(self, paths):
        """{device: [median ms of each path]} over `rounds` interleaved rounds, devices in parallel."""
        runners = [t.runner for t in self.tables]
        ms = self.latency.measure(runners, [p for _ in range(self.rounds) for p in paths], self.tables[0].config)
        return {d: [float(v) for v in np.median(np.array(ms[d]).reshape(self.rounds, len(paths)), axis=0)]
                for d in self.names}


def _targets(base_ms, target_ms, speedup):
    if speedup is not None:
        return {d: ms / speedup for d, ms in base_ms.items()}
    return {d: float(target_ms) for d in base_ms}


def _check(target_ms, speedup, step, decay, mode, round_to):
    if (target_ms is None) == (speedup is None):
        raise InputError("give exactly one of target_ms and speedup")
    if speedup is not None and not speedup > 1:
        raise InputError(f"speedup must be > 1. Got: {speedup}")
    if target_ms is not None and not target_ms > 0:
        raise InputError(f"target_ms must be > 0. Got: {target_ms}")
    if not 0 < step < 1 or not 0 < decay <= 1:
        raise InputError(f"step must be in (0, 1) and decay in (0, 1]. Got: {step}, {decay}")
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}. Got: {mode!r}")
    if not isinstance(round_to, int) or round_to < 1:
        raise InputError(f"round_to must be a positive integer. Got: {round_to!r}")


def netadapt(model, data, target_ms=None, speedup=None, device="local", step=0.025, decay=0.96,
             finetune_steps=100, final_epochs=10, mode="int8", round_to=8, history=None, lr=3e-4, final_lr=None,
             batch_size=64, validation=0.2, max_iterations=100, binary=None, config=None, cache=None, rounds=5,
             seed=0, verbose=1):
    """Shrinks a model's channels until its exported file meets a latency target measured on the device.

    Args:
      model: a trained functional or Sequential tf-keras (or Keras 3) classifier.
      data: `((x_train, y_train), (x_test, y_test))` or a data spec (`"digits"`); only the training part is
        used (a `validation` share of it held out to choose candidates).
      target_ms: the latency to reach on every device, in ms. Give this or `speedup`.
      speedup: reach the starting model's measured latency divided by this, on every device.
      device: a device spec (`"local"`, `"adb:SERIAL"`, `"ssh:HOST"`) or a list of them (measured in parallel).
        Defaults to `"local"`.
      step: the first iteration's latency cut, as a fraction of the starting model's predicted latency.
        Defaults to `0.025`.
      decay: each iteration's cut is the previous one times this. Defaults to `0.96`.
      finetune_steps: optimizer steps of each candidate's short fine-tune. Defaults to `100`.
      final_epochs: epochs of the fine-tune after the loop (the validation share still held out). Defaults
        to `10`.
      mode: the export mode of the measured files, `"int8"` or `"float32"`. Defaults to `"int8"`.
      round_to: every group keeps a multiple of this many channels. Defaults to `8`.
      history: a JSON path; written after every iteration (with the kept model beside it, `.keras`), and
        read at the start to resume. Defaults to `None` (nothing written).
      lr: peak learning rate of the short fine-tunes (cosine decay). Defaults to `3e-4`.
      final_lr: peak learning rate of the final fine-tune. Defaults to `None` (`lr`).
      batch_size: Defaults to `64`.
      validation: share of the training data held out to rank candidates. Defaults to `0.2`.
      max_iterations: stop after this many iterations even if the target is not met. Defaults to `100`.
      binary: benchmark_model for adb devices. Defaults to `None`.
      config: an `android_bench.runners.BenchConfig`. Defaults to `None` (`tfcompress.latency.bench_config()`).
      cache: the latency tables' folder. Defaults to `None` (`~/.cache/tfcompress/latency`).
      rounds: interleaved rounds when measuring whole files. Defaults to `5`.
      seed: seeds the split and the fine-tunes. Defaults to `0`.
      verbose: 0 silent, 1 a progress bar and one line per iteration, 2 also Keras' fit bars. Defaults to `1`.

    Returns:
      `(model, NetAdaptHistory)`: the pruned, fine-tuned model (Keras 3 if a Keras 3 model came in).

    Raises:
      InputError: bad arguments, a model without prunable channel groups, a failed measurement.
    """
    from tfcompress.graph import functional
    from tfcompress.graph.keras3 import is_keras3, tf_keras_model, to_keras3
    from tfcompress.pruning.lottery import split_data
    _check(target_ms, speedup, step, decay, mode, round_to)
    given = model
    model = functional(tf_keras_model(model))
    (x, y), _ = split_data(data, model)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(validation * len(x))))
    xv, yv, xf, yf = x[order[:n_val]], y[order[:n_val]], x[order[n_val:]], y[order[n_val:]]
    x_cal = xf[:512]
    devices = _Devices(device, mode, cache, binary, config, rounds)
    settings = dict(target_ms=target_ms, speedup=speedup, devices=devices.names, step=step, decay=decay,
                    finetune_steps=finetune_steps, final_epochs=final_epochs, mode=mode, round_to=round_to, lr=lr,
                    seed=seed)
    run = _Run(devices, history, settings, x_cal, verbose)
    try:
        current, hist = _loop(run, model, devices, (xf, yf), (xv, yv), x_cal, settings, max_iterations, batch_size,
                              verbose)
        if hist.final is None:
            _train(current, xf, yf, final_lr or lr, batch_size, epochs=final_epochs, seed=seed,
                   verbose=max(0, verbose - 1))
            hist.final = dict(epochs=final_epochs, accuracy=_accuracy(current, xv, yv),
                              met=run.met(hist, _targets(hist.base["measured_ms"], target_ms, speedup)),
                              stopped=run.stopped)
            run.save(current, hist)
    finally:
        shutil.rmtree(run.folder, ignore_errors=True)
    if is_keras3(given):
        current = to_keras3(current)
    return current, hist


def _loop(run, model, devices, train, val, x_cal, settings, max_iterations, batch_size, verbose):
    """The iterations, from the start (or the history's last) until the target is met."""
    (xf, yf), (xv, yv) = train, val
    step, decay, round_to = settings["step"], settings["decay"], settings["round_to"]
    current, hist = run.start(model, _accuracy(model, xv, yv))
    targets = _targets(hist.base["measured_ms"], settings["target_ms"], settings["speedup"])
    bar = _bar(verbose, hist, targets)
    while hist.final is None and not run.met(hist, targets) and len(hist.iterations) < max_iterations:
        i = len(hist.iterations)
        cut = step * decay ** i
        now = devices.predict(current)
        goal = {d: now[d] - cut * hist.base["predicted_ms"][d] for d in now}
        picks = _candidates(current, devices, goal, round_to, x_cal)
        if not picks:
            run.stopped = (f"iteration {i}: no channel group meets the step's latency goal even at its "
                           f"smallest width; lower step or round_to")
            if verbose:
                print(f"netadapt: {run.stopped}; stopping", flush=True)
            break
        scored = []
        for group, remove, small, predicted in picks:
            _train(small, xf, yf, settings["lr"], batch_size, steps=settings["finetune_steps"],
                   seed=settings["seed"] + i, verbose=max(0, verbose - 1))
            scored.append((_accuracy(small, xv, yv), group, remove, small, predicted))
        acc, group, remove, current, predicted = max(scored, key=lambda s: s[0])
        row = dict(iteration=i, cut=cut, group=group.producers[0], size=group.size, kept=group.size - remove,
                   accuracy=acc, predicted_ms=predicted, goal_ms=goal,
                   candidates=[dict(group=g.producers[0], kept=g.size - r, accuracy=a, predicted_ms=p)
                               for a, g, r, _, p in scored])
        run.record(current, hist, row)
        if bar is not None:
            bar.update(_progress(hist, targets), values=[("val_acc", acc)])
        if verbose:
            ms = ", ".join(f"{d} {v:.4f} ms" for d, v in row["measured_ms"].items())
            print(f"\nnetadapt {i}: {row['group']} {row['kept']}/{row['size']} channels, val acc {acc:.4f}, {ms}",
                  flush=True)
    return current, hist


def _accuracy(model, x, y):
    from tfcompress.evaluation import keras_accuracy
    return float(keras_accuracy(model, x, y))


def _candidates(model, devices, goal, round_to, x_cal):
    """Per group, the fewest channels removed that meet `goal` on every device by the tables:
    [(group, removed, model, {device: predicted ms})]. Levels are tried in step over all groups, so the
    missing table entries of one level are measured in one batch."""
    todo = [(g, _removals(g, round_to)) for g in _groups(model)]
    found = []
    level = 0
    while todo:
        tries = [(g, rs[level], _cut(model, g, rs[level], x_cal)) for g, rs in todo if level < len(rs)]
        if not tries:
            break
        devices.fill([m for _, _, m in tries])
        left = []
        for g, r, m in tries:
            p = devices.predict(m)
            if all(p[d] <= goal[d] for d in goal):
                found.append((g, r, m, p))
            else:
                left.append(g)
        todo = [(g, rs) for g, rs in todo if g in left]
        level += 1
    return found


def _bar(verbose, hist, targets):
    if not verbose:
        return None
    from tfcompress._tf import keras
    bar = keras.utils.Progbar(100, unit_name="% of the latency cut")
    bar.update(_progress(hist, targets))
    return bar


def _progress(hist, targets):
    """Percent of the way from the starting latency to the target (the slowest device)."""
    last = hist.iterations[-1]["measured_ms"] if hist.iterations else hist.base["measured_ms"]
    done = [(hist.base["measured_ms"][d] - last[d]) / max(1e-12, hist.base["measured_ms"][d] - targets[d])
            for d in targets]
    return int(round(100 * min(1.0, max(0.0, min(done)))))


class _Run:
    """The base measurement, the per-iteration measurement, and the history on disk."""

    def __init__(self, devices, path, settings, x_cal, verbose):
        self.devices, self.path, self.settings, self.x_cal, self.verbose = devices, path, settings, x_cal, verbose
        self.folder = tempfile.mkdtemp(prefix="netadapt_")
        self.stopped = None  # why the loop ended before the target, when it did
        self.base_file = os.path.join(self.folder, "base.tflite")

    def _export(self, model, path):
        from tfcompress import latency
        return latency.model_file(model, path, self.x_cal, mode=self.settings["mode"])

    def _model_path(self):
        return os.path.splitext(self.path)[0] + ".model.keras"

    def start(self, model, accuracy):
        from tfcompress.saving import load_model
        if self.path and os.path.exists(self.path):
            with open(self.path) as f:
                hist = NetAdaptHistory.from_dict(json.load(f))
            if hist.settings != json.loads(json.dumps(self.settings)):
                raise InputError(f"history {self.path} was written with other settings ({hist.settings}); "
                                 "remove it or give another path")
            if hist.iterations or hist.final:
                if hist.final is None:
                    self._export(model, self.base_file)
                return load_model(self._model_path()), hist
        self._export(model, self.base_file)
        self.devices.fill([model])
        base = dict(accuracy=accuracy, predicted_ms=self.devices.predict(model),
                    measured_ms={d: v[0] for d, v in self.devices.measure([self.base_file]).items()})
        hist = NetAdaptHistory(self.settings, base)
        self.save(None, hist)
        return model, hist

    def record(self, model, hist, row):
        path = os.path.join(self.folder, f"iter{row['iteration']}.tflite")
        self._export(model, path)
        ms = self.devices.measure([self.base_file, path])
        row["measured_ms"] = {d: v[1] for d, v in ms.items()}
        row["base_measured_ms"] = {d: v[0] for d, v in ms.items()}
        row["speedup"] = {d: v[0] / v[1] for d, v in ms.items()}
        hist.iterations.append(row)
        self.save(model, hist)

    def met(self, hist, targets):
        if not hist.iterations:
            return False
        last = hist.iterations[-1]
        if self.settings["speedup"] is not None:  # against the base file measured in the same rounds
            return all(last["speedup"][d] >= self.settings["speedup"] for d in targets)
        return all(last["measured_ms"][d] <= targets[d] for d in targets)

    def save(self, model, hist):
        if not self.path:
            return
        from tfcompress.fileio import atomic_path, write_text
        from tfcompress.saving import save_model
        if model is not None:
            with atomic_path(self._model_path()) as tmp:
                save_model(model, tmp)
        write_text(self.path, json.dumps(hist.to_dict(), indent=1, default=float))
