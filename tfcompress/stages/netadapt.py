"""The `netadapt` recipe stage: channel pruning to a latency target measured on the device (`tfc.netadapt`).

Follow it with `quantize`, `export` (int8, ReLU6 pinned) and `bench` for the whole `tfcompress optimize`
path in a recipe:

    - netadapt: {speedup: 2, device: [local], step: 0.05, finetune_steps: 100, final_epochs: 10}
    - quantize: {epochs: 3, learning_rate: 0.0001}
    - export: {mode: int8}
    - bench: {}

The history is written to `netadapt_history.json` in the run's output folder (a rerun resumes it); the
stage records the iterations, the kept channels and the measured speed-up per device.
"""
import dataclasses
import os
import typing

from tfcompress.errors import InputError
from tfcompress.recipe.registry import register_stage
from tfcompress.recipe.state import accuracy, record


@dataclasses.dataclass
class NetAdaptConfig:
    """`tfc.netadapt`'s options (exactly one of target_ms and speedup)."""
    target_ms: typing.Optional[float] = None
    speedup: typing.Optional[float] = None
    device: typing.Optional[list] = None
    binary: typing.Optional[str] = None
    step: float = 0.025
    decay: float = 0.96
    finetune_steps: int = 100
    final_epochs: int = 10
    round_to: int = 8
    learning_rate: float = 3e-4
    batch_size: int = 64
    max_iterations: int = 100
    rounds: int = 5
    cache: typing.Optional[str] = None

    def __post_init__(self):
        if (self.target_ms is None) == (self.speedup is None):
            raise InputError("netadapt: give exactly one of target_ms and speedup")
        if isinstance(self.device, str):
            self.device = [self.device]
        if self.finetune_steps < 0 or self.final_epochs < 0 or self.max_iterations < 1 or self.rounds < 1:
            raise InputError("netadapt: finetune_steps and final_epochs must be >= 0, max_iterations and rounds "
                             f">= 1. Got: {self.finetune_steps}, {self.final_epochs}, {self.max_iterations}, "
                             f"{self.rounds}")


@register_stage("netadapt", NetAdaptConfig)
def netadapt(state, config):
    """Runs NetAdapt on the current model; records iterations, kept channels and measured speed-ups."""
    from tfcompress.choose.netadapt import netadapt as run
    before = accuracy(state)
    state.model, hist = run(state.model, (state.train, state.test), target_ms=config.target_ms,
                            speedup=config.speedup, device=config.device or ["local"], binary=config.binary,
                            step=config.step, decay=config.decay, finetune_steps=config.finetune_steps,
                            final_epochs=config.final_epochs, round_to=config.round_to, lr=config.learning_rate,
                            batch_size=config.batch_size, max_iterations=config.max_iterations,
                            rounds=config.rounds, cache=config.cache,
                            history=os.path.join(state.out, "netadapt_history.json"), verbose=0)
    last = hist.iterations[-1] if hist.iterations else None
    record(state, "netadapt", accuracy_before=before, accuracy=accuracy(state), iterations=len(hist.iterations),
           met=bool(hist.final and hist.final["met"]),
           speedup=", ".join(f"{d} {v:.2f}x" for d, v in (last["speedup"] if last else {}).items()) or "none",
           kept=", ".join(f"{r['group']} {r['kept']}/{r['size']}" for r in hist.iterations) or "none",
           **({"stopped": hist.final["stopped"]} if hist.final and hist.final.get("stopped") else {}))
