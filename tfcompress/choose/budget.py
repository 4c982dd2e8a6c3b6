"""`tfc.allocate`: per-layer (or per-group) pruning ratios from a sensitivity report, under a global budget.

Each unit's curve becomes a drop function `drop(r)` (the metric lost when the unit alone loses the
fraction `r`; piecewise linear between the measured levels, made non-decreasing, extended past the last
level with its slope). Candidate ratios per unit are those the pruning can realise: for channels every
kept width that is a multiple of `round_to` (and the ratio returned is exact, `(n - kept) / n`, so
`tfc.prune_channels` keeps that width with or without `round_to`); for weights a 0.25 % grid.

Two ways to choose, both bisecting one number until the exact cost of the whole allocation meets the
budget, then filling what is left of the budget one step at a time where it buys back the most metric
per unit of cost (so the result lands just under the budget):

* `method="size"` (default): each unit takes the ratio maximising `lambda * saved(r) - drop(r)`, `saved`
  being the cost the unit's cut saves; a large layer that cuts cheaply is cut hard, a small sensitive one
  is left alone. The multiplier `lambda` is bisected. The drop is taken convex here (its slope never
  falls): a curve that has reached chance is flat, and would otherwise invite cutting that unit to the
  bone, where the units no longer act alone.
* `method="greedy"`: AIMET's greedy selection of compression ratios: one target drop `t` for every
  unit, each unit taking its largest ratio with `drop(r) <= t`; `t` is bisected. Sizes only enter
  through the total cost.

`threshold=t` instead of a budget: the greedy rule at that drop, no budget.

Latency models (`metric="latency"`): any object with

    predict_ms(plan) -> float

where `plan` is `{group key: channels kept}` for every group of the report (the key of a group is the
name of its first producer layer; `report.units[key]` has its `"producers"` and full `"size"`). The
budget is then a fraction of `predict_ms` of the unpruned plan. `allocate` calls it for the unpruned plan,
for each group alone at each candidate width and for each candidate allocation of the bisection, so it
should be cheap (a lookup table of measured latencies). `ModelLatency(model, predictor)` turns a predictor
of whole models (`predict(model) -> ms`, such as `tfc.LatencyTable`) into one, building each plan's model
(cached). Channel granularity only: zeroed weights do not make a dense kernel faster.
"""
import numpy as np

from tfcompress.choose import costs
from tfcompress.choose.report import SensitivityReport
from tfcompress.errors import InputError

METRICS = ("params", "macs", "latency")
METHODS = ("size", "greedy")
WEIGHT_GRID = 0.0025


class Allocation(dict):
    """`{unit key: ratio}`, plus what it costs: `cost` (exact count, or predicted ms), `total` (the
    unpruned model's), `budget` (the fraction asked for, or None with a threshold) and `metric`."""

    def __init__(self, ratios, metric, cost, total, budget):
        super().__init__(ratios)
        self.metric, self.cost, self.total, self.budget = metric, cost, total, budget

    @property
    def fraction(self):
        return self.cost / self.total if self.total else 1.0


class ModelLatency:
    """The latency protocol over a predictor of whole models: each plan is built with `tfc.prune_channels`.

    Example: `tfc.allocate(report, 0.5, metric=ModelLatency(model, tfc.LatencyTable("local")))`.

    Args:
      model: the model the report was scanned on.
      predictor: an object with `predict(model) -> ms` (`tfc.LatencyTable`), or a function `model -> ms`.
      criterion: the criterion that will prune the model (the widths, not the channels, set the latency).
        Defaults to `"l1"`.
    """

    def __init__(self, model, predictor, criterion="l1"):
        from tfcompress.graph import functional
        from tfcompress.graph.keras3 import tf_keras_model
        from tfcompress.pruning.graph import ChannelGraph
        self.model, self.criterion = functional(tf_keras_model(model)), criterion
        self.predict = getattr(predictor, "predict", predictor)
        self.sizes = {g.producers[0]: g.size for g in ChannelGraph(self.model).groups if g.producers}
        self._cache = {}

    def predict_ms(self, plan):
        import warnings

        from tfcompress.pruning.channels import plan_and_prune
        key = tuple(sorted(plan.items()))
        if key not in self._cache:
            ratios = {k: (self.sizes[k] - kept) / self.sizes[k] for k, kept in plan.items() if kept < self.sizes[k]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                small = plan_and_prune(self.model, ratios, self.criterion).model if ratios else self.model
            self._cache[key] = float(self.predict(small))
        return self._cache[key]


def _drop_function(report, key, convex=False):
    xs, ys = report.curve(key)
    ys = np.maximum.accumulate(np.asarray(ys, np.float64))
    xs = np.asarray(xs, np.float64)
    if convex:  # slopes never fall: past the point where a unit alone reaches chance, cuts are not free
        slopes = np.maximum.accumulate(np.diff(ys) / np.maximum(np.diff(xs), 1e-9))
        ys = np.concatenate([[0.0], np.cumsum(slopes * np.diff(xs))])
    slope = max((ys[-1] - ys[-2]) / max(xs[-1] - xs[-2], 1e-9), (ys[-1] - ys[0]) / max(xs[-1], 1e-9), 0.0)

    def drop(r):
        r = np.asarray(r, np.float64)
        return np.where(r <= xs[-1], np.interp(r, xs, ys), ys[-1] + slope * (r - xs[-1]))
    return drop


class _Costs:
    """The exact total cost of an allocation in one metric, for weight or channel reports."""

    def __init__(self, report, metric, latency):
        self.report, self.metric, self.latency = report, metric, latency
        self.units = report.units
        if metric == "latency":
            if report.granularity != "channel":
                raise InputError("metric 'latency' needs a channel-granularity report: zeroed weights do not "
                                 "make a dense kernel faster")
            if latency is None or not callable(getattr(latency, "predict_ms", None)):
                raise InputError("metric 'latency' needs latency=... an object with predict_ms(plan) -> float "
                                 f"(see tfcompress.choose.budget). Got: {type(latency).__name__}")
        elif report.granularity == "channel" and not report.cost:
            raise InputError("this report holds no channel cost model; rerun the scan")
        self.total = self(dict.fromkeys(self.units, 0.0))

    def __call__(self, ratios):
        if self.report.granularity == "weight":
            return costs.weight_cost(self.units, ratios, self.metric)
        removed = costs.removed_counts(self.units, ratios)
        if self.metric == "latency":
            return float(self.latency.predict_ms({k: u["size"] - removed[k] for k, u in self.units.items()}))
        return costs.channel_cost(self.report.cost, removed, self.metric)


def _grid(report, key, round_to, max_ratio):
    u = report.units[key]
    n = u["size"]
    if report.granularity == "weight":
        steps = np.arange(0.0, max_ratio + 1e-12, WEIGHT_GRID)
        return np.unique(np.round(np.concatenate([steps, [r for r in u["ratios"] if r <= max_ratio]]), 6))
    from tfcompress.pruning.channel_plan import kept_count
    kept = {n} | {max(kept_count(n, (n - k) / n, round_to), u.get("fixed", 0), 1) for k in range(1, n + 1)}
    return np.array(sorted((n - k) / n for k in kept if (n - k) / n <= max_ratio + 1e-12))


def _check(budget, threshold, max_ratio, round_to, metric, method):
    if (budget is None) == (threshold is None):
        raise InputError("give a budget (the fraction of the metric kept) or a threshold (the largest metric "
                         "drop per unit), not both or neither")
    if budget is not None and (not isinstance(budget, (int, float)) or isinstance(budget, bool)
                               or not 0.0 < budget <= 1.0):
        raise InputError(f"budget must be a fraction in (0, 1] of the metric kept. Got: {budget!r}")
    if threshold is not None and (not isinstance(threshold, (int, float)) or threshold < 0):
        raise InputError(f"threshold must be a non-negative metric drop. Got: {threshold!r}")
    if not isinstance(max_ratio, (int, float)) or not 0.0 < max_ratio < 1.0:
        raise InputError(f"max_ratio must be in (0, 1). Got: {max_ratio!r}")
    if round_to is not None and (not isinstance(round_to, int) or isinstance(round_to, bool) or round_to < 1):
        raise InputError(f"round_to must be a positive integer or None. Got: {round_to!r}")
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}. Got: {method!r}")
    if not (metric in METRICS or callable(getattr(metric, "predict_ms", None))):
        raise InputError(f"metric must be one of {', '.join(METRICS)} or a latency model. Got: {metric!r}")


def allocate(report, budget=None, metric="params", threshold=None, round_to=8, max_ratio=0.95, method="size",
             latency=None):
    """Per-unit pruning ratios that keep `budget` of the model's params, MACs or latency.

    Example:

    ```python
    report = tfc.sensitivity_scan(model, (x_val, y_val))
    ratios = tfc.allocate(report, 0.10)                  # keep 10 % of the scanned layers' weights
    pruned = tfc.prune(model, tfc.PolynomialDecay(0.9, end_step=2000), layers=ratios)
    report = tfc.sensitivity_scan(model, (x_val, y_val), granularity="channel")
    small = tfc.prune_channels(model, tfc.allocate(report, 0.25, metric="macs"))
    ```

    Args:
      report: a `SensitivityReport` (or the path of one saved as JSON).
      budget: the fraction of the metric to keep, in (0, 1]: of the scanned layers' prunable weights (or
        their MACs) for a weight report, of the whole model's params / MACs / predicted latency for a channel
        report. The result never exceeds it. Defaults to `None` (then `threshold` is needed).
      metric: `"params"`, `"macs"`, `"latency"` (with `latency=`), or a latency model itself. Defaults to
        `"params"`.
      threshold: instead of a budget, the largest metric drop a unit may cost (e.g. 0.01 for one point of
        accuracy); every unit takes its largest ratio within it. Defaults to `None`.
      round_to: channel reports: kept widths a multiple of this (8 suits XNNPACK). Defaults to `8`.
      max_ratio: no unit loses more than this fraction. Defaults to `0.95`.
      method: `"size"` (marginal metric drop per cost saved) or `"greedy"` (AIMET's equal-drop target).
        Defaults to `"size"`.
      latency: a latency model (see the module doc) for `metric="latency"`. Defaults to `None`.

    Returns:
      An `Allocation`: `{layer name or group key: ratio}`, ready for `tfc.prune(model, layers=...)` or
      `tfc.prune_channels(model, ...)`; `.cost`, `.total`, `.fraction` tell what it keeps.

    Raises:
      InputError: a bad budget, threshold, metric or method, or a budget the max_ratio cannot reach.
    """
    if isinstance(report, str):
        report = SensitivityReport.load(report)
    if not isinstance(metric, str):
        metric, latency = "latency", metric
    _check(budget, threshold, max_ratio, round_to, metric, method)
    if not report.complete:
        raise InputError("the sensitivity report is unfinished; rerun the scan with the same path to complete it")
    total_cost = _Costs(report, metric, latency)
    keys = list(report.units)
    grids = {k: _grid(report, k, round_to if report.granularity == "channel" else None, max_ratio) for k in keys}
    drops = {k: _drop_function(report, k, convex=method == "size")(grids[k]) for k in keys}

    def finish(ratios):
        ratios = {k: float(v) for k, v in ratios.items()}
        return Allocation(ratios, metric, total_cost(ratios), total_cost.total, budget)

    if threshold is not None:
        return finish({k: grids[k][np.nonzero(drops[k] <= threshold + 1e-12)[0].max()] for k in keys})
    limit = budget * total_cost.total
    floor = {k: grids[k][-1] for k in keys}
    if total_cost(floor) > limit + 1e-9:
        raise InputError(f"budget {budget:g} of {metric} is out of reach: every unit at its largest ratio "
                         f"(max_ratio={max_ratio:g}, round_to={round_to}) keeps "
                         f"{total_cost(floor) / total_cost.total:.4f}")
    if method == "size":
        saved = {k: np.array([total_cost.total - total_cost({k: r}) for r in grids[k]]) / total_cost.total
                 for k in keys}

        def pick(p):
            lam = 10.0 ** p
            return {k: grids[k][int(np.argmax(lam * saved[k] - drops[k] + 1e-12 * saved[k]))] for k in keys}
        lo, hi = -9.0, 9.0
    else:
        def pick(t):
            return {k: grids[k][np.nonzero(drops[k] <= t + 1e-12)[0].max()] for k in keys}
        lo, hi = 0.0, float(max(d.max() for d in drops.values())) + 1.0
    if total_cost(pick(hi)) > limit:
        hi_alloc = floor
    else:
        for _ in range(60):
            mid = (lo + hi) / 2
            if total_cost(pick(mid)) <= limit:
                hi = mid
            else:
                lo = mid
        hi_alloc = pick(hi)
    return finish(_fill(hi_alloc, grids, drops, total_cost, limit))


def _fill(ratios, grids, drops, total_cost, limit):
    """Steps units back to less pruning while the budget allows, best metric regained per cost first."""
    ratios = dict(ratios)
    index = {k: int(np.searchsorted(grids[k], ratios[k] - 1e-12)) for k in ratios}
    current = total_cost(ratios)
    for _ in range(100000):
        best = None
        for k, i in index.items():
            if i == 0:
                continue
            trial = dict(ratios, **{k: grids[k][i - 1]})
            cost = total_cost(trial)
            added = cost - current
            if cost > limit or added < 0:
                continue
            gain = drops[k][i] - drops[k][i - 1]
            score = (gain / added if added > 0 else np.inf, -added)
            if best is None or score > best[0]:
                best = (score, k, cost)
        if best is None:
            break
        _, k, current = best
        index[k] -= 1
        ratios[k] = grids[k][index[k]]
    return _exchange(ratios, index, grids, total_cost, current, limit)


def _exchange(ratios, index, grids, total_cost, current, limit, close=0.995):
    """Where single steps no longer fit but the budget is not yet met to `close`: one unit a step back,
    another a step on, the pair that lands nearest under the budget, until no pair gets nearer."""
    for _ in range(1000):
        if current >= close * limit:
            break
        best = None
        for k in index:
            if index[k] == 0:
                continue
            for j in index:
                if j == k or index[j] + 1 >= len(grids[j]):
                    continue
                trial = dict(ratios, **{k: grids[k][index[k] - 1], j: grids[j][index[j] + 1]})
                cost = total_cost(trial)
                if current < cost <= limit and (best is None or cost > best[0]):
                    best = (cost, k, j)
        if best is None:
            break
        current, k, j = best
        index[k] -= 1
        index[j] += 1
        ratios[k], ratios[j] = grids[k][index[k]], grids[j][index[j]]
    return ratios
