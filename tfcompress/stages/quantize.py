"""The `quantize` recipe stage: quantization-aware training (after pruning, zeros are kept)."""
import dataclasses
import typing

from tfcompress.errors import InputError
from tfcompress.recipe.registry import register_stage
from tfcompress.recipe.state import TrainConfig, accuracy, fit, record


@dataclasses.dataclass
class QuantizeConfig(TrainConfig):
    """QAT fine-tuning: a few epochs at a small learning rate.

    `skip` names layers kept float; `preserve_sparsity` None means on when the model was pruned.
    `weights` is the Conv2D / Dense kernel grid (`int8`, `int4`, `ternary`, `binary`, `pow2`; see
    `tfc.quantize`), `per_channel` one grid per output channel, `exponents` the powers of two of `pow2`.
    """
    epochs: int = 3
    learning_rate: float = 1e-4
    skip: typing.Optional[list] = None
    layers: typing.Optional[list] = None
    preserve_sparsity: typing.Optional[bool] = None
    weights: str = "int8"
    per_channel: bool = True
    exponents: int = 4

    def __post_init__(self):
        super().__post_init__()
        for name in ("skip", "layers"):
            value = getattr(self, name)
            if value is not None and not all(isinstance(v, str) for v in value):
                raise InputError(f"{name} must be a list of layer names. Got: {value!r}")
        from tfcompress.quantization.grids import check
        try:
            check(self.weights, self.exponents)
        except ValueError as e:
            raise InputError(str(e)) from None

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


@register_stage("quantize", QuantizeConfig)
def quantize(state, config):
    """Wraps the model for QAT (`tfc.quantize`) and fine-tunes it; records its accuracy."""
    from tfcompress.quantization import quantize as quantize_model
    state.model = quantize_model(state.model, layers=config.layers, skip=config.skip,
                                    preserve_sparsity=config.preserve_sparsity, weights=config.weights,
                                    per_channel=config.per_channel, exponents=config.exponents)
    fit(state, config)
    record(state, "quantize", accuracy=accuracy(state), weights=config.weights)
