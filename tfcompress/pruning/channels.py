"""Structured channel pruning that physically shrinks functional tf-keras models.

Three parts, as in Torch-Pruning: `graph.py` finds which channels are coupled, the layer-kind table
(`tfcompress.graph.kinds`) knows how to cut each layer kind, `criteria.py` decides what to cut. This
module joins them: `channel_plan.py` picks the channels of every group and `shrink.py` rebuilds the model
(through `tfcompress.graph.Rewrite`) with fewer filters / units and the kept weights. With a schedule instead of a number it returns a model with channel masks that
`CompressionCallback` updates inside `fit` and `tfc.strip` removes physically (`channel_masks.py`).

Example:

```python
small = tfc.prune_channels(model, ratio=0.5, criterion="l1", round_to=8)
print(tfc.channel_groups(model))          # which layers are coupled
tfc.analysis.flops(small) / tfc.analysis.flops(model)
```
"""
import dataclasses
import warnings

from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.analysis.cost import flops
from tfcompress.errors import InputError
from tfcompress.graph import functional
from tfcompress.graph.kinds import cut_vectors, kind_of as cutter_for, register_layer  # noqa: F401 (re-export)
from tfcompress.pruning import channel_masks as _channel_masks  # registers the fit driver and stripper
from tfcompress.pruning import compensation as _compensation
from tfcompress.pruning import criteria as _criteria
from tfcompress.pruning import regularizers as _regularizers
from tfcompress.pruning.channel_plan import (blocked_notes, choose, group_ratios, kept_count,  # noqa: F401
                                             residual_merges, skip_with_residual as _skip)
from tfcompress.pruning.graph import ChannelGraph
from tfcompress.pruning.shrink import rebuild, zeroed_reference  # noqa: F401 (re-export)
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


def channel_groups(model):
    """Which layers' channels are coupled and must be pruned together.

    Args:
      model: a functional or Sequential tf-keras model.

    Returns:
      A `ChannelGroups` list of `graph.Group`; `print()` it for a readable account (producers, BN and
      activations that follow, merges, consumers with their channel ranges, and why a group is fixed or
      blocked).
    """
    model = tf_keras_model(model)
    return ChannelGroups(ChannelGraph(functional(model)).groups)


@dataclasses.dataclass
class PruneResult:
    model: object
    removed: set
    notes: list


def plan_and_prune(model, ratio=0.5, criterion="l1", data=None, round_to=None, skip=None, seed=0,
                   global_ranking=False, keep_residual=False, compensate=None):
    """`prune_channels` that also returns the removed class ids and the notes about blocked groups."""
    model = functional(tf_keras_model(model))
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
        model = tf_keras_model(model)
        if keep_residual:
            skip = _skip(ChannelGraph(functional(model)), skip, True)
        return _channel_masks.mask_channels(model, ratio, criterion, round_to, skip, seed)
    return plan_and_prune(model, ratio, criterion, data, round_to, skip, seed, global_ranking, keep_residual,
                          compensate).model


def ratio_for_flops(model, fraction, round_to=None, skip=None, tol=0.005, criterion="l1", data=None, seed=0,
                    global_ranking=False, keep_residual=False):
    """The smallest ratio whose pruned model keeps at most `fraction` of the FLOPs (bisection).

    With uniform ratios the kept counts, hence the FLOPs, do not depend on the criterion; with
    `global_ranking` they do, so give the criterion (and data) that will be used.
    """
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
