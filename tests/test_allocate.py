"""tfc.allocate: budgets met on the pruned models themselves (exact counts), threshold and size rules, the
latency protocol, and the result going straight into tfc.prune / tfc.prune_channels."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.analysis import macs, params
from tfcompress.choose.budget import ModelLatency
from tfcompress.choose.report import SensitivityReport
from tfcompress.choose.scan import _ChannelScan
from test_clustering import _mlp
from test_pruning_graph import toy_resnet

L = keras.layers
LEVELS = [0.25, 0.5, 0.75, 0.9]


def _curve(sensitivity):
    """Scores at LEVELS for a unit losing `sensitivity` of accuracy per unit of ratio, convexly."""
    return [round(0.95 - sensitivity * r ** 2, 6) for r in LEVELS]


def weight_report(sizes, sens, per_weight=None):
    units = {k: {"size": n, "per_weight": (per_weight or {}).get(k, 1.0), "ratios": LEVELS, "scores": _curve(sens[k])}
             for k, n in sizes.items()}
    return SensitivityReport("weight", 0.95, LEVELS, units)


@pytest.fixture(scope="module")
def toy_channels():
    """A channel report of the toy ResNet (concat, Flatten, depthwise, residuals) with made-up curves and
    the real cost polynomial."""
    model = toy_resnet((8, 8, 1))
    scan = _ChannelScan(model, None, "l1", None, None, 0)
    units = scan.units()
    for i, u in enumerate(units.values()):
        u["ratios"] = [round(np.floor(r * u["size"]) / u["size"], 6) for r in LEVELS]
        u["scores"] = _curve(0.1 + 0.2 * (i % 3))
    return model, SensitivityReport("channel", 0.95, LEVELS, units, cost=scan.cost())


@pytest.mark.parametrize("metric,budget,round_to", [("params", 0.3, None), ("params", 0.5, 8),
                                                    ("macs", 0.25, None), ("macs", 0.6, 8)])
def test_channel_budget_met_exactly_on_the_pruned_model(toy_channels, metric, budget, round_to):
    model, report = toy_channels
    alloc = tfc.allocate(report, budget, metric=metric, round_to=round_to)
    small = tfc.prune_channels(model, dict(alloc))
    count = (params if metric == "params" else macs)(small)
    assert count == alloc.cost                                    # the prediction is the exact count
    assert count <= budget * alloc.total
    if round_to is None:
        assert count >= 0.99 * budget * alloc.total               # within 1 % of the budget
    if round_to:
        kept = {k: _width(small, k) for k in report.units}
        assert all(v % round_to == 0 or v == _width(model, k) for k, v in kept.items())
        assert count == (params if metric == "params" else macs)(tfc.prune_channels(model, dict(alloc),
                                                                                    round_to=round_to))


def _width(model, name):
    layer = model.get_layer(name)
    return layer.units if isinstance(layer, L.Dense) else layer.filters


def test_weight_budget_plugs_into_prune_and_is_met(digits):
    model = _mlp()
    report = weight_report({"d1": 20 * 32, "d2": 32 * 16, "out": 16 * 4}, {"d1": 0.2, "d2": 0.3, "out": 0.5})
    alloc = tfc.allocate(report, 0.2)
    total = 20 * 32 + 32 * 16 + 16 * 4
    assert alloc.total == total and 0.99 * 0.2 * total <= alloc.cost <= 0.2 * total
    pruned = tfc.prune(model, dict(alloc))                        # {layer: sparsity} in place of a schedule
    pruned.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(8, 20)).astype(np.float32)
    pruned.fit(x, np.zeros((8, 4)), epochs=1, verbose=0, callbacks=[tfc.CompressionCallback()])
    plain = tfc.strip(pruned)
    kept = sum(int(np.count_nonzero(plain.get_layer(n).kernel.numpy())) for n in ("d1", "d2", "out"))
    assert kept == alloc.cost
    # a schedule template takes each layer's number as its target
    pruned = tfc.prune(model, tfc.PolynomialDecay(0.5, end_step=10), layers=dict(alloc))
    targets = {l.layer.name: l.schedule.target for l in pruned.layers if hasattr(l, "schedule")}
    assert targets == pytest.approx(dict(alloc)) and all(isinstance(l.schedule, tfc.PolynomialDecay)
                                                         for l in pruned.layers if hasattr(l, "schedule"))


def test_macs_weigh_by_uses_per_weight():
    report = weight_report({"conv": 1000, "fc": 1000}, {"conv": 0.2, "fc": 0.2}, per_weight={"conv": 64.0})
    by_params = tfc.allocate(report, 0.3, metric="params")
    by_macs = tfc.allocate(report, 0.3, metric="macs")
    # same curves, same sizes: both on the same linear piece of the curve (any split there drops the same)
    assert all(0.5 <= by_params[k] <= 0.75 for k in by_params)
    assert by_macs["conv"] > by_macs["fc"] + 0.1                           # conv's weights cost 64x more
    assert by_macs.cost <= 0.3 * by_macs.total and by_macs.fraction >= 0.297


def test_size_method_weighs_size_greedy_equalizes_drop():
    report = weight_report({"large": 10000, "tiny": 100}, {"large": 0.3, "tiny": 0.3})
    size = tfc.allocate(report, 0.5, method="size")
    greedy = tfc.allocate(report, 0.5, method="greedy")
    assert size["large"] > size["tiny"] + 0.1       # cutting the tiny layer saves almost nothing
    assert greedy["tiny"] > 0.3                      # the same drop target for both layers
    drops = {k: 0.3 * v ** 2 for k, v in size.items()}
    assert sum(drops.values()) <= sum(0.3 * v ** 2 for v in greedy.values()) + 1e-9


def test_threshold_takes_each_units_largest_ratio_within_it():
    report = weight_report({"a": 1000, "b": 1000}, {"a": 0.1, "b": 1.0})
    alloc = tfc.allocate(report, threshold=0.01)
    # drop a(r) = 0.1 r^2 <= 0.01 up to r ~ 0.316; b(r) = r^2 up to 0.1 (linear between the levels)
    assert 0.25 <= alloc["a"] <= 0.32 and alloc["b"] <= 0.1 and alloc.budget is None


class LinearLatency:
    """A simple latency model: a fixed overhead plus a cost per kept channel of each group."""

    def __init__(self, per_channel):
        self.per_channel, self.plans = per_channel, []

    def predict_ms(self, plan):
        self.plans.append(dict(plan))
        return 0.5 + sum(self.per_channel[k] * kept for k, kept in plan.items())


def test_latency_model_protocol(toy_channels):
    model, report = toy_channels
    lat = LinearLatency({k: 0.01 * (i + 1) for i, k in enumerate(report.units)})
    alloc = tfc.allocate(report, 0.6, metric=lat, round_to=None)
    assert alloc.cost <= 0.6 * alloc.total and alloc.fraction >= 0.6 * 0.99
    assert alloc.total == pytest.approx(lat.predict_ms({k: u["size"] for k, u in report.units.items()}))
    assert all(set(p) == set(report.units) and all(isinstance(v, int) for v in p.values()) for p in lat.plans)
    same = tfc.allocate(report, 0.6, metric="latency", latency=lat, round_to=None)
    assert dict(same) == dict(alloc)
    small = tfc.prune_channels(model, dict(alloc))
    widths = {k: _width(small, k) for k in report.units}
    assert lat.predict_ms(widths) == pytest.approx(alloc.cost)


def test_bad_input(toy_channels):
    _, report = toy_channels
    w = weight_report({"a": 100}, {"a": 0.1})
    for kwargs, message in [({}, "budget .*or a threshold"), ({"budget": 0.5, "threshold": 0.1}, "not both"),
                            ({"budget": 1.5}, "budget"), ({"budget": 0.5, "method": "amc"}, "method"),
                            ({"budget": 0.5, "metric": "flops"}, "metric"), ({"budget": 0.5, "max_ratio": 1}, "max_ratio"),
                            ({"budget": 0.01}, "out of reach"), ({"budget": 0.5, "metric": "latency"}, "latency")]:
        with pytest.raises(tfc.InputError, match=message):
            tfc.allocate(w, **kwargs)
    with pytest.raises(tfc.InputError, match="predict_ms"):
        tfc.allocate(report, 0.5, metric="latency")
    unfinished = SensitivityReport("weight", 0.9, LEVELS, {"a": {"size": 10, "per_weight": 1.0, "ratios": [],
                                                                 "scores": []}})
    with pytest.raises(tfc.InputError, match="unfinished"):
        tfc.allocate(unfinished, 0.5)


def test_model_latency_adapts_a_whole_model_predictor(toy_channels):
    model, report = toy_channels
    one = SensitivityReport("channel", report.baseline, LEVELS, {"b2a_conv": report.units["b2a_conv"]},
                            cost=report.cost)
    lat = ModelLatency(model, lambda m: macs(m) / 1e6)     # "milliseconds" proportional to the MACs
    alloc = tfc.allocate(one, 0.975, metric=lat, round_to=8, method="greedy")
    small = tfc.prune_channels(model, dict(alloc))
    assert small.get_layer("b2a_conv").filters == 8              # 8 of 24 left: 96.6 % of the MACs
    assert alloc.cost == pytest.approx(macs(small) / 1e6) and alloc.total == pytest.approx(macs(model) / 1e6)
    assert len(lat._cache) <= 3                                  # one model built per width tried


def test_a_curve_at_chance_does_not_make_further_cuts_free():
    units = {"sat": {"size": 1000, "per_weight": 1.0, "ratios": LEVELS, "scores": [0.6, 0.1, 0.1, 0.1]},
             "mild": {"size": 1000, "per_weight": 1.0, "ratios": LEVELS, "scores": _curve(0.8)}}
    alloc = tfc.allocate(SensitivityReport("weight", 0.95, LEVELS, units), 0.5)
    # read flat, cutting "sat" from 0.5 to 0.95 would look free and leave "mild" almost whole
    assert alloc["sat"] < 0.5 < alloc["mild"] and alloc.fraction >= 0.495
