"""Channel pruning during training: masks that a schedule closes progressively inside `fit`.

`prune_channels(model, ratio=<schedule>)` lands here. A `ChannelMask` layer is put in front of every
consumer (Conv2D, Dense, ...) of a prunable group, on that consumer's input only. Zeroing a channel there
is exactly what removing it implies: the channel's downstream contribution is gone, while BN shifts and
biases of the producer cannot leak through (they would if the producer's output were masked). Residual
adds and other pass-through paths still carry the channel, as the shrunk model's do not need it.

`CompressionCallback` drives the masks (driver registered here): at each step where the schedule says
so, every group's classes are scored with the criterion, the already-masked ones stay masked, and the
lowest-scored ones are masked until the group reaches the schedule's sparsity (fraction of channels).
`tfc.strip` removes the masked channels physically and drops the mask layers (stripper registered here).
Data-driven criteria (`apoz`, `taylor`) are not available inside `fit`.

Training a masked model without the callback fails with an error that names it.
"""
import numpy as np

from tfcompress._tf import keras, tf
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.callbacks import iter_layers, register_driver
from tfcompress.errors import InputError
from tfcompress.graph import Rewrite, functional
from tfcompress.graph.kinds import cut_vectors, register_layer
from tfcompress.pruning import criteria as _criteria
from tfcompress.pruning.channel_plan import choose, group_ratios
from tfcompress.pruning.graph import ChannelGraph
from tfcompress.pruning.shrink import rebuild
from tfcompress.schedules import Schedule
from tfcompress.stripping import register_stripper


@keras.utils.register_keras_serializable(package="tfcompress")
class ChannelMask(keras.layers.Layer):
    """Multiplies the last axis by a 0/1 mask held as a non-trainable variable.

    Args:
      spec: the pruning settings (schedule configs, criterion, round_to, skip, seed) as a dict, kept in the
        config so a saved masked model trains on after loading. Defaults to `None`.
    """

    def __init__(self, spec=None, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def build(self, input_shape):
        self.mask = self.add_weight("mask", shape=(int(input_shape[-1]),), initializer="ones", trainable=False)
        self.armed = self.add_weight("armed", shape=(), initializer="zeros", trainable=False)
        super().build(input_shape)

    def call(self, inputs, training=None):
        if training:
            tf.debugging.assert_positive(
                self.armed, message="channel masks are updated only by tfc.CompressionCallback: pass "
                "callbacks=[tfc.CompressionCallback()] to fit")
        return inputs * tf.cast(self.mask, inputs.dtype)

    def get_config(self):
        return dict(super().get_config(), spec=self.spec)


register_layer(ChannelMask, "pass", cut_vectors)


def _spec(ratio, criterion, round_to, skip, seed):
    if criterion in _criteria.NEEDS_DATA or criterion == "merge":
        raise InputError(f"criterion {criterion!r} is not available inside fit (it needs data or rewrites "
                         "weights); use l1, l2, bn_gamma or random")
    if criterion not in _criteria.CRITERIA:
        raise InputError(f"unknown criterion {criterion!r}; choose one of {', '.join(_criteria.NAMES)}")
    if isinstance(ratio, dict):
        sched = {k: (v.get_config() if isinstance(v, Schedule) else v) for k, v in ratio.items()}
    else:
        sched = ratio.get_config()
    return {"schedule": sched, "criterion": criterion, "round_to": round_to, "skip": list(skip or []),
            "seed": seed}


def _schedules(spec):
    s = spec["schedule"]
    if isinstance(s, dict) and "class_name" in s:
        return Schedule.from_dict(s)
    return {k: (Schedule.from_dict(v) if isinstance(v, dict) else v) for k, v in s.items()}


def mask_channels(model, ratio, criterion="l1", round_to=None, skip=None, seed=0):
    """A copy of `model` with `ChannelMask` layers in front of every consumer of a prunable group."""
    model = functional(tf_keras_model(model))
    spec = _spec(ratio, criterion, round_to, skip, seed)
    graph = ChannelGraph(model)
    ratios = group_ratios(graph, ratio, skip)
    prunable = {c for g in graph.groups if g.prunable and g.index in ratios for c in g.classes}
    rewrite = Rewrite(model, {"tfcompress>ChannelMask": ChannelMask})
    masks = {}  # one mask per masked tensor, shared by all its consumers
    for name in graph.order:
        if graph.roles.get(name) != "produce":
            continue
        for i, key in enumerate(graph.inputs[name]):
            if not set(graph.roots(key)) & prunable:
                continue
            if key not in masks:
                masks[key] = ChannelMask(spec, name=f"{key[0]}_{key[2]}_chmask" if key[2] else f"{key[0]}_chmask",
                                         trainable=False)
            rewrite.insert_before(name, masks[key], input_index=i)
    return rewrite.apply()


def _masked_model(model):
    """The (possibly nested) functional model whose own layers hold ChannelMask layers, or None."""
    if any(isinstance(layer, ChannelMask) for layer in model.layers):
        return model
    for layer in iter_layers(model):
        if isinstance(layer, keras.Model) and any(isinstance(sub, ChannelMask) for sub in layer.layers):
            return layer
    return None


def removed_classes(graph, masks):
    """Class ids whose positions are zero in some mask."""
    removed = set()
    for m in masks:
        key = graph.output[m.name]
        roots = graph.roots(key)
        removed.update(int(r) for r in roots[m.mask.numpy() == 0])
    return removed


class ChannelPruningDriver:
    """Updates the masks of one model on the schedule's steps."""

    def __init__(self, model):
        self.model = model
        self.masks = [layer for layer in model.layers if isinstance(layer, ChannelMask)]
        self.spec = self.masks[0].spec
        self.graph = ChannelGraph(model)
        self.ratios = group_ratios(self.graph, _schedules(self.spec), self.spec.get("skip"))
        self.root = None
        self._sparsity = {}

    def on_train_begin(self):
        for m in self.masks:
            m.armed.assign(1.0)

    def on_train_end(self):
        for m in self.masks:
            m.armed.assign(0.0)

    def _step(self):
        opt = getattr(self._root_model, "optimizer", None) or getattr(self.model, "optimizer", None)
        return int(opt.iterations.numpy()) if opt is not None else 0

    def on_train_batch_begin(self, batch):
        step = self._step()
        due = {}
        for gi, sched in self.ratios.items():
            should, s = sched(step)
            if should and s != self._sparsity.get(gi):
                due[gi] = s
        if not due:
            return
        self._sparsity.update(due)
        importance = _criteria.get(self.spec["criterion"], self.model, self.graph, None, self.spec["seed"])
        already = removed_classes(self.graph, self.masks)
        removed = choose(self.graph, due, importance, self.spec.get("round_to"), already) | already
        removed_arr = np.array(sorted(removed), dtype=np.int64)
        for m in self.masks:
            keep = ~np.isin(self.graph.roots(self.graph.output[m.name]), removed_arr)
            m.mask.assign(keep.astype(np.float32))

    def summaries(self):
        removed = removed_classes(self.graph, self.masks)
        out = {}
        for g in self.graph.groups:
            if g.index in self.ratios and g.prunable:
                out[f"channel_sparsity/{g.producers[0]}"] = sum(c in removed for c in g.classes) / g.size
        return out


@register_driver
def _driver(model):
    inner = _masked_model(model)
    if inner is None:
        return None
    d = ChannelPruningDriver(inner)
    d._root_model = model
    return d


@register_stripper
def strip_channel_masks(model):
    """Removes masked channels physically and drops the mask layers; None if there are none."""
    if not any(isinstance(layer, ChannelMask) for layer in model.layers):
        return None
    graph = ChannelGraph(model)
    masks = [layer for layer in model.layers if isinstance(layer, ChannelMask)]
    return rebuild(graph, removed_classes(graph, masks), drop=[m.name for m in masks],
                   custom_objects={"tfcompress>ChannelMask": ChannelMask})
