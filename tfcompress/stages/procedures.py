"""Recipe stages for the pruning procedures of the literature: `lottery` (lottery tickets with rewinding,
`tfc.lottery_ticket`) and `regularize` (an L1 / L2 / Lp penalty on the prunable kernels, for the stages
that follow: train, prune, lottery).

```yaml
steps:
  - regularize: {type: l1, lam: 0.00001}
  - train: {epochs: 10}
  - prune: {schedule: {type: PolynomialDecay, target: 0.9}, adjust_dropout: true}
```

```yaml
steps:
  - lottery: {rounds: 10, prune_fraction: 0.2, rewind: init, control: reinit, epochs: 20}
  - export: {mode: float32}
```
"""
import dataclasses
import typing

from tfcompress.errors import InputError
from tfcompress.recipe.registry import register_stage
from tfcompress.recipe.state import TrainConfig, record

__all__ = ["LotteryConfig", "RegularizeConfig", "lottery", "regularize"]

_SCOPES = ("global", "layer")            # tfcompress.pruning.lottery.SCOPES, without loading TensorFlow
_CONTROLS = ("reinit", "random_mask")    # tfcompress.pruning.lottery.CONTROLS
_PENALTIES = ("l1", "l2", "lp")


@dataclasses.dataclass
class LotteryConfig(TrainConfig):
    """The options of `tfc.lottery_ticket`; `epochs` and the optimizer apply to every round."""
    rounds: int = 5
    prune_fraction: float = 0.2
    scope: str = "global"
    rewind: typing.Union[str, int] = "init"
    control: typing.Optional[typing.Union[str, list]] = None
    control_rounds: typing.Optional[list] = None
    layers: typing.Optional[list] = None
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 0:
            raise InputError(f"rounds must be a non-negative integer. Got: {self.rounds!r}")
        if not isinstance(self.prune_fraction, (int, float)) or not 0 < self.prune_fraction < 1:
            raise InputError(f"prune_fraction must be a number in (0, 1). Got: {self.prune_fraction!r}")
        if self.scope not in _SCOPES:
            raise InputError(f"scope must be global or layer. Got: {self.scope!r}")
        if self.rewind != "init" and (isinstance(self.rewind, bool) or not isinstance(self.rewind, int)
                                      or self.rewind < 0):
            raise InputError(f"rewind must be init or a non-negative optimizer step. Got: {self.rewind!r}")
        controls = [self.control] if isinstance(self.control, str) else list(self.control or [])
        if any(c not in _CONTROLS for c in controls):
            raise InputError(f"control must be reinit, random_mask or a list of them. Got: {self.control!r}")


@register_stage("lottery", LotteryConfig)
def lottery(state, config):
    """Runs `tfc.lottery_ticket` on the current model (give it untrained); the ticket becomes the model.

    Records one row per round (`lottery round N`: kept fraction, accuracy, control accuracies);
    `state.sparsity` holds the ticket's zero fraction per pruned layer.
    """
    from tfcompress.pruning.lottery import lottery_ticket
    from tfcompress.pruning.magnitude import sparsity
    ticket, history = lottery_ticket(
        state.model, (state.train, state.test), config.rounds, prune_fraction=config.prune_fraction,
        scope=config.scope, rewind=config.rewind, control=config.control, epochs=config.epochs,
        batch_size=config.batch_size, learning_rate=config.learning_rate, optimizer=config.optimizer,
        layers=config.layers, control_rounds=config.control_rounds, seed=config.seed, verbose=0)
    for row in history.rounds:
        record(state, f"lottery round {row['round']}", **{k: v for k, v in row.items() if k != "round"})
    state.model = ticket
    names = {name.split("/")[0] for name in history.masks}
    state.sparsity = {l.name: sparsity(l) for l in ticket.layers if l.name in names}


@dataclasses.dataclass
class RegularizeConfig:
    """A penalty toward zero on the prunable kernels: `type` l1 | l2 | lp, strength `lam`, exponent `p`
    (lp only), and `layers` (names; None: every layer with a kernel)."""
    type: str = "l1"
    lam: float = 1e-5
    p: float = 1.0
    layers: typing.Optional[list] = None

    def __post_init__(self):
        if self.type not in _PENALTIES:
            raise InputError(f"type must be l1, l2 or lp. Got: {self.type!r}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or self.lam < 0:
            raise InputError(f"lam must be a non-negative number. Got: {self.lam!r}")


@register_stage("regularize", RegularizeConfig)
def regularize(state, config):
    """Attaches the penalty (`tfc.regularizers.attach`) to the current model; the stages after it train
    with it. Records how many layers carry it."""
    from tfcompress.pruning import regularizers as regs
    penalty = {"l1": lambda: regs.l1(config.lam), "l2": lambda: regs.l2(config.lam),
               "lp": lambda: regs.lp(config.lam, config.p)}[config.type]()
    state.model = regs.attach(state.model, penalty, layers=config.layers)
    carried = [l.name for l in state.model.layers if isinstance(getattr(l, "kernel_regularizer", None), regs.Lp)]
    record(state, "regularize", penalty=config.type, lam=float(config.lam), layers=len(carried))
