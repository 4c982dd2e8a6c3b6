"""Structured channel pruning that physically shrinks functional tf-keras models.

Three parts, as in Torch-Pruning: `graph.py` finds which channels are coupled, `cutters.py` knows how to
cut each layer kind, `criteria.py` decides what to cut. This module joins them: `prune_channels` picks
the channels of every group, rebuilds the model from its config with fewer filters / units, and copies
the kept weights. With a schedule instead of a number it returns a model with channel masks that
`CompressionCallback` updates inside `fit` and `tfc.strip` removes physically (`channel_masks.py`).

Example:

```python
small = tfc.prune_channels(model, ratio=0.5, criterion="l1", round_to=8)
print(tfc.channel_groups(model))          # which layers are coupled
tfc.analysis.flops(small) / tfc.analysis.flops(model)
```
"""
import copy
import dataclasses
import math
import warnings

import numpy as np

from tfcompress._tf import check_model, keras
from tfcompress.errors import InputError
from tfcompress.pruning import channel_masks as _channel_masks  # registers the fit driver and stripper
from tfcompress.pruning import compensation as _compensation
from tfcompress.pruning import criteria as _criteria
from tfcompress.pruning import regularizers as _regularizers
from tfcompress.pruning.cutters import cut_vectors, cutter_for, register_layer  # noqa: F401 (re-export)
from tfcompress.pruning.graph import ChannelGraph
from tfcompress.schedules import Schedule


# Classes a saved model may hold; `tfcompress.saving.load_model` reads this.
CUSTOM_OBJECTS = {"ChannelMask": _channel_masks.ChannelMask, "tfcompress>ChannelMask": _channel_masks.ChannelMask,
                  "BNL1": _regularizers.BNL1, "tfcompress>BNL1": _regularizers.BNL1,
                  "GroupLasso": _regularizers.GroupLasso, "tfcompress>GroupLasso": _regularizers.GroupLasso}


class ChannelGroups(list):
    """The groups of a model; `str()` prints every group's details."""

    def details(self):
        return "\n".join(g.details() for g in self)

    def __str__(self):
        return self.details()


def functional(model):
    """A Sequential model as a functional model over the same layers; other models unchanged."""
    if isinstance(model, keras.Sequential):
        if not model.built or not getattr(model, "_is_graph_network", False):
            raise InputError(f"Sequential model {model.name!r} has no known input shape; build it with "
                             "keras.Input(...) first")
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def channel_groups(model):
    """Which layers' channels are coupled and must be pruned together.

    Args:
      model: a functional or Sequential tf-keras model.

    Returns:
      A `ChannelGroups` list of `graph.Group`; `print()` it for a readable account (producers, BN and
      activations that follow, merges, consumers with their channel ranges, and why a group is fixed or
      blocked).
    """
    check_model(model)
    return ChannelGroups(ChannelGraph(functional(model)).groups)


def _check_ratio(r, what="ratio"):
    if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0.0 <= r < 1.0:
        raise InputError(f"{what} must be a number in [0, 1) (the fraction of channels to remove). Got: {r!r}")
    return float(r)


def group_ratios(graph, ratio, skip=None):
    """{group index: ratio or schedule} from a number / schedule or a {layer name: ratio} dict."""
    skip = set(skip or ())
    unknown = sorted(skip - set(graph.layers))
    if unknown:
        raise InputError(f"skip names layers the model does not have: {', '.join(unknown)}")
    skipped = {g.index for name in skip for g in graph.groups_of_layer(name)}
    if isinstance(ratio, dict):
        missing = sorted(set(ratio) - set(graph.layers))
        if missing:
            raise InputError(f"ratio names layers the model does not have: {', '.join(missing)}")
        out = {}
        for name, r in ratio.items():
            if not isinstance(r, Schedule):
                r = _check_ratio(r, f"ratio of {name!r}")
            for g in graph.groups_of_layer(name):
                prev = out.get(g.index)
                if prev is not None and prev != r:
                    raise InputError(f"layers coupled in group {g.index} ({', '.join(g.producers)}) got "
                                     f"different ratios ({prev!r} and {r!r}); give one of them only")
                out[g.index] = r
    else:
        if not isinstance(ratio, Schedule):
            ratio = _check_ratio(ratio)
        out = {g.index: ratio for g in graph.groups}
    return {i: r for i, r in out.items() if i not in skipped}


def kept_count(n, ratio, round_to=None):
    """Channels kept out of n at `ratio`, rounded to a multiple of `round_to` (nearest, at least one)."""
    keep = n - int(math.floor(ratio * n + 1e-9))
    if round_to:
        keep = round_to * max(1, int(math.floor(keep / round_to + 0.5)))
    return max(1, min(n, keep))


def _global_counts(graph, ratios, scored, min_keep=0.1):
    """Channels to remove per group when ranking all groups together: as many in total as the uniform
    ratios would remove, taken where the scores are lowest; every group keeps `min_keep` of its channels."""
    budget, pool, limit = 0, [], {}
    for g in graph.groups:
        if g.index not in scored:
            continue
        scores, candidates = scored[g.index]
        budget += g.size - kept_count(g.size, ratios[g.index])
        limit[g.index] = min(len(candidates), g.size - max(1, math.ceil(min_keep * g.size)))
        pool += [(scores[i], g.index, i) for i in candidates]
    counts = dict.fromkeys(limit, 0)
    for _, gi, _ in sorted(pool, key=lambda t: (t[0], t[1], t[2])):
        if budget <= 0:
            break
        if counts[gi] < limit[gi]:
            counts[gi] += 1
            budget -= 1
    return counts


def choose(graph, ratios, importance, round_to=None, already=(), global_ranking=False):
    """Class ids to remove: for each group, the lowest-scored classes down to its kept count.

    With `global_ranking`, the groups compete: the same total number of channels is removed, wherever the
    criterion scores lowest (every group keeps at least 10 %). `already` holds classes removed before (masks
    during training); they stay removed.
    """
    removed = set()
    already = set(already)
    scored = {}
    for g in graph.groups:
        if ratios.get(g.index) is None or not g.prunable:
            continue
        candidates = [i for i, c in enumerate(g.classes) if c not in g.fixed]
        scores = np.where(np.isin(np.array(g.classes), list(already)), -np.inf, importance(g))
        scored[g.index] = (scores, candidates)
    counts = _global_counts(graph, ratios, scored) if global_ranking else {}
    for g in graph.groups:
        if g.index not in scored:
            continue
        scores, candidates = scored[g.index]
        if global_ranking:
            keep = kept_count(g.size, counts[g.index] / g.size, round_to)
        else:
            keep = kept_count(g.size, ratios[g.index], round_to)
        forced = [i for i in candidates if g.classes[i] in already]
        n_remove = max(min(g.size - keep, len(candidates)), len(forced))
        if n_remove > 0:
            removed.update(g.classes[i] for i in importance.select(g, n_remove, candidates, scores))
    return removed


def blocked_notes(graph, ratios=None):
    """One line per group that pruning was asked for but cannot touch, naming the layer to blame."""
    notes = []
    for g in graph.groups:
        if g.producers and g.blocked_by and (ratios is None or g.index in ratios):
            notes.append(f"group {g.index} ({', '.join(g.producers)}) not pruned: {g.blocked_by[0]}")
    return notes


def _rewire(config, drop):
    """Removes single-input layers named in `drop` from a functional config, joining their in/out edges."""
    by_name = {lc["name"]: lc for lc in config["layers"]}
    for name in drop:
        src = by_name[name]["inbound_nodes"][0][0]
        for lc in config["layers"]:
            for node in lc.get("inbound_nodes", []):
                for i, edge in enumerate(node):
                    if edge[0] == name:
                        node[i] = [src[0], src[1], src[2], edge[3] if len(edge) > 3 else {}]
    config["layers"] = [lc for lc in config["layers"] if lc["name"] not in drop]
    return config


def rebuild(graph, removed, merges=(), drop=(), custom_objects=None, shifts=None):
    """A new model without the `removed` classes; kept weights copied, merged rows and shifts added first.

    Args:
      graph: the `ChannelGraph` of the model.
      removed: class ids to remove.
      merges: (removed class, kept class) pairs whose consumer rows are summed before the cut.
      drop: names of pass-through layers to leave out of the new model (channel masks).
      custom_objects: extra classes for `from_config`. Defaults to `None`.
      shifts: `{layer name: (weight index, delta)}` added to the original weights
        (`compensation.mean_shifts`). Defaults to `None`.
    """
    model = graph.model
    keeps = graph.keep_masks(removed)
    config = copy.deepcopy(model.get_config())
    layer_cfgs = {lc["name"]: lc for lc in config["layers"]}
    weights = {}
    for name in graph.order:
        layer = graph.layers[name]
        lc = layer_cfgs[name]
        lc.pop("build_config", None)  # old shapes; the layer is rebuilt on its new inputs
        w = _compensation.apply_shifts(layer.get_weights(), shifts or {}, name)
        role = graph.roles[name]
        if role in (None, "input") or name in drop:
            weights[name] = w
            continue
        out_keep = keeps[graph.output[name]]
        in_keeps = [keeps[k] for k in graph.inputs[name]]
        if merges and role == "produce" and w and w[0].ndim >= 2:
            w = [w[0].copy()] + w[1:]
            roots = list(graph.roots(graph.inputs[name][0]))
            for j, i in merges:
                if j in roots and i in roots:
                    w[0][..., roots.index(i), :] += w[0][..., roots.index(j), :]
        cutter = cutter_for(layer)
        if out_keep.all() and all(k.all() for k in in_keeps):
            weights[name] = w
            continue
        weights[name] = (cutter.cut or cut_vectors)(layer, w, in_keeps, out_keep)
        if cutter.config:
            lc["config"] = cutter.config(lc["config"], out_keep)
    if drop:
        config = _rewire(config, set(drop))
    objects = {type(lay).__name__: type(lay) for lay in graph.layers.values()}
    objects.update(custom_objects or {})
    new = keras.Model.from_config(config, custom_objects=objects)
    for layer in new.layers:
        if layer.name in weights and weights[layer.name]:
            layer.set_weights(weights[layer.name])
    return new


@dataclasses.dataclass
class PruneResult:
    model: object
    removed: set
    notes: list


def residual_merges(graph):
    """Names of the layers that join tensors elementwise (Add, Subtract, Multiply, Average, Maximum): the
    residual streams are the groups of their outputs."""
    return [name for name in graph.order if graph.roles.get(name) == "merge"]


def _skip(graph, skip, keep_residual):
    return list(skip or ()) + (residual_merges(graph) if keep_residual else [])


def plan_and_prune(model, ratio=0.5, criterion="l1", data=None, round_to=None, skip=None, seed=0,
                   global_ranking=False, keep_residual=False, compensate=None):
    """`prune_channels` that also returns the removed class ids and the notes about blocked groups."""
    check_model(model)
    model = functional(model)
    if round_to is not None and (not isinstance(round_to, int) or isinstance(round_to, bool) or round_to < 1):
        raise InputError(f"round_to must be a positive integer or None. Got: {round_to!r}")
    graph = ChannelGraph(model)
    ratios = group_ratios(graph, ratio, _skip(graph, skip, keep_residual))
    importance = _criteria.get(criterion, model, graph, data, seed)
    removed = choose(graph, ratios, importance, round_to, global_ranking=global_ranking)
    notes = blocked_notes(graph, ratios)
    for note in notes:
        warnings.warn(note, stacklevel=3)
    shifts = None
    if compensate is not None:
        merged = {j for j, _ in importance.merges}  # their rows already live on in the kept neuron
        shifts = _compensation.mean_shifts(graph, removed - merged, compensate)
    return PruneResult(rebuild(graph, removed, importance.merges, shifts=shifts), removed, notes)


def prune_channels(model, ratio=0.5, criterion="l1", data=None, round_to=None, skip=None, seed=0,
                   global_ranking=False, keep_residual=False, compensate=None):
    """Removes whole channels (filters, units) and returns a smaller model with the kept weights.

    Channels coupled by residual adds, concatenations, depthwise convolutions, BN and Flatten are
    removed together (see `channel_groups`). The model's input channels and its output channels (the
    classes) are never removed. A group that reaches a layer the graph does not know is left whole and a
    warning names the layer; every other group is pruned.

    With a schedule (`tfc.PolynomialDecay(0.5, end_step=...)`, or `{layer: schedule}`) instead of a
    number, nothing is removed yet: the returned model masks channels progressively inside `fit`
    (pass `tfc.CompressionCallback()`), and `tfc.strip` then removes the masked channels physically.

    Args:
      model: a functional or Sequential tf-keras model (a Sequential one comes back functional).
      ratio: fraction of each group's channels to remove, in [0, 1); or `{layer name: ratio}` to prune
        only the groups of those layers; or a schedule / `{layer name: schedule}`. Defaults to `0.5`.
      criterion: `l1`, `l2`, `bn_gamma`, `apoz`, `taylor`, `random` or `merge` (see `criteria.py`).
        Defaults to `"l1"`.
      data: `x` or `(x, y)` for `apoz` and `taylor`. Defaults to `None`.
      round_to: keep a multiple of this many channels per group (8 suits XNNPACK). Defaults to `None`.
      skip: names of layers whose groups are left whole. Defaults to `None`.
      seed: seed of the `random` criterion. Defaults to `0`.
      global_ranking: rank channels across groups instead of removing `ratio` of each group: the same
        total number of channels goes, where the criterion scores lowest (each group keeps >= 10 %), as in
        network slimming's global threshold. Defaults to `False`.
      keep_residual: leave the residual streams (the groups joined by Add, Subtract, Multiply, Average or
        Maximum) whole and prune the channels inside the blocks. The usual choice for inverted-residual
        networks such as MobileNetV2: the streams are thin and feed every block, and the depthwise
        convolutions, whose cost follows the expansion channels, then shrink with the FLOPs, so the
        TFLite speed-up tracks the FLOP reduction (BENCHMARKS.md). Defaults to `False`.
      compensate: `x` or `(x, y)` (e.g. a few hundred training samples): fold the mean activation of each
        removed channel on it into the layers that read the channel (their bias, or the moving mean of the
        BatchNormalization right after a bias-free layer; see `compensation.py`), so they keep the offset
        the channel gave them. The output is then no longer that of the model with the removed channels
        zeroed. Follow with `tfc.recalibrate_batchnorm(small, x)` before evaluating or fine-tuning.
        Defaults to `None` (kept weights copied unchanged).

    Returns:
      A new, uncompiled tf-keras model.

    Raises:
      InputError: a bad ratio, criterion, layer name, a data-driven criterion without data, or
        `compensate` with a schedule.
      UnsupportedModelError: a subclassed model.
    """
    if isinstance(ratio, Schedule) or (isinstance(ratio, dict) and any(isinstance(v, Schedule)
                                                                         for v in ratio.values())):
        if compensate is not None:
            raise InputError("compensate needs a fixed ratio, not a schedule: with masks, fit itself adapts "
                             "the layers to the removed channels")
        if keep_residual:
            check_model(model)
            skip = _skip(ChannelGraph(functional(model)), skip, True)
        return _channel_masks.mask_channels(model, ratio, criterion, round_to, skip, seed)
    return plan_and_prune(model, ratio, criterion, data, round_to, skip, seed, global_ranking, keep_residual,
                          compensate).model


def zeroed_reference(model, removed):
    """The original model with each consumer's input rows and each producer's filters of the `removed`
    classes set to zero: what removing them implies, without removing anything. Its outputs must equal
    the pruned model's; BN shifts and biases of removed channels cannot hide in it, because no consumer
    reads those channels any more. For checks and benchmarks."""
    model = functional(model)
    graph = ChannelGraph(model)
    keeps = graph.keep_masks(removed)
    out = keras.models.clone_model(model)
    out.set_weights(model.get_weights())
    for name in graph.order:
        layer = out.get_layer(name)
        if graph.roles[name] != "produce" or not isinstance(layer, tuple(_ZEROABLE)):
            continue
        w = layer.get_weights()
        k_in, k_out = keeps[graph.inputs[name][0]], keeps[graph.output[name]]
        if isinstance(layer, keras.layers.Conv2DTranspose):
            w[0][..., ~k_in] = 0.0
            w[0][:, :, ~k_out, :] = 0.0
        elif isinstance(layer, keras.layers.SeparableConv2D):
            w[0][:, :, ~k_in, :] = 0.0
            w[1][..., ~k_out] = 0.0
        else:
            w[0][..., ~k_in, :] = 0.0
            w[0][..., ~k_out] = 0.0
        layer.set_weights(w)
    return out


_ZEROABLE = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense,
             keras.layers.SeparableConv2D)


def ratio_for_flops(model, fraction, round_to=None, skip=None, tol=0.005, criterion="l1", data=None, seed=0,
                    global_ranking=False, keep_residual=False):
    """The smallest ratio whose pruned model keeps at most `fraction` of the FLOPs (bisection).

    With uniform ratios the kept counts, hence the FLOPs, do not depend on the criterion; with
    `global_ranking` they do, so give the criterion (and data) that will be used.
    """
    from tfcompress.analysis import flops
    model = functional(model)
    graph = ChannelGraph(model)
    skip = _skip(graph, skip, keep_residual)
    total = flops(model)
    lo, hi = 0.0, 0.99
    importance = _criteria.get(criterion, model, graph, data, seed)
    for _ in range(20):
        mid = (lo + hi) / 2
        small = rebuild(graph, choose(graph, group_ratios(graph, mid, skip), importance, round_to,
                                      global_ranking=global_ranking))
        if flops(small) <= fraction * total:
            hi = mid
        else:
            lo = mid
        if hi - lo < tol:
            break
    return hi
