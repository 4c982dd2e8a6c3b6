"""The `low_rank` and `separable` recipe stages: the current model's layers rewritten as two cheaper ones
(`tfc.low_rank`, `tfc.separable`), then trained back: `low_rank` fine-tunes on the labels, `separable`
distils from the model as it was (the teacher), with hints on every replaced layer's output, after
re-estimating the BatchNorm statistics on the training split (`tfc.recalibrate_batchnorm`): the separable
pair starts far from the original kernel, and the statistics after it are the first thing to repair.

Both record the accuracy before, as rewritten (no training) and after training, and the MACs before and
after (`tfc.analysis.macs`)."""
import dataclasses
import typing

from tfcompress.errors import InputError
from tfcompress.recipe.registry import register_stage
from tfcompress.recipe.state import TrainConfig, accuracy, fit, optimizer, record


@dataclasses.dataclass
class LowRankConfig(TrainConfig):
    """`tfc.low_rank`'s options (exactly one of ranks, ratio, target_macs, energy), then fine-tuning."""
    ranks: typing.Optional[dict] = None
    ratio: typing.Optional[float] = None
    target_macs: typing.Optional[int] = None
    energy: typing.Optional[float] = None
    method: str = "weight"
    layers: typing.Optional[list] = None
    round_to: int = 8
    learning_rate: float = 5e-4

    def __post_init__(self):
        super().__post_init__()
        from tfcompress.architecture.ranks import METHODS, check_budget
        check_budget(self.ranks, self.ratio, self.target_macs, self.energy)
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}. Got: {self.method!r}")
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise InputError(f"round_to must be an integer >= 1. Got: {self.round_to!r}")


@register_stage("low_rank", LowRankConfig)
def low_rank(state, config):
    """Factors the current model's Dense / Conv2D layers and fine-tunes; records accuracy and MACs."""
    from tfcompress.analysis import macs, params
    from tfcompress.architecture.factorize import low_rank as factor
    before = accuracy(state)
    macs_before = macs(state.model)
    state.model = factor(state.model, ranks=config.ranks, ratio=config.ratio, target_macs=config.target_macs,
                         energy=config.energy, method=config.method, layers=config.layers,
                         round_to=config.round_to)
    cut = accuracy(state)
    if config.epochs:
        fit(state, config)
    record(state, "low_rank", accuracy_before=before, factored=cut, accuracy=accuracy(state),
           macs_before=macs_before, macs=macs(state.model), params=params(state.model))


@dataclasses.dataclass
class SeparableConfig(TrainConfig):
    """`tfc.separable`'s layers, then distillation from the model as it was (hints on replaced layers)."""
    layers: typing.Optional[list] = None
    temperature: float = 4.0
    alpha: float = 0.9
    hints: bool = True
    feature_weight: float = 1.0
    recalibrate: bool = True                    # re-estimate BatchNorm statistics before distilling

    def __post_init__(self):
        super().__post_init__()
        if self.temperature <= 0:
            raise InputError(f"temperature must be > 0. Got: {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1]. Got: {self.alpha}")


def distil_back(student, teacher, x, y, config, features):
    """Trains `student` from `teacher` (a `tfc.Distiller` with hint `features`) and returns the student."""
    from tfcompress.callbacks import CompressionCallback
    from tfcompress.distillation import Distiller
    trainer = Distiller(student, teacher, temperature=config.temperature, alpha=config.alpha,
                        features=features, feature_weight=config.feature_weight)
    trainer.compile(optimizer(config.optimizer, config.learning_rate), metrics=["accuracy"])
    trainer.fit(x, y, epochs=config.epochs, batch_size=config.batch_size, verbose=0,
                callbacks=[CompressionCallback()])
    return trainer.student


@register_stage("separable", SeparableConfig)
def separable(state, config):
    """Replaces Conv2D k×k by depthwise + 1×1 and distils from the original; records accuracy and MACs
    (of the whole model, and of the replaced layers alone)."""
    from tfcompress.analysis import macs
    from tfcompress.analysis.cost import layer_macs
    from tfcompress.architecture.separate import hint_pairs, separable as separate
    teacher = state.model
    before = accuracy(state)
    pairs = hint_pairs(teacher, config.layers)
    student = separate(teacher, config.layers)
    cut = accuracy(state, student)
    if config.recalibrate:
        from tfcompress.pruning.batchnorm import recalibrate_batchnorm
        recalibrate_batchnorm(student, state.train[0], batch_size=config.batch_size)
    if config.epochs:
        x, y = state.train
        student = distil_back(student, teacher, x, y, config, pairs if config.hints else None)
    old, new = layer_macs(teacher), layer_macs(student)
    names = [n for n, _ in pairs]
    replaced_before = sum(old[n] for n in names)
    replaced_after = sum(new.get(n, 0) + new.get(f"{n}_dw", 0) for n in names)
    state.teacher = teacher
    state.model = student
    record(state, "separable", accuracy_before=before, separated=cut, accuracy=accuracy(state),
           macs_before=macs(teacher), macs=macs(student), layers_macs_before=replaced_before,
           layers_macs=replaced_after)
