"""The layer-kind table: every fact tfcompress needs about a layer class, in one entry per class.

Torch-Pruning keeps a pruner function per module type; this is the same idea for tf-keras, extended to
every technique that reads or rewrites a layer. An entry (`LayerKind`) says

* how channels flow through the layer (`role`, read by the channel graph): `"produce"` makes a fresh
  channel space (Conv2D, Dense, ...), `"pass"` keeps channel k as channel k (BatchNormalization,
  activations, pooling, DepthwiseConv2D, elementwise math on one tensor), `"merge"` couples its inputs
  channel by channel (Add, Multiply, ...), `"concat"` stacks its inputs' channels, `"flatten"` maps a
  channel to its spatial rows, `"reshape"` keeps the channel axis; a function `role(layer) -> role | None`
  decides per configuration (None: not understood, which blocks the layer's channel group);
* how to slice (`cut`) or zero (`zero`) its weights for given kept input and output channels, and its
  config for a new width (`config`);
* which weights make each output channel (`filters`), read each input channel (`reads`), and which
  axis of each weight is the output channel (`out_axes`); its BatchNormalization-like statistics
  (`gamma`, `mean_index`); the kernel as (taps, in, out) for a linear consumer (`kernel_io`);
* its multiply-accumulates (`macs`), whether it is an elementwise map (`elementwise`) or a rectifier
  (`rectifier`), which config key takes a kernel regularizer (`kernel_regularizer`);
* how to make a fresh copy of it from the object in memory (`clone`; default: `from_config`);
* how to write it as two layers: low-rank factors (`factor`) or depthwise then 1×1 (`separate`), see
  `tfcompress/graph/factor.py`;
* per-channel rescaling, for BatchNormalization folding and cross-layer equalization: the per-channel
  map of an affine layer (`affine`), how a weight layer absorbs one after it (`fold`) or a scale of its
  input channels (`scale_in`), and whether a scale passes through the layer unchanged (`homogeneous`);
* how it lands in a TFLite file: nothing at inference (`inference_identity`), what its op absorbs after it
  (`fuses`), the fused activation it becomes after such an op (`fused_activation`).

Lookup is by exact class: a subclass of Conv2D is unknown until registered, because it may change
what its channels mean. `register_layer(MyLayer, role="pass")` teaches a custom layer once; channel
pruning, the criteria, compensation, regularizers, cost analysis and the model rewrites then know it.
"""
import dataclasses
from typing import Callable, Optional, Union

import numpy as np

ROLES = ("produce", "pass", "merge", "concat", "flatten", "reshape")


@dataclasses.dataclass(frozen=True)
class LayerKind:
    """What one layer class is, for every technique. Every field but `role` defaults to `None` (or False).

    Args:
      role: a role name (see the module doc) or `role(layer) -> name | None`.
      cut: `cut(layer, weights, in_keeps, out_keep) -> weights`: `weights` is `layer.get_weights()`,
        `in_keeps` one boolean mask per input's last axis, `out_keep` the mask of the output's last axis.
        `None`: every weight is a per-output-channel vector (or not channel-shaped) and is sliced so.
      config: `config(layer_config, out_keep) -> layer_config` for the smaller layer. `None`: the config
        does not depend on the channel count.
      filters: `filters(layer) -> array (..., C_out)`: the weights that make each output channel.
      reads: `reads(layer) -> array (..., C_in)`: the weights that read each input channel.
      zero: `zero(layer, weights, in_keep, out_keep) -> weights` with removed channels' weights set to 0.
      kernel_io: `kernel_io(layer) -> array (taps, C_in, C_out)`: the kernel of a layer that sums
        `kernel[t, c, o] * x[c]` over taps and inputs, plus a bias (mean compensation folds into it).
      out_axes: `out_axes(layer) -> {weight index: axis}` of the weights indexed by output channel.
      gamma: `gamma(layer) -> vector` the per-channel scale (BatchNormalization's |gamma|, ones when unscaled).
      mean_index: `mean_index(layer) -> int`: index of the moving mean among the weights.
      macs: `macs(layer, in_shape, out_shape) -> int` multiply-accumulates of one call, batch 1.
      clone: `clone(layer) -> layer`, a fresh unbuilt copy from the object in memory.
      elementwise: the same scalar function on every element (activations, dropout).
      rectifier: output is zero for negative inputs (ReLU-like), for activation-based criteria.
      kernel_regularizer: the config key that takes a regularizer of the kernel.
      factor: `factor(layer, method) -> graph.factor.Factored | None`: the kernel as a matrix and the two
        layers computing `x @ A @ B` (low-rank factorisation; `method` is `"weight"` or `"spatial"`).
      separate: `separate(layer) -> graph.factor.Separated | None`: a depthwise and a 1×1 layer with the
        weights of the best such approximation of the layer.
      affine: `affine(layer) -> (gain, offset)`: the layer computes `gain * x + offset` channel by channel
        at inference (BatchNormalization).
      fold: `fold(layer, weights, gain, offset=None) -> (config, weights) | None`: the config and weights
        of the layer computing `gain * layer(x) + offset` per output channel (`offset=None`: no offset,
        the config stays); `None` when it cannot (a fused nonlinear activation; a fused ReLU takes a
        positive gain without offset). `weights` may hold the kernel alone.
      scale_in: `scale_in(layer, weights, s) -> weights`: the weights that read input channel c multiplied
        by `s[c]`, so the layer computes on `x / s` what it computed on `x`.
      inference_identity: the layer computes nothing at inference (dropout, noise, activity regularization):
        no op of the exported file stands for it.
      fuses: what the converter folds into this layer's op when it follows alone: `"affine"` (a layer with
        `affine`, BatchNormalization), `"activation"` (a layer with `fused_activation`). Empty: nothing.
      fused_activation: `fused_activation(layer) -> "relu" | "relu6" | None`: the activation a TFLite op
        takes as its fused activation function when this layer follows it (None: not fusable).
      homogeneous: `f(s * x) == s * f(x)` channel by channel for every `s > 0` (ReLU, pooling, dropout at
        inference): a per-channel scale passes through the layer. `True`, or `homogeneous(layer) -> bool`.
    """
    role: Union[str, Callable]
    cut: Optional[Callable] = None
    config: Optional[Callable] = None
    filters: Optional[Callable] = None
    reads: Optional[Callable] = None
    zero: Optional[Callable] = None
    kernel_io: Optional[Callable] = None
    out_axes: Optional[Callable] = None
    gamma: Optional[Callable] = None
    mean_index: Optional[Callable] = None
    macs: Optional[Callable] = None
    clone: Optional[Callable] = None
    elementwise: bool = False
    rectifier: bool = False
    kernel_regularizer: Optional[str] = None
    quantize: Optional[str] = None
    factor: Optional[Callable] = None
    separate: Optional[Callable] = None
    affine: Optional[Callable] = None
    fold: Optional[Callable] = None
    scale_in: Optional[Callable] = None
    homogeneous: Union[bool, Callable] = False
    inference_identity: bool = False
    fuses: tuple = ()
    fused_activation: Optional[Callable] = None

    def role_of(self, layer):
        role = self.role(layer) if callable(self.role) else self.role
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}. Got: {role!r}")
        return role

    def cut_weights(self, layer, weights, in_keeps, out_keep):
        return (self.cut or cut_vectors)(layer, weights, in_keeps, out_keep)

    def is_homogeneous(self, layer):
        return bool(self.homogeneous(layer) if callable(self.homogeneous) else self.homogeneous)


KINDS = {}


def register_layer(cls, role, cut=None, config=None, filters=None, **facts):
    """Teaches tfcompress a layer class (the hook for custom layers).

    Example: a custom elementwise layer that keeps channels and has one per-channel weight vector
    needs only `register_layer(MyScale, role="pass")`: per-channel vectors are sliced by default.

    >>> from tfcompress._tf import keras
    >>> class Twice(keras.layers.Layer):
    ...     def call(self, x):
    ...         return 2.0 * x
    >>> _ = register_layer(Twice, role="pass", elementwise=True)
    >>> kind_of(Twice()).role, kind_of(Twice()).elementwise
    ('pass', True)

    Args:
      cls: the layer class (matched exactly, not by subclass).
      role: `"produce"`, `"pass"`, `"merge"`, `"concat"`, `"flatten"`, `"reshape"`, or a function
        `role(layer) -> role | None`.
      cut, config, filters: see `LayerKind`. Defaults to `None`.
      **facts: any other `LayerKind` field (`zero`, `reads`, `macs`, `clone`, `elementwise`, ...).

    Returns:
      The class.
    """
    KINDS[cls] = LayerKind(role, cut, config, filters, **facts)
    return cls


def kind_of(layer):
    """The `LayerKind` of a layer, or None for a class the table does not know."""
    return KINDS.get(type(layer))


def cut_vectors(layer, weights, in_keeps, out_keep):
    """Default cut: every weight is a per-channel vector of the output's channels."""
    return [w[out_keep] if w.ndim == 1 and w.shape[0] == out_keep.shape[0] else w for w in weights]


def prod(shape):
    return int(np.prod([int(d) for d in shape])) if len(shape) else 1
