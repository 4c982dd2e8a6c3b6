"""Re-estimates BatchNormalization statistics on data (adaptive BN).

After channels are removed, every BatchNormalization layer downstream sees inputs whose mean and variance
differ from the moving statistics learned on the whole network, and the pruned model's accuracy can
collapse even though its weights are fine. Re-estimating the statistics on a few batches of training data
(Li et al., 2020, "EagleEye": adaptive BN) recovers most of it without a gradient step. The statistics are
the average of per-batch means and variances in a training-mode forward pass, which is how the moving
averages are meant to be estimated (Wu & Johnson, 2021, "precise BN").

Example:

```python
small = tfc.prune_channels(model, 0.5)
small = tfc.recalibrate_batchnorm(small, x_train[:1024])
```
"""
import numpy as np

from tfcompress._tf import check_model, keras
from tfcompress.graph.keras3 import from_keras3, is_keras3
from tfcompress.errors import InputError
from tfcompress.pruning.criteria import split_data


def _batchnorms(model):
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += _batchnorms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            out.append(layer)
    return out


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def recalibrate_batchnorm(model, data, batch_size=64, steps=None):
    """Sets the moving mean and variance of every BatchNormalization layer from `data`, in place.

    Batch k of a training-mode forward pass updates the statistics with momentum `1 - 1/k`, so after the
    last batch they hold the mean over batches of each layer's batch mean and batch variance; each layer
    sees inputs normalised by the batch statistics of the layers before it, as in training. No weight
    other than the moving statistics changes. Layers with `trainable=False` run in inference mode and keep
    their statistics (as they would in `fit`). Dropout and other training-only layers are active during the
    pass; their randomness does not reach the weights.

    Args:
      model: a tf-keras model (nested models are searched too).
      data: `x` or `(x, y)` (the labels are ignored), e.g. a few batches of training data.
      batch_size: samples per forward pass; use the training batch size. Defaults to `64`.
      steps: use at most this many batches. Defaults to `None` (all of `data`).

    Returns:
      The same model (a Keras 3 model too: its statistics are computed on its tf_keras translation and
      copied back).

    Raises:
      InputError: empty data or a bad batch size or step count.
    """
    if is_keras3(model):
        twin = recalibrate_batchnorm(from_keras3(model), data, batch_size, steps)
        own = {layer.name: layer for layer in _all_layers(model)}
        for bn in _batchnorms(twin):
            own[bn.name].set_weights(bn.get_weights())
        return model
    check_model(model)
    x, _ = split_data(data)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer. Got: {batch_size!r}")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise InputError(f"steps must be a positive integer or None. Got: {steps!r}")
    if len(x) == 0:
        raise InputError("data is empty; give at least one batch of inputs")
    layers = _batchnorms(model)
    momenta = [layer.momentum for layer in layers]
    n = int(np.ceil(len(x) / batch_size))
    n = n if steps is None else min(n, steps)
    try:
        for k in range(1, n + 1):
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / k  # running average of the batch statistics seen so far
            model(x[(k - 1) * batch_size:k * batch_size], training=True)
    finally:
        for layer, m in zip(layers, momenta):
            layer.momentum = m
    return model
