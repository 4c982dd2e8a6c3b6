"""The `equalize` recipe stage: cross-layer equalization (`tfc.equalize`) before post-training export,
usually followed by `export: {per_channel: false, bias_correction: true}`."""
import dataclasses

from tfcompress.errors import InputError
from tfcompress.recipe.registry import register_stage
from tfcompress.recipe.state import accuracy, record


@dataclasses.dataclass
class EqualizeConfig:
    """`relu6`: `skip` leaves pairs through a ReLU6 alone (reported), `relu` turns those ReLU6 into ReLU."""
    relu6: str = "skip"
    iterations: int = 100

    def __post_init__(self):
        from tfcompress.quantization.equalize import RELU6_MODES
        if self.relu6 not in RELU6_MODES:
            raise InputError(f"relu6 must be one of {', '.join(RELU6_MODES)}. Got: {self.relu6!r}")
        if self.iterations < 1:
            raise InputError(f"iterations must be >= 1. Got: {self.iterations}")


@register_stage("equalize", EqualizeConfig)
def equalize(state, config):
    """Equalizes the current model (BatchNorm folded in); records accuracy, pairs, skipped pairs and the
    largest per-channel range ratio left."""
    from tfcompress.quantization.equalize import channel_range_ratios, equalize as equalize_model
    state.model, report = equalize_model(state.model, relu6=config.relu6, iterations=config.iterations,
                                         report=True)
    state.echo("\n".join("  " + line for line in report.format().splitlines()))
    ratios = channel_range_ratios(state.model)
    record(state, "equalize", accuracy=accuracy(state), pairs=len(report.pairs), skipped=len(report.skipped),
           converted=len(report.converted), max_range_ratio=max(ratios.values(), default=1.0))
