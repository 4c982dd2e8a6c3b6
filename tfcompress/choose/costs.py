"""Exact parameter and multiply-accumulate counts of a model under per-unit pruning ratios, without the model.

A sensitivity report must let `tfc.allocate` count, for any candidate ratios, exactly what the pruned
model will have, also after being saved and loaded as JSON. So the counts are reduced here to small
formulas stored in the report:

* weight granularity: unit u (a layer) keeps `n_u - round(r_u * n_u)` of its `n_u` prunable weights, and
  each kept weight is used `per_weight_u` times per sample (the output positions of a convolution, 1 for
  Dense). Params and MACs are the sums over the scanned layers (what magnitude pruning can remove).
* channel granularity: the whole model's `params` and `macs` (`tfcompress.analysis`) as a polynomial
  of degree two in the number of channels removed from each group (a Conv2D's MACs are the product of its
  input and output widths; a Dense after Flatten reads `positions x channels` rows). The coefficients are
  read off each layer by finite differences on the layer-kind table's own `cut` and `macs` functions, so
  the polynomial is exact: `tfc.analysis.params(tfc.prune_channels(model, ratios))` equals it.

Counts of removed channels follow `tfcompress.pruning.channel_plan.kept_count` and the fixed channels
(model inputs and outputs) that `choose` never removes.
"""
import itertools

import numpy as np

from tfcompress._tf import tf
from tfcompress.analysis.cost import layer_macs, macs, params
from tfcompress.graph import kind_of
from tfcompress.pruning.channel_plan import kept_count

METRICS = ("params", "macs")


def weight_units(model, names, prunable_weights):
    """{layer name: {"size": prunable weights, "per_weight": uses of each weight per sample}}."""
    per_layer = layer_macs(model)
    out = {}
    for name in names:
        n = int(sum(int(np.prod(w.shape)) for w in prunable_weights(model.get_layer(name))))
        used = per_layer.get(name, n)
        out[name] = {"size": n, "per_weight": used / n if n else 0.0}
    return out


def weight_cost(units, ratios, metric):
    """Kept params or MACs of the scanned layers when layer u is magnitude-pruned at `ratios[u]`."""
    total = 0.0
    for key, u in units.items():
        kept = u["size"] - int(round(float(ratios.get(key, 0.0)) * u["size"]))
        total += kept * (u["per_weight"] if metric == "macs" else 1)
    return int(round(total))


# ---------------------------------------------------------------- channels


def _layer_counts(graph, name, removed):
    """(params, macs) of one layer of the graph with the `removed` classes gone."""
    layer = graph.layers[name]
    kind = kind_of(layer)
    ins = [~np.isin(graph.roots(k), removed) for k in graph.inputs[name]]
    out = ~np.isin(graph.roots(graph.output[name]), removed)
    weights = layer.get_weights()
    n_params = sum(int(w.size) for w in kind.cut_weights(layer, weights, ins, out)) if weights else 0
    n_macs = 0
    if kind.macs is not None and ins:
        in_shape = list(_shape(layer.input))
        out_shape = list(_shape(layer.output))
        in_shape[-1], out_shape[-1] = int(ins[0].sum()), int(out.sum())
        n_macs = int(kind.macs(layer, in_shape, out_shape))
    return np.array([n_params, n_macs], dtype=np.float64)


def _shape(tensor):
    return tf.nest.flatten(tensor)[0].shape


def channel_polynomial(model, graph, units):
    """The params and MACs polynomial of a model over its prunable groups.

    Args:
      model: the functional model the graph was built from.
      graph: its `ChannelGraph`.
      units: `{key: Group}`, the groups to vary.

    Returns:
      A JSON-ready dict: `const` (params, MACs of the whole model), `linear` / `square` `{key: [p, m]}` and
      `pairs` `[[key, key, p, m]]`: counts = const - sum(linear * d) + sum(square * d^2) + sum(pair * d d'),
      `d` the channels removed from each group.
    """
    removable = {k: [c for c in g.classes if c not in g.fixed] for k, g in units.items()}
    of_class = {c: k for k, cs in removable.items() for c in cs}
    linear, square, pairs = {}, {}, {}
    for name in graph.order:
        if graph.roles.get(name) in (None, "input") or kind_of(graph.layers[name]) is None:
            continue
        keys = []
        for t in graph.inputs[name] + [graph.output[name]]:
            for c in set(graph.roots(t).tolist()):
                if c in of_class and of_class[c] not in keys:
                    keys.append(of_class[c])
        if not keys:
            continue

        def counts(d):
            removed = [c for k, n in d.items() for c in removable[k][len(removable[k]) - n:]]
            return _layer_counts(graph, name, np.array(sorted(removed), dtype=np.int64))

        base = counts({})
        for k in keys:
            one = counts({k: 1}) - base
            two = counts({k: 2}) - base if len(removable[k]) >= 2 and units[k].size >= 3 else 2 * one
            sq = (two - 2 * one) / 2
            linear[k] = linear.get(k, 0) - (one - sq)
            square[k] = square.get(k, 0) + sq
        for a, b in itertools.combinations(keys, 2):
            both = counts({a: 1, b: 1}) - counts({a: 1}) - counts({b: 1}) + base
            if both.any():
                pairs[(a, b)] = pairs.get((a, b), 0) + both
    return {"const": [params(model), macs(model)],
            "linear": {k: [float(x) for x in v] for k, v in linear.items()},
            "square": {k: [float(x) for x in v] for k, v in square.items() if np.any(v)},
            "pairs": [[a, b, float(v[0]), float(v[1])] for (a, b), v in pairs.items()]}


def removed_counts(units, ratios, round_to=None):
    """{key: channels removed} at `ratios` as `prune_channels` removes them (fixed channels stay)."""
    out = {}
    for key, u in units.items():
        if key not in ratios:
            out[key] = 0
            continue
        keep = max(kept_count(u["size"], float(ratios[key]), round_to), u.get("fixed", 0))
        out[key] = u["size"] - keep
    return out


def channel_cost(poly, removed, metric):
    """Params or MACs of the model with `removed[key]` channels gone from each group (`channel_polynomial`)."""
    i = METRICS.index(metric)
    total = float(poly["const"][i])
    for k, v in poly["linear"].items():
        total -= v[i] * removed.get(k, 0)
    for k, v in poly["square"].items():
        total += v[i] * removed.get(k, 0) ** 2
    for a, b, p, m in poly["pairs"]:
        total += (p, m)[i] * removed.get(a, 0) * removed.get(b, 0)
    return int(round(total))

