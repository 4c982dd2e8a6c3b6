"""How to cut each layer kind: a registry keyed by layer class.

Every layer class the channel graph understands has a `LayerCutter` that says two things:

* its *role*, i.e. how channels flow through it (used by `graph.py`):
  `"produce"` makes a fresh channel space (Conv2D, Dense, ...), `"pass"` keeps channel k as channel k
  (BatchNormalization, activations, pooling, DepthwiseConv2D, ...), `"merge"` couples all inputs
  channel by channel (Add, Multiply, ...), `"concat"` stacks its inputs' channels (offset mapping),
  `"flatten"` maps a channel to its spatial rows, `"reshape"` keeps the channel axis when the last
  dimension is unchanged;
* how to slice its weights and config once the kept input and output channels are known.

The role may be a function `role(layer) -> str | None`: None means this configuration of the layer is not
understood (e.g. a grouped convolution or a softmax over channels), which blocks its channel group.

Custom layers: `register_layer(MyLayer, role="pass", cut=fn)` (see `register_layer`). Lookup is by exact
class: a subclass of Conv2D is unknown until registered, because it may change what its channels mean.
"""
import dataclasses
from typing import Callable, Optional, Union

import numpy as np

from tfcompress._tf import keras

L = keras.layers
ROLES = ("produce", "pass", "merge", "concat", "flatten", "reshape")


@dataclasses.dataclass(frozen=True)
class LayerCutter:
    """How one layer class carries and loses channels.

    Args:
      role: a role name (see the module doc) or `role(layer) -> name | None`.
      cut: `cut(layer, weights, in_keeps, out_keep) -> weights`: `weights` is `layer.get_weights()`,
        `in_keeps` one boolean mask per input's last axis, `out_keep` the mask of the output's last
        axis. Defaults to `None` (the layer has no weights to cut, or its weights are per-channel
        vectors sliced by `out_keep`).
      config: `config(layer_config, out_keep) -> layer_config` for the smaller layer. Defaults to
        `None` (the config does not depend on the channel count).
      filters: `filters(layer) -> array (..., C_out)` for producers: the weights that make each output
        channel, last axis = output channel; used by the magnitude criteria. Defaults to `None`.
    """
    role: Union[str, Callable]
    cut: Optional[Callable] = None
    config: Optional[Callable] = None
    filters: Optional[Callable] = None

    def role_of(self, layer):
        role = self.role(layer) if callable(self.role) else self.role
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}. Got: {role!r}")
        return role


CUTTERS = {}


def register_layer(cls, role, cut=None, config=None, filters=None):
    """Teaches the channel graph a layer class (the hook for custom layers).

    Example: a custom elementwise layer that keeps channels and has one per-channel weight vector
    needs only `register_layer(MyScale, role="pass")`: per-channel vectors are sliced by default.

    Args:
      cls: the layer class (matched exactly, not by subclass).
      role: `"produce"`, `"pass"`, `"merge"`, `"concat"`, `"flatten"`, `"reshape"`, or a function
        `role(layer) -> role | None`.
      cut, config, filters: see `LayerCutter`. Defaults to `None`.

    Returns:
      The class.
    """
    CUTTERS[cls] = LayerCutter(role, cut, config, filters)
    return cls


def cutter_for(layer):
    return CUTTERS.get(type(layer))


def cut_vectors(layer, weights, in_keeps, out_keep):
    """Default cut: every weight is a per-channel vector of the output's channels."""
    return [w[out_keep] if w.ndim == 1 and w.shape[0] == out_keep.shape[0] else w for w in weights]


# ---------------------------------------------------------------- producers


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def couples_channels(layer):
    """True when the layer normalises across its output channels (softmax): removing one of them would
    change the others, so the graph keeps them all."""
    if isinstance(layer, L.Softmax):
        return True
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") in ("softmax", "log_softmax")


def _conv_role(layer):
    ok = _channels_last(layer) and getattr(layer, "groups", 1) == 1
    return "produce" if ok else None


def _cut_kernel_bias(layer, weights, in_keeps, out_keep):
    kernel = weights[0][..., in_keeps[0], :][..., out_keep]
    return [kernel] + [b[out_keep] for b in weights[1:]]


def _set(key):
    def config(cfg, out_keep):
        return dict(cfg, **{key: int(out_keep.sum())})
    return config


def _last_axis_kernel(layer):
    return layer.get_weights()[0]


for _cls in (L.Conv1D, L.Conv2D, L.Conv3D):
    register_layer(_cls, _conv_role, _cut_kernel_bias, _set("filters"), _last_axis_kernel)
register_layer(L.Dense, "produce",
               _cut_kernel_bias, _set("units"), _last_axis_kernel)


def _cut_transpose(layer, weights, in_keeps, out_keep):
    # Conv2DTranspose kernels are (kh, kw, out, in).
    kernel = weights[0][:, :, out_keep, :][..., in_keeps[0]]
    return [kernel] + [b[out_keep] for b in weights[1:]]


register_layer(L.Conv2DTranspose, _conv_role, _cut_transpose, _set("filters"),
               lambda l: np.moveaxis(l.get_weights()[0], 2, -1))


def _cut_separable(layer, weights, in_keeps, out_keep):
    depthwise, pointwise = weights[0], weights[1]
    m = depthwise.shape[-1]
    keep_in = in_keeps[0]
    return ([depthwise[:, :, keep_in, :], pointwise[:, :, np.repeat(keep_in, m), :][..., out_keep]]
            + [b[out_keep] for b in weights[2:]])


register_layer(L.SeparableConv2D, _conv_role, _cut_separable, _set("filters"),
               lambda l: l.get_weights()[1])


# ---------------------------------------------------------------- channel-preserving layers


def _depthwise_role(layer):
    ok = _channels_last(layer) and layer.depth_multiplier == 1
    return "pass" if ok else None


def _cut_depthwise(layer, weights, in_keeps, out_keep):
    return [weights[0][:, :, out_keep, :]] + [b[out_keep] for b in weights[1:]]


register_layer(L.DepthwiseConv2D, _depthwise_role, _cut_depthwise)


def _bn_role(layer):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    try:
        rank = len(layer.input_shape)
    except (AttributeError, RuntimeError):
        rank = None
    ok = len(axis) == 1 and (axis[0] == -1 or (rank is not None and axis[0] == rank - 1))
    return "pass" if ok else None


register_layer(L.BatchNormalization, _bn_role, cut_vectors)


register_layer(L.Activation, "pass")
register_layer(L.Softmax, lambda l: "pass" if l.axis in (-1, len(l.output_shape) - 1) else None)
_PASS = [L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D,
         L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
         L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
         L.AveragePooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
         L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.ZeroPadding1D, L.ZeroPadding2D,
         L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D, L.UpSampling1D, L.UpSampling2D,
         L.UpSampling3D]
for _cls in _PASS:
    register_layer(_cls, lambda l: "pass" if _channels_last(l) else None)


# ---------------------------------------------------------------- merges, concat, reshapes

for _cls in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
    register_layer(_cls, "merge")


def _concat_role(layer):
    rank = len(layer.output_shape) if hasattr(layer, "output_shape") else None
    return "concat" if layer.axis == -1 or (rank is not None and layer.axis == rank - 1) else "merge"


register_layer(L.Concatenate, _concat_role)
register_layer(L.Flatten, lambda l: "flatten" if _channels_last(l) else None)


def _reshape_config(cfg, out_keep):
    shape = list(cfg["target_shape"])
    if shape[-1] != -1:
        shape[-1] = int(out_keep.sum())
    return dict(cfg, target_shape=tuple(shape))


def _reshape_role(layer):
    src, dst = layer.input_shape, layer.output_shape
    if src[-1] is not None and src[-1] == dst[-1]:
        return "reshape"
    if len(dst) == 2 and None not in src[1:]:  # (H, W, C) -> (H*W*C,): a Flatten
        return "flatten"
    return None


register_layer(L.Reshape, _reshape_role, config=_reshape_config)
