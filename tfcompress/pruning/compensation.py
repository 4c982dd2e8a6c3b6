"""Mean compensation: what a removed channel contributed on average stays in the layers that read it.

A channel removed after Conv -> BN -> ReLU is rarely zero: it is about relu(beta) plus some variation, and
every layer that read it loses that offset. A channel with a small BN gamma but a large beta is nearly
constant, so a magnitude criterion calls it unimportant, yet removing it shifts its consumers. Folding the
channel's mean activation on data into each consumer keeps the offset (the bias correction of Nagel et al.,
2019, applied to removed channels): for a consumer with kernel W, `delta[o] = sum_c mean[c] * sum_taps
W[taps, c, o]` over removed input channels c, added to its bias, or, for a consumer without a bias whose
output goes straight into a BatchNormalization, subtracted from that layer's moving mean.

Exact in expectation for Dense consumers (after global pooling or Flatten); for convolutions it assumes
the channel is constant over the kernel's taps, which zero padding breaks at the borders. Consumers other
than Dense and Conv1D/2D/3D (transposed or separable convolutions), and bias-free consumers without a BN
right after, are left as they are.
"""
import numpy as np

from tfcompress._tf import keras
from tfcompress.graph import kind_of
from tfcompress.pruning.criteria import split_data


def _following_bn(graph, name):
    """The BatchNormalization-like layer (one with a moving mean) that alone reads `name`'s output, or None."""
    key = graph.output[name]
    readers = [n for n in graph.order if key in graph.inputs.get(n, [])]
    if len(readers) == 1 and graph.roles[readers[0]] == "pass":
        kind = kind_of(graph.layers[readers[0]])
        if kind is not None and kind.mean_index is not None:
            return readers[0]
    return None


def _consumers(graph, keeps):
    """Producers of known kind that read at least one removed channel."""
    out = []
    for name in graph.order:
        layer = graph.layers[name]
        kind = kind_of(layer)
        if graph.roles[name] != "produce" or kind is None or kind.kernel_io is None or not graph.inputs[name]:
            continue
        if not keeps[graph.inputs[name][0]].all():
            out.append(name)
    return out


def _input_means(model, layers, x, batch_size):
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    sums = [np.zeros(int(layer.input.shape[-1])) for layer in layers]
    counts = [0] * len(layers)  # per input: their spatial sizes differ
    for i in range(0, len(x), batch_size):
        outs = probe(x[i:i + batch_size], training=False)
        for j, o in enumerate(outs if isinstance(outs, (list, tuple)) else [outs]):
            flat = o.numpy().reshape(-1, o.shape[-1])
            sums[j] += flat.sum(0, dtype=np.float64)
            counts[j] += len(flat)
    return [s / c for s, c in zip(sums, counts)]


def mean_shifts(graph, removed, data, batch_size=256):
    """{layer name: (weight index, delta)} to add to the original weights before the removed channels go.

    Args:
      graph: the `ChannelGraph` of the model.
      removed: class ids to remove.
      data: `x` or `(x, y)`; the mean activations are measured on it in inference mode.
      batch_size: samples per forward pass. Defaults to `256`.
    """
    keeps = graph.keep_masks(removed)
    names = _consumers(graph, keeps)
    if not names:
        return {}
    x, _ = split_data(data)
    means = _input_means(graph.model, [graph.layers[n] for n in names], x, batch_size)
    shifts = {}
    for name, mean in zip(names, means):
        layer = graph.layers[name]
        gone = ~keeps[graph.inputs[name][0]]
        taps = kind_of(layer).kernel_io(layer).sum(0)  # (in, out)
        delta = mean[gone].astype(np.float64) @ taps[gone].astype(np.float64)
        if layer.use_bias:
            shifts[name] = (1, delta)
        else:
            bn = _following_bn(graph, name)
            if bn is not None:  # read by this layer alone, so shifted once
                lay = graph.layers[bn]
                shifts[bn] = (kind_of(lay).mean_index(lay), -delta)
    return shifts


def apply_shifts(weights, shifts, name):
    """`weights` (a layer's `get_weights()`) with the shift of layer `name` added, as new arrays."""
    if name not in shifts:
        return weights
    index, delta = shifts[name]
    weights = list(weights)
    weights[index] = (weights[index] + delta).astype(weights[index].dtype)
    return weights
