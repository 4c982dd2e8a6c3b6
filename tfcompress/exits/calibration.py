"""`tfc.calibrate_exits`: thresholds that exit as early as possible within an accuracy budget.

For each early exit the candidate thresholds are quantiles of its scores on the calibration data (plus
"never"). Every combination is evaluated when there are few enough (a sample leaves at the first exit
whose score passes), else one exit at a time from the first (coordinate descent, repeated until nothing
changes). The policy kept has the lowest expected cost among those whose accuracy is at least the final
output's minus `max_accuracy_drop`; ties go to the more accurate one.

The expected cost of a sample that leaves at exit k is the sum of the costs of stages 0..k; stage costs
are relative (by default each stage's multiply-accumulates, `tfc.analysis.flops`, of the exported stage
models; measured latencies can be given instead).
"""
import itertools

import numpy as np

from tfcompress.errors import InputError
from tfcompress.exits.policy import CRITERIA, ExitPolicy, passes, scores

_GRID_LIMIT = 200_000


def exit_logits(model, x, batch_size=256):
    """Every output's logits of a Keras model with exits, or of an exit .tflite file (a path or `Runner`).

    Returns:
      A list of (samples, classes) float arrays: the early exits in depth order, then the final output.
    """
    from tfcompress.exits.runner import Runner
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = Runner(model)
    if isinstance(model, Runner):
        return model.all_logits(x)
    from tfcompress.exits.heads import exit_points, output_names
    from tfcompress.graph.keras3 import tf_keras_model
    model = tf_keras_model(model)
    _, exits, final = exit_points(model)
    outs = model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
    by_name = dict(zip(output_names(model), outs))
    return [np.asarray(by_name[n]) for n in exits + [final]]


def stage_costs(model):
    """Relative cost of each stage of a Keras model with exits: its MACs over the whole model's."""
    from tfcompress.analysis import flops
    from tfcompress.exits.export import stage_models
    macs = [float(flops(s)) for s in stage_models(model)]
    return [m / sum(macs) for m in macs]


def _outcomes(policy_exits, correct, costs):
    """(accuracy, mean cost, exit fractions) of per-sample exit choices."""
    n = len(costs)
    cumulative = np.cumsum(costs)
    acc = float(correct[policy_exits, np.arange(len(policy_exits))].mean())
    cost = float(cumulative[policy_exits].mean())
    fractions = np.bincount(policy_exits, minlength=n) / len(policy_exits)
    return acc, cost, fractions


def _choose(ok, n_exits):
    """Exit index per sample: the first exit whose row of `ok` is True, else the final output."""
    chosen = np.full(ok.shape[1], n_exits, dtype=np.int64)
    for i in reversed(range(n_exits)):
        chosen[ok[i]] = i
    return chosen


def evaluate_policy(policy, logits, y, costs):
    """(accuracy, mean cost, exit fractions) of `policy` on outputs `logits` (exits then final) and labels."""
    correct = np.stack([np.argmax(l, axis=-1) == y for l in logits])
    return _outcomes(policy.decide(logits[:-1]), correct, np.asarray(costs, np.float64))


def _log_scale(values, criterion):
    """Scores on the scale where int8 rounding moves them about evenly: log-odds of the confidence, or
    the log of the entropy."""
    v = np.clip(np.asarray(values, np.float64), 1e-15, None)
    return np.log(v) - np.log(np.clip(1.0 - v, 1e-15, None)) if criterion == "confidence" else np.log(v)


def flip_probabilities(keras_scores, file_scores, thresholds, criterion):
    """For each threshold, each sample's chance that its Keras and file decisions differ there.

    The file's score is the Keras score moved by a Keras-to-file difference drawn from those seen on the
    data (on the log scale of `_log_scale`), so a sample far from the threshold never flips and one on
    it flips about half the time.

    Returns:
      One (samples,) float array per threshold (zeros for `None`, never exit).
    """
    g = _log_scale(keras_scores, criterion)
    d = np.sort(_log_scale(file_scores, criterion) - g)
    out = []
    for t in thresholds:
        if t is None:
            out.append(np.zeros(len(g)))
            continue
        gap = _log_scale([t], criterion)[0] - g          # the file's score crosses t when d passes gap
        below = np.searchsorted(d, gap, side="left") / len(d)     # P(d < gap)
        out.append(np.where(g >= _log_scale([t], criterion)[0], below, 1.0 - below))
    return out


def calibrate_exits(model, data, max_accuracy_drop=0.01, criterion="confidence", costs=None, candidates=32,
                    agree_with=None, max_disagreement=0.005):
    """Chooses one threshold per early exit: the cheapest policy within `max_accuracy_drop` of the final
    output's accuracy on `data`.

    Calibrate on held-out data (not the training set, where exits are over-confident).

    Example:

    ```python
    policy = tfc.calibrate_exits(ee, (x_val, y_val), max_accuracy_drop=0.01)
    policy.save("policy.json")
    ```

    Args:
      model: a Keras model from `tfc.add_exits`, or an exit `.tflite` path (its int8 outputs are then used).
      data: `(x, y)` with integer labels.
      max_accuracy_drop: the most accuracy (a fraction: 0.01 is one point) the policy may lose against the
        final output on `data`. Defaults to `0.01`.
      criterion: `confidence` or `entropy`. Defaults to `"confidence"`.
      costs: relative cost of each stage (exits + 1 values). Defaults to `None`: MACs of the stages (a Keras
        model) or equal costs (a file).
      candidates: thresholds tried per exit (quantiles of its scores). Defaults to `32`.
      agree_with: the exported file (a path or `Runner`) of the Keras `model`. Its outputs on `data` must
        keep the budget too, and the thresholds are kept where the two rarely decide differently: the
        expected fraction of samples whose Keras and file decisions differ (`flip_probabilities`, from
        the Keras-to-file score differences on `data`) is at most `max_disagreement`. Defaults to `None`.
      max_disagreement: with `agree_with`, that fraction. Defaults to `0.005`.

    Returns:
      An `ExitPolicy` holding the thresholds and what they give on `data`.

    Raises:
      InputError: bad data, criterion, budget or costs.
    """
    if criterion not in CRITERIA:
        raise InputError(f"criterion must be one of {', '.join(CRITERIA)}. Got: {criterion!r}")
    if not isinstance(data, tuple) or len(data) != 2:
        raise InputError("calibrate_exits needs data=(x, y) with integer labels")
    if not 0 <= max_accuracy_drop < 1:
        raise InputError(f"max_accuracy_drop must be in [0, 1) (0.01 is one point). Got: {max_accuracy_drop}")
    x, y = np.asarray(data[0], np.float32), np.asarray(data[1]).astype(np.int64).reshape(-1)
    if len(x) != len(y) or len(y) == 0:
        raise InputError(f"calibrate_exits: x and y must hold the same number of samples (> 0). Got: {len(x)}, "
                         f"{len(y)}")
    logits = exit_logits(model, x)
    n = len(logits) - 1
    file_logits = None if agree_with is None else exit_logits(agree_with, x)
    if file_logits is not None and [l.shape for l in file_logits] != [l.shape for l in logits]:
        raise InputError(f"agree_with: the file's outputs {[l.shape for l in file_logits]} are not the model's "
                         f"{[l.shape for l in logits]}")
    if costs is None:
        costs = [1.0 / (n + 1)] * (n + 1) if isinstance(model, str) else stage_costs(model)
    costs = np.asarray(costs, np.float64)
    if costs.shape != (n + 1,) or (costs < 0).any():
        raise InputError(f"costs: one non-negative value per stage ({n + 1}). Got: {list(costs)}")
    correct = np.stack([np.argmax(l, axis=-1) == y for l in logits])
    full_acc = float(correct[-1].mean())
    floor = full_acc - max_accuracy_drop - 1e-12
    s = [scores(l, criterion) for l in logits[:-1]]
    grid = [_candidates(v, criterion, candidates) for v in s]
    ok = [[passes(v, t, criterion) for t in g] for v, g in zip(s, grid)]
    if file_logits is not None:
        f_correct = np.stack([np.argmax(l, axis=-1) == y for l in file_logits])
        f_floor = float(f_correct[-1].mean()) - max_accuracy_drop - 1e-12
        f_ok = [[passes(scores(l, criterion), t, criterion) for t in g] for l, g in zip(file_logits[:-1], grid)]
        flips = [flip_probabilities(v, scores(l, criterion), g, criterion) for v, l, g in zip(s, file_logits, grid)]

    def outcome(choice):
        mask = np.stack([ok[i][c] for i, c in enumerate(choice)]) if n else np.zeros((0, len(y)), bool)
        chosen = _choose(mask, n)
        acc, cost, fractions = _outcomes(chosen, correct, costs)
        if file_logits is None:
            return acc, cost, fractions
        f_chosen = _choose(np.stack([f_ok[i][c] for i, c in enumerate(choice)]), n)
        flip = sum(float(flips[i][c][chosen >= i].sum()) for i, c in enumerate(choice)) / len(y)
        feasible = _outcomes(f_chosen, f_correct, costs)[0] >= f_floor and flip <= max_disagreement + 1e-12
        return (acc if feasible else -1.0), cost, fractions, flip     # -1: below a floor, never kept

    def better(a, b):  # (acc, cost) a is better than b under the floor
        if b is None:
            return True
        return a[1] < b[1] - 1e-12 or (abs(a[1] - b[1]) <= 1e-12 and a[0] > b[0])

    never = tuple(len(g) - 1 for g in grid)     # the last candidate of every exit is "never"
    best_choice, best = never, outcome(never)
    if np.prod([len(g) for g in grid], dtype=np.float64) <= _GRID_LIMIT:
        for choice in itertools.product(*[range(len(g)) for g in grid]):
            o = outcome(choice)
            if o[0] >= floor and better(o, best):
                best_choice, best = choice, o
    else:
        changed = True
        while changed:
            changed = False
            for i in range(n):
                for c in range(len(grid[i])):
                    choice = best_choice[:i] + (c,) + best_choice[i + 1:]
                    o = outcome(choice)
                    if o[0] >= floor and better(o, best):
                        best_choice, best, changed = choice, o, True
    from tfcompress.exits.heads import exit_points
    names = () if isinstance(model, str) else tuple(exit_points(_keras(model))[1])
    return ExitPolicy(criterion=criterion, thresholds=[grid[i][c] for i, c in enumerate(best_choice)],
                      exits=names, accuracy=best[0], full_accuracy=full_acc, exit_fractions=best[2],
                      expected_cost=best[1] / float(costs.sum()), stage_costs=costs,
                      expected_disagreement=best[3] if file_logits is not None else None)


def _keras(model):
    from tfcompress.graph.keras3 import tf_keras_model
    return tf_keras_model(model)


def _candidates(values, criterion, k):
    """Up to `k` thresholds from the quantiles of one exit's scores, then None (never exit)."""
    qs = np.unique(np.quantile(values, np.linspace(0.0, 1.0, k)))
    qs = qs[::-1] if criterion == "confidence" else qs   # from the strictest; order does not change the search
    return [float(q) for q in qs] + [None]
