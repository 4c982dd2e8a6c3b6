"""The core recipe stages: train, prune, strip, save, export, bench, and the state they share. Other
techniques add theirs in their own module of this package with
`tfcompress.recipes.register_stage`."""
import dataclasses
import json
import math
import os
import typing

import numpy as np

from tfcompress.errors import InputError
from tfcompress.recipes import register_stage


def start(recipe, out, echo):
    from tfcompress import data, models
    from tfcompress._tf import keras
    keras.utils.set_random_seed(recipe.seed)
    if recipe.model.build:
        if recipe.model.build not in models.REGISTRY:
            raise InputError(f"model.build: unknown model {recipe.model.build!r}; choose one of "
                             f"{', '.join(models.REGISTRY)}")
        args = dict(recipe.model.args)
        if "input_shape" in args:
            args["input_shape"] = tuple(args["input_shape"])
        model = models.REGISTRY[recipe.model.build](**args)
    else:
        from tfcompress.saving import load_model
        model = load_model(recipe.model.path)
    shape = (None, *recipe.data.input_shape) if recipe.data.input_shape else model.input_shape
    split = {}
    for name in ("train", "test"):
        x, y = data.load(recipe.data.spec, name)
        x, note = data.fit_to_input(x, shape)
        if note and name == "train":
            echo(f"  {note}")
        split[name] = (x, y)
    os.makedirs(out, exist_ok=True)
    return {"recipe": recipe, "out": out, "echo": echo, "model": model, "train": split["train"],
            "test": split["test"], "rows": [], "files": {}}


def _compile(model, learning_rate, optimizer="adam"):
    from tfcompress._tf import keras
    opt = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[optimizer](learning_rate)
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def _accuracy(state, model=None):
    model = model or state["model"]
    x, y = state["test"]
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(logits.argmax(1) == y))


def _record(state, stage, **values):
    row = {"stage": stage, **values}
    state["rows"].append(row)
    state["echo"]("  " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                                   if k != "stage"))


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"

    def __post_init__(self):
        if self.optimizer not in ("adam", "sgd"):
            raise InputError(f"optimizer must be adam or sgd. Got: {self.optimizer!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise InputError("epochs must be >= 0, batch_size >= 1 and learning_rate > 0")


def _fit(state, config, callbacks=()):
    x, y = state["train"]
    _compile(state["model"], config.learning_rate, config.optimizer)
    state["model"].fit(x, y, epochs=config.epochs, batch_size=config.batch_size, verbose=0,
                       callbacks=list(callbacks))


@register_stage("train", TrainConfig)
def train(state, config):
    _fit(state, config)
    _record(state, "train", accuracy=_accuracy(state))


@dataclasses.dataclass
class PruneConfig(TrainConfig):
    schedule: dict = dataclasses.field(default_factory=lambda: {"type": "PolynomialDecay", "target": 0.8})
    layers: typing.Optional[typing.Union[list, dict]] = None   # names, or {name: target | schedule}
    learning_rate: float = 5e-4


@register_stage("prune", PruneConfig)
def prune(state, config):
    from tfcompress import CompressionCallback
    from tfcompress.pruning.magnitude import prune as prune_model, sparsity, wrappers
    from tfcompress.schedules import Schedule
    steps = math.ceil(len(state["train"][0]) / config.batch_size) * config.epochs

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
    state["model"] = prune_model(state["model"], schedule, layers=layers)
    _fit(state, config, [CompressionCallback()])
    per_layer = {w.layer.name: sparsity(w) for w in wrappers(state["model"])}
    state["sparsity"] = per_layer
    _record(state, "prune", accuracy=_accuracy(state),
            sparsity=float(np.mean(list(per_layer.values()))) if per_layer else 0.0)


@dataclasses.dataclass
class StripConfig:
    pass


@register_stage("strip", StripConfig)
def strip(state, config):
    from tfcompress.stripping import strip as strip_model
    state["model"] = strip_model(state["model"])


@dataclasses.dataclass
class SaveConfig:
    path: typing.Optional[str] = None


@register_stage("save", SaveConfig)
def save(state, config):
    from tfcompress.fileio import atomic_path
    from tfcompress.quantization import is_quantized
    # tfmot's QAT wrappers do not reload from .keras ("quantize_layer expected 5 variables"): use .h5
    default_ext = ".h5" if is_quantized(state["model"]) else ".keras"
    path = config.path or os.path.join(state["out"], f"{state['recipe'].name}{default_ext}")
    ext = ".h5" if path.endswith((".h5", ".hdf5")) else ".keras"
    with atomic_path(path, suffix=ext) as tmp:
        state["model"].save(tmp)
    state["files"]["keras"] = path
    state["echo"](f"  saved {path}")


@dataclasses.dataclass
class ExportConfig:
    mode: str = "int8"
    path: typing.Optional[str] = None
    samples: int = 256
    input_type: typing.Optional[str] = None
    output_type: typing.Optional[str] = None
    relu6_fixed_range: bool = True


@register_stage("export", ExportConfig)
def export(state, config):
    from tfcompress.exporting import export as export_model
    path = config.path or os.path.join(state["out"], f"{state['recipe'].name}_{config.mode}.tflite")
    x, y = state["train"]
    report = export_model(state["model"], path, mode=config.mode, representative_data=x[:config.samples],
                          eval_data=state["test"], input_type=config.input_type, output_type=config.output_type,
                          relu6_fixed_range=config.relu6_fixed_range, samples=config.samples)
    state["files"][config.mode] = path
    state.setdefault("reports", []).append(report)
    state["echo"]("\n".join("  " + line for line in report.format().splitlines()))
    _record(state, f"export {config.mode}", accuracy=report.tflite_accuracy, bytes=report.bytes)


@dataclasses.dataclass
class BenchConfig:
    threads: list = dataclasses.field(default_factory=lambda: [1])
    delegate: list = dataclasses.field(default_factory=lambda: ["xnnpack"])
    runs: int = 50
    warmup: int = 5
    min_secs: float = 1.0
    target_ci: float = 0.0


@register_stage("bench", BenchConfig)
def bench(state, config):
    from android_bench.report import format_table
    from android_bench.runners import BenchConfig as Config, LocalRunner
    runner = LocalRunner()
    results = []
    for mode, path in state["files"].items():
        if not path.endswith(".tflite"):
            continue
        for threads in config.threads:
            for delegate in config.delegate:
                results.append(runner.run(path, Config(threads=threads, delegate=delegate, runs=config.runs,
                                                       warmup=config.warmup, min_secs=config.min_secs,
                                                       target_ci=config.target_ci)))
    state["bench"] = [r.to_dict() for r in results]
    state["echo"]("\n".join("  " + line for line in format_table(results).splitlines()))


def finish(state):
    from tfcompress.fileio import write_text
    summary = {"recipe": state["recipe"].name, "stages": state["rows"], "files": state["files"],
               "sparsity": state.get("sparsity"), "bench": state.get("bench"),
               "exports": [r.to_dict() for r in state.get("reports", [])]}
    path = os.path.join(state["out"], "summary.json")
    write_text(path, json.dumps(summary, indent=2, default=float))
    echo = state["echo"]
    echo("\nsummary")
    for row in state["rows"]:
        extra = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                          if k not in ("stage",) and v is not None)
        echo(f"  {row['stage']:<16} {extra}")
    echo(f"  written: {path}")
