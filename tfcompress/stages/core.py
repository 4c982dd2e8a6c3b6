"""The core recipe stages: train, prune, strip, save, export and bench. Other techniques add theirs in
their own module of this package with `tfcompress.recipe.registry.register_stage`, using the helpers of
`tfcompress.recipe.state` (`fit`, `accuracy`, `record`) on the run's `RunState`."""
import dataclasses
import math
import os
import typing

import numpy as np

from tfcompress.errors import InputError
from tfcompress.recipe.registry import register_stage
from tfcompress.recipe.state import TrainConfig, accuracy, fit, record

__all__ = ["BenchConfig", "ExportConfig", "PruneConfig", "SaveConfig", "StripConfig", "TrainConfig", "bench",
           "export", "prune", "save", "strip", "train"]


@register_stage("train", TrainConfig)
def train(state, config):
    """Fits the current model on the train split; records its test accuracy."""
    fit(state, config)
    record(state, "train", accuracy=accuracy(state))


@dataclasses.dataclass
class PruneConfig(TrainConfig):
    """A pruning schedule (for all prunable layers, or per layer) and the fine-tuning options."""
    schedule: dict = dataclasses.field(default_factory=lambda: {"type": "PolynomialDecay", "target": 0.8})
    layers: typing.Optional[typing.Union[list, dict]] = None   # names, or {name: target | schedule}
    learning_rate: float = 5e-4
    adjust_dropout: bool = False   # D = D0 * sqrt(C_i / C_i0) at the final sparsity (tfc.adjust_dropout)


@register_stage("prune", PruneConfig)
def prune(state, config):
    """Wraps the model with `tfc.prune` and fine-tunes it; records accuracy and mean sparsity.

    `end_step: auto` of a PolynomialDecay schedule ends the ramp after two thirds of the stage's steps.
    """
    from tfcompress.callbacks import CompressionCallback
    from tfcompress.pruning.magnitude import prune as prune_model, sparsity, wrappers
    from tfcompress.schedules import Schedule
    steps = math.ceil(len(state.train[0]) / config.batch_size) * config.epochs

    def build(spec, where):
        spec = dict(spec)
        if spec.get("end_step", "auto") == "auto" and spec.get("type", spec.get("class_name")) == "PolynomialDecay":
            spec["end_step"] = max(1, int(steps * 2 / 3))  # the last third fine-tunes at the target
        try:
            return Schedule.from_dict(spec)
        except InputError as e:
            raise InputError(f"{where}: {e}") from None

    schedule = build(config.schedule, "prune.schedule")
    layers = config.layers
    if isinstance(layers, dict):  # per-layer targets reuse the stage's schedule; a mapping is a schedule
        layers = {name: build(v if isinstance(v, dict) else {**config.schedule, "target": v},
                              f"prune.layers.{name}") for name, v in layers.items()}
    if config.adjust_dropout:
        from tfcompress.pruning.dropout import adjust_for_schedule
        state.model = adjust_for_schedule(state.model, schedule, layers)
    state.model = prune_model(state.model, schedule, layers=layers)
    fit(state, config, [CompressionCallback()])
    per_layer = {w.layer.name: sparsity(w) for w in wrappers(state.model)}
    state.sparsity = per_layer
    record(state, "prune", accuracy=accuracy(state),
           sparsity=float(np.mean(list(per_layer.values()))) if per_layer else 0.0)


@dataclasses.dataclass
class StripConfig:
    """The strip stage has no options."""


@register_stage("strip", StripConfig)
def strip(state, config):
    """Removes compression wrappers (`tfc.strip`), keeping zeros and clusters."""
    from tfcompress.stripping import strip as strip_model
    state.model = strip_model(state.model)


@dataclasses.dataclass
class SaveConfig:
    """Where to save; `None` means OUTPUT/NAME.keras (.h5 for a QAT model)."""
    path: typing.Optional[str] = None


@register_stage("save", SaveConfig)
def save(state, config):
    """Saves the current model; `state.files["keras"]` is its path."""
    from tfcompress.fileio import atomic_path
    from tfcompress.quantization import is_quantized
    # tfmot's QAT wrappers do not reload from .keras ("quantize_layer expected 5 variables"): use .h5
    default_ext = ".h5" if is_quantized(state.model) else ".keras"
    path = config.path or os.path.join(state.out, f"{state.recipe.name}{default_ext}")
    ext = ".h5" if path.endswith((".h5", ".hdf5")) else ".keras"
    with atomic_path(path, suffix=ext) as tmp:
        state.model.save(tmp)
    state.files["keras"] = path
    state.echo(f"  saved {path}")


@dataclasses.dataclass
class ExportConfig:
    """The options of `tfc.export`; `path` defaults to OUTPUT/NAME_MODE.tflite."""
    mode: str = "int8"
    path: typing.Optional[str] = None
    samples: int = 256
    input_type: typing.Optional[str] = None
    output_type: typing.Optional[str] = None
    relu6_fixed_range: bool = True
    per_channel: bool = True          # False: one scale per weight tensor
    bias_correction: bool = False     # correct biases for the weight quantization, on the train split


@register_stage("export", ExportConfig)
def export(state, config):
    """Exports the current model to TFLite, evaluated on the test split; records accuracy and bytes."""
    from tfcompress.exporting import export as export_model
    path = config.path or os.path.join(state.out, f"{state.recipe.name}_{config.mode}.tflite")
    x, y = state.train
    report = export_model(state.model, path, mode=config.mode, representative_data=x[:config.samples],
                          eval_data=state.test, input_type=config.input_type, output_type=config.output_type,
                          relu6_fixed_range=config.relu6_fixed_range, samples=config.samples,
                          per_channel=config.per_channel, bias_correction=config.bias_correction)
    state.files[config.mode] = path
    state.reports.append(report)
    state.echo("\n".join("  " + line for line in report.format().splitlines()))
    record(state, f"export {config.mode}", accuracy=report.tflite_accuracy, bytes=report.bytes)


@dataclasses.dataclass
class BenchConfig:
    """Benchmark settings, each thread count crossed with each delegate."""
    threads: list = dataclasses.field(default_factory=lambda: [1])
    delegate: list = dataclasses.field(default_factory=lambda: ["xnnpack"])
    runs: int = 50
    warmup: int = 5
    min_secs: float = 1.0
    target_ci: float = 0.0


@register_stage("bench", BenchConfig)
def bench(state, config):
    """Benchmarks every exported .tflite file with LiteRT on this machine; `state.bench` holds the results."""
    from android_bench.report import format_table
    from android_bench.runners import BenchConfig as Config, LocalRunner
    runner = LocalRunner()
    results = []
    for mode, path in state.files.items():
        if not path.endswith(".tflite"):
            continue
        for threads in config.threads:
            for delegate in config.delegate:
                results.append(runner.run(path, Config(threads=threads, delegate=delegate, runs=config.runs,
                                                       warmup=config.warmup, min_secs=config.min_secs,
                                                       target_ci=config.target_ci)))
    state.bench = [r.to_dict() for r in results]
    state.echo("\n".join("  " + line for line in format_table(results).splitlines()))
