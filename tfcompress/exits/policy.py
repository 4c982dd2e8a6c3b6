"""`ExitPolicy`: when a sample leaves at an early exit. NumPy only (the LiteRT runner uses it on boards).

A sample leaves at the first exit whose score passes that exit's threshold, else at the final output.
Scores come from the exit's logits: `confidence` is the largest softmax probability (exit when
score >= threshold), `entropy` the softmax entropy in nats (exit when score <= threshold). A threshold
of `None` means the exit is never taken.

Example:

>>> import numpy as np
>>> policy = ExitPolicy(criterion="confidence", thresholds=[0.9])
>>> exit_logits = [np.array([[4.0, 0.0], [0.1, 0.0]])]
>>> policy.decide(exit_logits).tolist()
[0, 1]
"""
import dataclasses
import json
import math

import numpy as np

from tfcompress.errors import InputError

CRITERIA = ("confidence", "entropy")


def softmax(logits):
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def scores(logits, criterion="confidence"):
    """Per-sample exit scores of a (samples, classes) array of logits.

    Args:
      logits: an array of shape (samples, classes).
      criterion: `confidence` (largest softmax probability) or `entropy` (nats). Defaults to `confidence`.

    Returns:
      A float64 array of shape (samples,).
    """
    p = softmax(logits)
    if criterion == "confidence":
        return p.max(axis=-1)
    if criterion == "entropy":
        return -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=-1)
    raise InputError(f"criterion must be one of {', '.join(CRITERIA)}. Got: {criterion!r}")


def passes(score, threshold, criterion):
    """True where `score` lets a sample exit under `threshold` (None: never)."""
    if threshold is None:
        return np.zeros(np.shape(score), bool)
    return np.asarray(score) >= threshold if criterion == "confidence" else np.asarray(score) <= threshold


@dataclasses.dataclass
class ExitPolicy:
    """Thresholds, one per early exit, and what calibration measured for them.

    Args:
      criterion: `confidence` or `entropy`. Defaults to `"confidence"`.
      thresholds: one per early exit, in depth order; `None` never exits there. Defaults to `()`.
      exits: the exits' output names, for reference. Defaults to `()`.
      accuracy: the policy's accuracy on the calibration data. Defaults to `None`.
      full_accuracy: the final output's accuracy on the same data. Defaults to `None`.
      exit_fractions: fraction of samples leaving at each exit and at the final output. Defaults to `()`.
      expected_cost: mean cost per sample, as a fraction of running every stage without exits. Defaults
        to `None`.
      stage_costs: the relative cost of each stage that calibration used. Defaults to `()`.
      expected_disagreement: calibrated against a file (`agree_with`): the expected fraction of samples
        whose Keras and file decisions differ. Defaults to `None`.

    Raises:
      InputError: an unknown criterion.
    """
    criterion: str = "confidence"
    thresholds: tuple = ()
    exits: tuple = ()
    accuracy: float = None
    full_accuracy: float = None
    exit_fractions: tuple = ()
    expected_cost: float = None
    stage_costs: tuple = ()
    expected_disagreement: float = None

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise InputError(f"criterion must be one of {', '.join(CRITERIA)}. Got: {self.criterion!r}")
        self.thresholds = tuple(None if t is None or (isinstance(t, float) and math.isnan(t)) else float(t)
                                for t in self.thresholds)
        self.exits = tuple(self.exits)
        self.exit_fractions = tuple(float(f) for f in self.exit_fractions)
        self.stage_costs = tuple(float(c) for c in self.stage_costs)

    def exits_at(self, exit_index, logits):
        """True where a sample leaves at early exit `exit_index` given that exit's (samples, classes) logits."""
        return passes(scores(logits, self.criterion), self.thresholds[exit_index], self.criterion)

    def decide(self, exit_logits):
        """The exit each sample leaves at: 0..n-1 for the early exits, n for the final output.

        Args:
          exit_logits: one (samples, classes) array per early exit (the final output's is not needed).

        Returns:
          An int array of shape (samples,).
        """
        if len(exit_logits) != len(self.thresholds):
            raise InputError(f"the policy has {len(self.thresholds)} thresholds; got logits of "
                             f"{len(exit_logits)} exits")
        n = len(self.thresholds)
        chosen = np.full(len(exit_logits[0]) if n else 0, n, dtype=np.int64)
        for i in reversed(range(n)):
            chosen[self.exits_at(i, exit_logits[i])] = i
        return chosen

    def to_dict(self):
        return dataclasses.asdict(self) | {"thresholds": list(self.thresholds), "exits": list(self.exits),
                                           "exit_fractions": list(self.exit_fractions),
                                           "stage_costs": list(self.stage_costs)}

    @classmethod
    def from_dict(cls, data):
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise InputError(f"unknown ExitPolicy fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def save(self, path):
        """Writes the policy as JSON to `path` (atomically)."""
        from tfcompress.fileio import write_bytes
        write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path):
        """Reads a policy written by `save`.

        Raises:
          InputError: a missing or unreadable file.
        """
        try:
            with open(path) as f:
                return cls.from_dict(json.load(f))
        except OSError as e:
            raise InputError(f"cannot read exit policy {path}: {e.strerror}") from None
        except (ValueError, TypeError) as e:
            raise InputError(f"{path} is not an exit policy: {e}") from None
