"""Sparsity schedules: pure functions of the optimizer step.

A schedule answers `schedule(step) -> (should_prune, sparsity)` in plain Python: `should_prune` says
whether the masks are recomputed at this step, `sparsity` is the fraction of weights (or channels)
that must be zero from then on. Schedules hold no Keras state; they round-trip through
`get_config` / `from_config` (and `to_dict` / `from_dict` for recipes).

Example:

>>> s = PolynomialDecay(0.8, begin_step=0, end_step=100, frequency=10)
>>> s(50)
(True, 0.7)
>>> s(55)
(False, 0.7)
>>> IterativeSteps([(10, 0.1), (20, 0.2)])(20)
(True, 0.2)
"""
import dataclasses

from tfcompress.errors import InputError


def _check_sparsity(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise InputError(f"{name} must be a number in [0, 1). Got: {value!r}")


def _check_step(name, value, allow_negative=False):
    if not isinstance(value, int) or isinstance(value, bool) or (value < 0 and not allow_negative):
        raise InputError(f"{name} must be a non-negative integer step. Got: {value!r}")


class Schedule:
    """Base class: `__call__(step) -> (should_prune, sparsity)`; sparsity holds between updates."""

    def __call__(self, step):
        raise NotImplementedError

    def final_sparsity(self):
        raise NotImplementedError

    def get_config(self):
        return {"class_name": type(self).__name__, "config": dataclasses.asdict(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def to_dict(self):
        return self.get_config()

    @staticmethod
    def from_dict(d):
        """Builds a schedule from `{"class_name": ..., "config": {...}}` or `{"type": ..., **kwargs}`."""
        d = dict(d)
        name = d.pop("class_name", None) or d.pop("type", None)
        config = d.pop("config", d)
        if name not in SCHEDULES:
            raise InputError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
        try:
            return SCHEDULES[name](**config)
        except TypeError as e:
            raise InputError(f"bad arguments for {name}: {e}") from None

    def _in_window(self, step, begin, end, frequency):
        return step >= begin and (end < 0 or step <= end) and (step - begin) % frequency == 0


@dataclasses.dataclass(frozen=True)
class ConstantSparsity(Schedule):
    """Prunes to `target` at `begin_step` and re-prunes every `frequency` steps until `end_step`
    (-1: until training ends)."""
    target: float
    begin_step: int = 0
    end_step: int = -1
    frequency: int = 100

    def __post_init__(self):
        _check_sparsity("target", self.target)
        _check_step("begin_step", self.begin_step)
        _check_step("end_step", self.end_step, allow_negative=True)
        _check_step("frequency", self.frequency)
        if self.frequency < 1:
            raise InputError(f"frequency must be >= 1. Got: {self.frequency}")
        if 0 <= self.end_step < self.begin_step:
            raise InputError(f"end_step must be >= begin_step or -1. Got: {self.end_step}")

    def __call__(self, step):
        should = self._in_window(step, self.begin_step, self.end_step, self.frequency)
        return should, (self.target if step >= self.begin_step else 0.0)

    def final_sparsity(self):
        return self.target


@dataclasses.dataclass(frozen=True)
class PolynomialDecay(Schedule):
    """Sparsity rises from `initial` at `begin_step` to `target` at `end_step` along
    `target + (initial - target) * (1 - t) ** power` (Zhu & Gupta, 2017), updated every `frequency`
    steps; the masks are recomputed one last time at `end_step`."""
    target: float
    begin_step: int = 0
    end_step: int = None
    power: float = 3
    frequency: int = 100
    initial: float = 0.0

    def __post_init__(self):
        _check_sparsity("target", self.target)
        _check_sparsity("initial", self.initial)
        _check_step("begin_step", self.begin_step)
        if self.end_step is None:
            raise InputError("PolynomialDecay needs end_step: the optimizer step at which sparsity reaches "
                             "its target (e.g. epochs * ceil(samples / batch_size) * 2 // 3)")
        _check_step("end_step", self.end_step)
        _check_step("frequency", self.frequency)
        if self.frequency < 1 or self.end_step <= self.begin_step:
            raise InputError(f"need frequency >= 1 and end_step > begin_step. Got: frequency={self.frequency}, "
                             f"begin_step={self.begin_step}, end_step={self.end_step}")

    def sparsity_at(self, step):
        if step < self.begin_step:
            return 0.0
        t = min(1.0, (step - self.begin_step) / (self.end_step - self.begin_step))
        return round(self.target + (self.initial - self.target) * (1.0 - t) ** self.power, 10)

    def __call__(self, step):
        should = self._in_window(step, self.begin_step, self.end_step, self.frequency) or step == self.end_step
        if step >= self.end_step:
            return should, self.target
        last = self.begin_step + (step - self.begin_step) // self.frequency * self.frequency
        return should, self.sparsity_at(last)

    def final_sparsity(self):
        return self.target


@dataclasses.dataclass(frozen=True)
class IterativeSteps(Schedule):
    """Prunes to each listed sparsity at its step: `[(1000, 0.1), (2000, 0.2), ...]` is "train, prune
    10 %, train, prune 10 % more, ...". One entry is one-shot ("aggressive") pruning."""
    steps: tuple

    def __post_init__(self):
        try:
            steps = tuple(sorted((int(s), float(v)) for s, v in self.steps))
        except (TypeError, ValueError):
            raise InputError(f"steps must be a list of (step, sparsity) pairs. Got: {self.steps!r}") from None
        if not steps:
            raise InputError("steps must hold at least one (step, sparsity) pair")
        for s, v in steps:
            _check_step("step", s)
            _check_sparsity("sparsity", v)
        if len({s for s, _ in steps}) != len(steps):
            raise InputError(f"steps must be distinct. Got: {self.steps!r}")
        object.__setattr__(self, "steps", steps)

    def __call__(self, step):
        current = 0.0
        for s, v in self.steps:
            if step == s:
                return True, v
            if step > s:
                current = v
        return False, current

    def final_sparsity(self):
        return self.steps[-1][1]

    def get_config(self):
        return {"class_name": "IterativeSteps", "config": {"steps": [list(p) for p in self.steps]}}

    @classmethod
    def every(cls, step_interval, increment, target, first_step=None):
        """`every(500, 0.1, 0.5)`: prune 10 % more every 500 steps until 50 %."""
        first = step_interval if first_step is None else first_step
        n = int(round(target / increment))
        return cls([(first + i * step_interval, round(min(target, (i + 1) * increment), 10)) for i in range(n)])


SCHEDULES = {c.__name__: c for c in (ConstantSparsity, PolynomialDecay, IterativeSteps)}
