"""Dropout after pruning: D = D0 * sqrt(C_i / C_i0) (Han et al., 2015, section 3.5).

A pruned layer has fewer connections, so less co-adaptation for dropout to break up; Han et al. scale the
rate of the dropout after layer i by the square root of the connections it keeps (`C_i`, its nonzero
kernel entries) over those it had (`C_i0`). The layer a Dropout "follows" is the nearest layer with a
kernel reached by walking back through single-input layers without one (activations, flatten, pooling).

Example:

```python
small = tfc.strip(pruned_and_trained)
small = tfc.adjust_dropout(small, original)     # then fine-tune `small`
```
"""
import numpy as np

from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.graph import Rewrite, inbound_layers, kind_of
from tfcompress.graph.keras3 import tf_keras_model

__all__ = ["adjust_dropout", "dropout_rates", "followed_layer", "connections", "DROPOUTS"]

DROPOUTS = (keras.layers.Dropout, keras.layers.AlphaDropout)   # SpatialDropout* subclass Dropout


def _kernel_of(layer):
    """The layer's prunable kernel as an array (masked when wrapped by tfc.prune), or None."""
    from tfcompress.pruning.magnitude import PruneWrapper
    if isinstance(layer, PruneWrapper):
        arrays = [(w * m).numpy() for w, m, _ in layer.pruning_vars]
        return np.concatenate([a.ravel() for a in arrays]) if arrays else None
    kind = kind_of(layer)
    if kind is None or kind.kernel_regularizer is None:
        return None
    kernel = getattr(layer, kind.kernel_regularizer.replace("_regularizer", ""), None)
    return None if kernel is None else np.asarray(kernel.numpy())


def connections(layer):
    """C: the nonzero entries of a layer's kernel, or None for a layer without one."""
    kernel = _kernel_of(layer)
    return None if kernel is None else int(np.count_nonzero(kernel))


def followed_layer(dropout):
    """The layer with a kernel whose output `dropout` reads, through single-input kernel-less layers.

    Returns:
      That layer, or None (a Dropout after an input, a merge, or a layer that never was called).
    """
    seen = inbound_layers(dropout)
    while len(seen) == 1:
        layer = seen[0]
        if _kernel_of(layer) is not None:
            return layer
        if isinstance(layer, keras.layers.InputLayer):
            return None
        seen = inbound_layers(layer)
    return None


def dropout_rates(pruned, original):
    """{dropout name: (new rate, D0, C_i, C_i0, layer followed)} for every Dropout after a layer with a kernel.

    Args:
      pruned: the pruned model (plain, or still wrapped by `tfc.prune`).
      original: the model before pruning; D0 is its Dropout's rate (the pruned model's own rate when the
        original has no Dropout of that name) and C_i0 its layer's nonzero kernel entries.

    Returns:
      The dict above; a Dropout whose followed layer is missing from `original` is left out.
    """
    originals = {l.name: l for l in original.layers}
    rates = {}
    for layer in pruned.layers:
        if not isinstance(layer, DROPOUTS):
            continue
        follows = followed_layer(layer)
        if follows is None:
            continue
        base_name = getattr(getattr(follows, "layer", None), "name", follows.name)
        before = originals.get(follows.name) or originals.get(base_name)
        if before is None:
            continue
        c, c0 = connections(follows), connections(before)
        d0 = float(originals[layer.name].rate) if layer.name in originals else float(layer.rate)
        rate = d0 * float(np.sqrt(c / c0)) if c0 else d0
        rates[layer.name] = (rate, d0, c, c0, base_name)
    return rates


def set_rates(model, rates):
    """A copy of `model` whose Dropout layers named in `rates` ({name: rate}) have those rates."""
    rewrite = Rewrite(model)
    for name, rate in rates.items():
        rewrite.set_config(name, dict(model.get_layer(name).get_config(), rate=float(rate)))
    return rewrite.apply()


def adjust_dropout(pruned, original):
    """Scales every Dropout after a pruned layer by sqrt(C_i / C_i0) of the layer it follows.

    D = D0 * sqrt(C_i / C_i0): C_i and C_i0 are the nonzero kernel entries of that layer in `pruned` and in
    `original`, D0 the Dropout's rate in `original`. Dropouts after no kernel keep their rate.

    Args:
      pruned: the pruned model, magnitude-pruned and stripped (`tfc.strip`) or physically smaller from
        `tfc.prune_channels`; a tf_keras or Keras 3 functional or Sequential model.
      original: the same model before pruning.

    Returns:
      A new model (same weights) with the adjusted rates; `pruned` is left untouched.

    Raises:
      InputError: a model still wrapped by `tfc.prune`, or one with no Dropout after a layer with a kernel.
    """
    from tfcompress.pruning.magnitude import wrappers
    pruned, original = tf_keras_model(pruned), tf_keras_model(original)
    if wrappers(pruned):
        raise InputError("adjust_dropout needs a plain model: tfc.strip the pruned model first (the zeros stay). "
                         f"Got: {len(wrappers(pruned))} pruning wrapper(s)")
    rates = dropout_rates(pruned, original)
    if not rates:
        raise InputError(f"model {pruned.name!r} has no Dropout after a layer with a kernel. Got: layers "
                         f"{', '.join(l.name for l in pruned.layers)}")
    return set_rates(pruned, {name: r[0] for name, r in rates.items()})


def adjust_for_schedule(model, schedule=None, layers=None):
    """`model` with its Dropout rates set for the connections `tfc.prune(model, schedule, layers)` keeps.

    For the prune recipe stage, which fine-tunes with the adjusted rates from the start: each layer keeps
    `n - round(s * n)` of its `n` kernel entries at its schedule's final sparsity `s` (what the wrapper's
    mask update leaves), so D = D0 * sqrt(that / n).

    Args:
      model: the plain model about to be pruned.
      schedule: the schedule `tfc.prune` gets. Defaults to `None`.
      layers: the `layers` `tfc.prune` gets. Defaults to `None`.

    Returns:
      A new model with the adjusted rates, or `model` itself when no Dropout follows a pruned layer.
    """
    from tfcompress.pruning.magnitude import _select
    model = tf_keras_model(model)
    chosen = _select(model, schedule, layers)
    rates = {}
    for layer in model.layers:
        follows = followed_layer(layer) if isinstance(layer, DROPOUTS) else None
        if follows is None or follows.name not in chosen:
            continue
        n = _kernel_of(follows).size
        kept = n - int(round(float(chosen[follows.name].final_sparsity()) * n))
        rates[layer.name] = float(layer.rate) * float(np.sqrt(kept / n))
    return set_rates(model, rates) if rates else model
