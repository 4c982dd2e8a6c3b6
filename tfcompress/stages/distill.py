"""The `distill` recipe stage: the recipe's current model is the teacher; a student is built, optionally
wrapped for pruning and QAT, and trained by a `Distiller` in one `fit` driven by `CompressionCallback`.
The stage can also train the same student from labels alone, so the recipe prints teacher,
student-from-labels and distilled-student accuracy side by side."""
import dataclasses
import math
import typing

import numpy as np

from tfcompress.errors import InputError
from tfcompress.recipes import ModelConfig, load_config, register_stage
from tfcompress.stages.core import TrainConfig, _accuracy, _compile, _record


@dataclasses.dataclass
class DistillConfig(TrainConfig):
    student: dict = None                        # {build: NAME, args: {...}} or {path: saved model}
    temperature: float = 4.0
    alpha: float = 0.9
    features: typing.Optional[list] = None      # [[teacher_layer, student_layer], ...]
    feature_weight: float = 1.0
    prune: typing.Optional[dict] = None         # a schedule, e.g. {type: PolynomialDecay, target: 0.5, end_step: auto}
    prune_layers: typing.Optional[list] = None
    quantize: bool = False                      # QAT wrappers from tfcompress.quantization
    baseline: bool = True                       # also train the student from labels alone, for comparison

    def __post_init__(self):
        super().__post_init__()
        if self.student is None:
            raise InputError("missing key student (e.g. student: {build: mobilenet_v2_small, args: {width: 8}})")
        self.student = load_config(ModelConfig, self.student, "student")
        if self.temperature <= 0:
            raise InputError(f"temperature must be > 0. Got: {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1]. Got: {self.alpha}")
        for j, pair in enumerate(self.features or []):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
                raise InputError(f"features[{j}] must be [teacher_layer_name, student_layer_name]. Got: {pair!r}")


def _build(config, seed):
    from tfcompress import models
    from tfcompress._tf import keras
    keras.utils.set_random_seed(seed)
    if config.build:
        if config.build not in models.REGISTRY:
            raise InputError(f"student.build: unknown model {config.build!r}; choose one of {', '.join(models.REGISTRY)}")
        args = dict(config.args)
        if "input_shape" in args:
            args["input_shape"] = tuple(args["input_shape"])
        if "blocks" in args:
            args["blocks"] = tuple(tuple(b) for b in args["blocks"])
        return models.REGISTRY[config.build](**args)
    from tfcompress.saving import load_model
    return load_model(config.path)


def _copy(model):
    from tfcompress._tf import keras
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _quantize(model):
    try:
        from tfcompress.quantization import quantize
    except ImportError:
        raise InputError("quantize: true needs tfcompress.quantization (QAT), which this installation "
                         "does not have; drop the option to distil with pruning only") from None
    return quantize(model)


@register_stage("distill", DistillConfig)
def distill(state, config):
    from tfcompress._tf import keras
    from tfcompress.callbacks import CompressionCallback
    from tfcompress.distillation import Distiller
    from tfcompress.pruning.magnitude import prune, sparsity, wrappers
    from tfcompress.schedules import Schedule
    teacher = state["model"]
    x, y = state["train"]
    student = _build(config.student, state["recipe"].seed + 1)
    n_params = student.count_params()  # of the plain student: wrappers add masks and quantizer state
    rows = [("teacher", teacher.count_params(), _accuracy(state, teacher), None)]
    if config.baseline:
        plain = _copy(student)  # the same initial weights as the distilled student
        _compile(plain, config.learning_rate, config.optimizer)
        plain.fit(x, y, epochs=config.epochs, batch_size=config.batch_size, verbose=0)
        rows.append(("student from labels", n_params, _accuracy(state, plain), None))
    callbacks = []
    if config.prune is not None:
        schedule = dict(config.prune)
        if schedule.get("end_step", "auto") == "auto" and schedule.get("type", schedule.get("class_name")) \
                == "PolynomialDecay":
            steps = math.ceil(len(x) / config.batch_size) * config.epochs
            schedule["end_step"] = max(1, int(steps * 2 / 3))  # the last third trains at the target
        student = prune(student, Schedule.from_dict(schedule), layers=config.prune_layers)
    if config.quantize:
        student = _quantize(student)
    if config.prune is not None or config.quantize:
        callbacks.append(CompressionCallback())
    distiller = Distiller(student, teacher, temperature=config.temperature, alpha=config.alpha,
                          features=[tuple(p) for p in config.features or []], feature_weight=config.feature_weight)
    opt = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[config.optimizer](config.learning_rate)
    distiller.compile(opt, metrics=["accuracy"])
    distiller.fit(x, y, epochs=config.epochs, batch_size=config.batch_size, verbose=0, callbacks=callbacks)
    state["teacher"] = teacher
    state["model"] = distiller.student
    per_layer = {w.layer.name: sparsity(w) for w in wrappers(distiller.student)}
    if per_layer:
        state["sparsity"] = per_layer
    what = " + ".join(["distilled"] + (["pruned"] if per_layer else []) + (["QAT"] if config.quantize else []))
    rows.append((f"student {what}", n_params, _accuracy(state, distiller.student),
                 float(np.mean(list(per_layer.values()))) if per_layer else None))
    echo = state["echo"]
    echo(f"  {'model':<36} {'params':>9} {'accuracy':>9} {'sparsity':>9}")
    for name, params, acc, sp in rows:
        echo(f"  {name:<36} {params:>9,} {acc:>9.4f} {'' if sp is None else f'{sp:.4f}':>9}")
    values = {"teacher": rows[0][2]}
    if config.baseline:
        values["student_labels"] = rows[1][2]
    values["distilled"] = rows[-1][2]
    if per_layer:
        values["sparsity"] = rows[-1][3]
    _record(state, "distill", **values)
