"""Regularizers that push whole channels to zero before structured pruning.

* `bn_l1(lam)`: lam * sum |gamma| on BatchNormalization scales (network slimming, Liu et al., 2017);
  prune afterwards with `criterion="bn_gamma"`.
* `group_lasso(lam)`: lam * sum over output channels of the L2 norm of each filter (filter-wise structured
  sparsity learning, Wen et al., 2016); prune afterwards with `criterion="l2"`.

How they attach: each is a serializable `keras.regularizers.Regularizer`, so it can be given when a layer is
built (`BatchNormalization(gamma_regularizer=bn_l1(1e-4))`, `Conv2D(..., kernel_regularizer=group_lasso(1e-4))`),
or added to an existing model with `attach(model, reg)`, which returns a copy of the model (same weights)
whose BN layers (for `bn_l1`) or Conv/Dense kernels (for `group_lasso`) carry it. The model's output layer
is left alone: its channels are the classes, which are never pruned. Rebuilding from the config, rather
than `model.add_loss`, keeps the regularizers through save and load.

Example:

```python
model = tfc.regularizers.attach(model, tfc.regularizers.bn_l1(1e-4))
model.compile(...); model.fit(...)
small = tfc.prune_channels(model, 0.5, criterion="bn_gamma")
```

Toward zero, weight by weight, before or during magnitude pruning (Han et al., 2015: a penalty makes weights
easier to remove): `l1(lam)` (lam * sum |w|), `l2(lam)` (lam * sum w^2) and `lp(lam, p)` (lam * sum |w|^p).
`attach(model, tfc.regularizers.l1(1e-5))` puts them on the kernel of every prunable layer (the output layer
included: `tfc.prune` prunes it too); attach before `tfc.prune` and the penalty acts during pruning as well.
A weight that is exactly zero (a pruned one) contributes no gradient, for every p, so masks stay exact.
"""
from tfcompress._tf import keras, tf
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.errors import InputError
from tfcompress.graph import Rewrite, kind_of
from tfcompress.graph.walk import output_keys

__all__ = ["bn_l1", "group_lasso", "l1", "l2", "lp", "attach", "BNL1", "GroupLasso", "Lp"]


def _check_lam(lam):
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or lam < 0:
        raise InputError(f"lambda must be a non-negative number. Got: {lam!r}")
    return float(lam)


@keras.utils.register_keras_serializable(package="tfcompress")
class BNL1(keras.regularizers.Regularizer):
    """lam * sum |gamma|: for a BatchNormalization layer's `gamma_regularizer`."""

    def __init__(self, lam=1e-4):
        self.lam = _check_lam(lam)

    def __call__(self, gamma):
        return self.lam * tf.reduce_sum(tf.abs(gamma))

    def get_config(self):
        return {"lam": self.lam}


@keras.utils.register_keras_serializable(package="tfcompress")
class GroupLasso(keras.regularizers.Regularizer):
    """lam * sum_c ||W[..., c]||_2 over output channels: for a Conv/Dense `kernel_regularizer`.

    Args:
      lam: strength. Defaults to `1e-4`.
      axis: the output-channel axis of the kernel (2 for Conv2DTranspose). Defaults to `-1`.
    """

    def __init__(self, lam=1e-4, axis=-1):
        self.lam = _check_lam(lam)
        self.axis = int(axis)

    def __call__(self, kernel):
        axes = [a for a in range(kernel.shape.rank) if a != self.axis % kernel.shape.rank]
        return self.lam * tf.reduce_sum(tf.sqrt(tf.reduce_sum(tf.square(kernel), axis=axes) + 1e-12))

    def get_config(self):
        return {"lam": self.lam, "axis": self.axis}


@keras.utils.register_keras_serializable(package="tfcompress")
class Lp(keras.regularizers.Regularizer):
    """lam * sum |w|^p over a kernel's entries: for a Conv/Dense `kernel_regularizer`.

    Exact zeros are left out of the sum (`|0|^p` has no finite gradient for p < 1), so a pruned weight
    gets no gradient from the penalty.

    Args:
      lam: strength. Defaults to `1e-5`.
      p: the exponent, > 0 (1 is L1, 2 is L2). Defaults to `1.0`.

    Raises:
      InputError: a negative `lam` or a `p` that is not a positive number.
    """

    def __init__(self, lam=1e-5, p=1.0):
        self.lam = _check_lam(lam)
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not p > 0:
            raise InputError(f"p must be a positive number. Got: {p!r}")
        self.p = float(p)

    def __call__(self, kernel):
        magnitude = tf.abs(kernel)
        nonzero = magnitude > 0
        safe = tf.where(nonzero, magnitude, tf.ones_like(magnitude))
        return self.lam * tf.reduce_sum(tf.where(nonzero, safe ** self.p, tf.zeros_like(magnitude)))

    def get_config(self):
        return {"lam": self.lam, "p": self.p}


def l1(lam=1e-5):
    """lam * sum |w| on the prunable kernels (`attach` it). Defaults to `1e-5`."""
    return Lp(lam, 1.0)


def l2(lam=1e-5):
    """lam * sum w^2 on the prunable kernels (`attach` it). Defaults to `1e-5`."""
    return Lp(lam, 2.0)


def lp(lam=1e-5, p=1.0):
    """lam * sum |w|^p on the prunable kernels (`attach` it); `lam` defaults to `1e-5`, `p` to `1.0`."""
    return Lp(lam, p)


def bn_l1(lam=1e-4):
    """Network-slimming L1 on BN gammas. Defaults to `1e-4`."""
    return BNL1(lam)


def group_lasso(lam=1e-4):
    """Filter-wise group lasso on Conv/Dense kernels. Defaults to `1e-4`."""
    return GroupLasso(lam)


def _regularized_config(layer, regularizer):
    """The layer's config with `regularizer` in place, or None when it does not apply to this layer."""
    kind = kind_of(layer)
    if kind is None:
        return None
    cfg = layer.get_config()
    if isinstance(regularizer, BNL1):
        if kind.gamma is None or not getattr(layer, "scale", False) or "gamma_regularizer" not in cfg:
            return None
        return dict(cfg, gamma_regularizer=keras.regularizers.serialize(regularizer))
    key = kind.kernel_regularizer
    if isinstance(regularizer, Lp):
        return dict(cfg, **{key: keras.regularizers.serialize(regularizer)}) if key and key in cfg else None
    axes = kind.out_axes(layer) if kind.out_axes else {}
    if key is None or 0 not in axes or key not in cfg or kind.role_of(layer) != "produce":
        return None
    axis = axes[0]
    reg = regularizer if axis == -1 else GroupLasso(regularizer.lam, axis)
    return dict(cfg, **{key: keras.regularizers.serialize(reg)})


def attach(model, regularizer, layers=None):
    """A copy of `model` with `regularizer` on its BN gammas (`BNL1`) or Conv/Dense kernels (`GroupLasso`, `Lp`).

    Which layers qualify, and which axis of their kernel holds the output channels, comes from the
    layer-kind table (`tfcompress.graph`), so a registered custom layer takes part too.

    Args:
      model: a functional or Sequential tf-keras model (a Sequential one comes back functional).
      regularizer: a `BNL1`, `GroupLasso` or `Lp` (from `bn_l1`, `group_lasso`, `l1`, `l2`, `lp`).
      layers: names of the layers to regularize, or None for every eligible layer except the output
        layer (for `Lp`: every layer with a kernel, the output layer included). Defaults to `None`.

    Returns:
      A new, uncompiled model with the same weights.
    """
    model = tf_keras_model(model)
    if not isinstance(regularizer, (BNL1, GroupLasso, Lp)):
        raise InputError("regularizer must come from bn_l1, group_lasso, l1, l2 or lp. "
                         f"Got: {type(regularizer).__name__}")
    outputs = {key[0] for key in output_keys(model)}
    chosen = set(layers) if layers is not None else None
    by_name = {layer.name: layer for layer in model.layers}
    missing = sorted((chosen or set()) - set(by_name))
    if missing:
        raise InputError(f"layers not in the model: {', '.join(missing)}")
    rewrite = Rewrite(model)
    for name, layer in by_name.items():
        skip_output = chosen is None and name in outputs and not isinstance(regularizer, Lp)
        if (chosen is not None and name not in chosen) or skip_output:
            continue
        cfg = _regularized_config(layer, regularizer)
        if cfg is not None:
            rewrite.set_config(name, cfg)
    return rewrite.apply()
