"""The `distill` recipe stage: the recipe's current model is the teacher; a student is built, optionally
wrapped for pruning and QAT, and trained by a `Distiller` in one `fit` driven by `CompressionCallback`.
The stage can also train the same student from labels alone, so the recipe prints teacher,
student-from-labels and distilled-student accuracy side by side.

`prune` with `quantize: true`: `tfc.quantize` strips pruning wrappers (keeping their zeros, which QAT
then preserves), so a pruning schedule cannot run under QAT. Without `qat_epochs` the student is pruned
to the schedule's final sparsity by weight magnitude at the start and distilled with QAT in one fit of
`epochs`; with `qat_epochs: N` it is distilled with the gradual schedule for `epochs`, then wrapped for
QAT and distilled for N more epochs (better accuracy, two fits).
"""
import dataclasses
import math
import typing

import numpy as np

from tfcompress.errors import InputError
from tfcompress.recipe.registry import register_stage
from tfcompress.recipe.schema import ModelConfig, load_config
from tfcompress.recipe.state import TrainConfig, accuracy, build_model, fit, optimizer, record


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
    qat_epochs: typing.Optional[int] = None     # with prune and quantize: see the module docstring
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
        if self.qat_epochs is not None and (self.qat_epochs < 1 or not (self.quantize and self.prune)):
            raise InputError("qat_epochs (>= 1) applies only with both prune and quantize: true")
        for j, pair in enumerate(self.features or []):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
                raise InputError(f"features[{j}] must be [teacher_layer_name, student_layer_name]. Got: {pair!r}")


def _build(config, seed):
    from tfcompress._tf import keras
    keras.utils.set_random_seed(seed)
    return build_model(config, "student")


def _copy(model):
    from tfcompress.graph import copy_model
    return copy_model(model)


def _quantize(model):
    try:
        from tfcompress.quantization import quantize
    except ImportError:
        raise InputError("quantize: true needs tfcompress.quantization (QAT), which this installation "
                         "does not have; drop the option to distil with pruning only") from None
    return quantize(model)


def _distil(student, teacher, config, x, y, epochs):
    from tfcompress.callbacks import CompressionCallback
    from tfcompress.distillation import Distiller
    distiller = Distiller(student, teacher, temperature=config.temperature, alpha=config.alpha,
                          features=[tuple(p) for p in config.features or []], feature_weight=config.feature_weight)
    distiller.compile(optimizer(config.optimizer, config.learning_rate), metrics=["accuracy"])
    distiller.fit(x, y, epochs=epochs, batch_size=config.batch_size, verbose=0, callbacks=[CompressionCallback()])
    return distiller.student


def _zeros(model, wrapper):
    """Zero fraction of a pruned layer's kernel in `model`, whether still pruning-wrapped or not."""
    from tfcompress.pruning.magnitude import PruneWrapper, sparsity
    if isinstance(wrapper, PruneWrapper) and any(l is wrapper for l in model.layers):
        return sparsity(wrapper)
    name = wrapper.layer.name
    kernels = [v.numpy() for v in model.weights if v.name.startswith(f"{name}/") and v.name.endswith("kernel:0")]
    return float(np.mean([(k == 0).mean() for k in kernels])) if kernels else 0.0


@register_stage("distill", DistillConfig)
def distill(state, config):
    """Distils a student from the current model (the teacher); the student becomes the current model.

    Records the teacher's, the label-trained student's (with `baseline`) and the distilled student's
    accuracy, and the student's sparsity when it was pruned.
    """
    from tfcompress.pruning.magnitude import prune, sparsity, wrappers
    from tfcompress.schedules import Schedule
    teacher = state.model
    x, y = state.train
    student = _build(config.student, state.recipe.seed + 1)
    n_params = student.count_params()  # of the plain student: wrappers add masks and quantizer state
    rows = [("teacher", teacher.count_params(), accuracy(state, teacher), None)]
    if config.baseline:
        plain = _copy(student)  # the same initial weights as the distilled student
        fit(state, config, model=plain)
        rows.append(("student from labels", n_params, accuracy(state, plain), None))
    if config.prune is not None:
        schedule = dict(config.prune)
        if schedule.get("end_step", "auto") == "auto" and schedule.get("type", schedule.get("class_name")) \
                == "PolynomialDecay":
            steps = math.ceil(len(x) / config.batch_size) * config.epochs
            schedule["end_step"] = max(1, int(steps * 2 / 3))  # the last third trains at the target
        schedule = Schedule.from_dict(schedule)
        student = prune(student, schedule, layers=config.prune_layers)
        per_layer = {w.layer.name: w for w in wrappers(student)}
        if config.quantize and config.qat_epochs is None:
            for w in per_layer.values():  # one-shot: no schedule can run under QAT
                w.update_masks(schedule.final_sparsity())
    else:
        per_layer = {}
    if config.quantize and config.qat_epochs is None:
        student = _quantize(student)
    student = _distil(student, teacher, config, x, y, config.epochs)
    if config.quantize and config.qat_epochs is not None:
        state.echo(f"  distilled and pruned to {np.mean([sparsity(w) for w in per_layer.values()]):.4f}: "
                   f"accuracy {accuracy(state, student):.4f}; QAT for {config.qat_epochs} more epochs")
        student = _distil(_quantize(student), teacher, config, x, y, config.qat_epochs)
    state.teacher = teacher
    state.model = student
    per_layer = {name: _zeros(student, w) for name, w in per_layer.items()}
    if per_layer:
        state.sparsity = per_layer
    what = " + ".join(["distilled"] + (["pruned"] if per_layer else []) + (["QAT"] if config.quantize else []))
    rows.append((f"student {what}", n_params, accuracy(state, student),
                 float(np.mean(list(per_layer.values()))) if per_layer else None))
    echo = state.echo
    echo(f"  {'model':<36} {'params':>9} {'accuracy':>9} {'sparsity':>9}")
    for name, params, acc, sp in rows:
        echo(f"  {name:<36} {params:>9,} {acc:>9.4f} {'' if sp is None else f'{sp:.4f}':>9}")
    values = {"teacher": rows[0][2]}
    if config.baseline:
        values["student_labels"] = rows[1][2]
    values["distilled"] = rows[-1][2]
    if per_layer:
        values["sparsity"] = rows[-1][3]
    record(state, "distill", **values)
