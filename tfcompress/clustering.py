"""Weight clustering (weight sharing) on tfmot's clustering wrapper.

Each chosen layer's kernel is replaced in the forward pass by `centroids[indices]`: at most `k`
distinct values per tensor (per output channel with `per_channel=True` on Conv2D). Centroids are
trained by gradient descent inside a plain `fit`; no callback is needed (`CompressionCallback` only
adds per-layer cluster counts to its TensorBoard summaries). `tfc.strip` removes the wrappers and
leaves the shared values in plain kernels.

With `preserve_sparsity` (the default) one centroid of every tensor is pinned at exactly zero and
every weight that was zero when clustering started stays zero, so a pruned model keeps its zeros
where they were: prune -> strip -> cluster -> strip -> quantize, Deep Compression's order.

Quantization-aware training that keeps the clusters (and the zeros) needs tfmot's
`Default8BitClusterPreserveQuantizeScheme`; `quantize_preserving_clusters` applies it to a stripped
clustered model.
"""
import warnings

import numpy as np

from tfcompress._tf import keras, tf, tfmot
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.callbacks import iter_layers, register_driver
from tfcompress.errors import InputError, UnsupportedModelError
from tfcompress.graph import copy_model, map_layers
from tfcompress.stripping import register_stripper

from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper as _cw  # noqa: E402
from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry as _registry  # noqa

__all__ = ["cluster", "wrappers", "distinct_values", "quantize_preserving_clusters", "INITS"]

_CI = tfmot.clustering.keras.CentroidInitialization
INITS = {"kmeans++": _CI.KMEANS_PLUS_PLUS, "linear": _CI.LINEAR, "density": _CI.DENSITY_BASED,
         "random": _CI.RANDOM}
ClusterWeights = _cw.ClusterWeights
_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


@keras.utils.register_keras_serializable(package="tfcompress")
class ClusterWrapper(ClusterWeights):
    """tfmot's `ClusterWeights` whose sparsity masks and pinned-zero centroid indices are variables.

    tfmot keeps both as tensors computed in `build` from the weights the layer has then. A loaded
    model is built from freshly initialized weights before the saved ones are assigned, so its masks
    and zero index would describe random weights (and pin the wrong centroid to zero). As variables
    they are saved and restored with the model.
    """

    def build(self, input_shape):
        super().build(input_shape)
        for name in list(self.sparsity_masks):
            mask, zero = self.sparsity_masks[name], self.zero_idx[name]
            self.sparsity_masks[name] = self.add_weight(
                f"sparsity_mask_{name}", shape=mask.shape, dtype=mask.dtype, trainable=False,
                initializer=keras.initializers.Constant(keras.backend.get_value(mask)))
            self.zero_idx[name] = self.add_weight(
                f"zero_index_{name}", shape=zero.shape, dtype=tf.int64, trainable=False,
                initializer=keras.initializers.Constant(keras.backend.get_value(zero)))


def wrappers(model):
    """The clustering wrappers of a model (nested models included)."""
    return [l for l in iter_layers(model) if isinstance(l, ClusterWeights)]


def _clusterable(layer):
    if isinstance(layer, (ClusterWeights, keras.Model, keras.layers.InputLayer)):
        return False
    if isinstance(layer, tfmot.clustering.keras.ClusterableLayer):
        return True
    return _registry.ClusteringRegistry.supports(layer) and bool(layer.trainable_weights) and \
        any(getattr(layer, a, None) is not None for a in _KERNELS)


def _check_k(k, where, preserve_sparsity):
    low = 3 if preserve_sparsity else 2
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < low:
        extra = " (one centroid is the pinned zero with preserve_sparsity=True)" if preserve_sparsity else ""
        raise InputError(f"{where} must be an integer >= {low}{extra}. Got: {k!r}")
    return int(k)


def _choose(model, clusters, layers, preserve_sparsity):
    """{layer name: k} for the layers to cluster."""
    names = {l.name: l for l in model.layers}
    if isinstance(clusters, dict):
        chosen = {n: _check_k(k, f"clusters[{n!r}]", preserve_sparsity) for n, k in clusters.items()}
        if layers is not None:
            raise InputError("give the layers either as the keys of clusters={name: k} or as layers=, not both")
        explicit = True
    else:
        k = _check_k(clusters, "clusters", preserve_sparsity)
        if layers is None:
            chosen, explicit = {l.name: k for l in model.layers if _clusterable(l)}, False
        elif callable(layers):
            chosen, explicit = {l.name: k for l in model.layers if layers(l)}, False
        else:
            chosen, explicit = {n: k for n in ([layers] if isinstance(layers, str) else layers)}, True
    missing = [n for n in chosen if n not in names]
    if missing:
        raise InputError(f"no layer named {', '.join(map(repr, missing))} in model {model.name!r}")
    bad = [n for n in chosen if not _clusterable(names[n])]
    if bad and explicit:
        raise InputError(f"layer(s) {', '.join(bad)} cannot be clustered (no kernel tfmot can cluster); implement "
                         "tfmot.clustering.keras.ClusterableLayer for custom layers")
    return {n: k for n, k in chosen.items() if n not in bad}


def _kernel_size(layer, per_channel):
    kernel = next((getattr(layer, a) for a in _KERNELS if getattr(layer, a, None) is not None), None)
    if kernel is None:
        return None
    n = int(np.prod(kernel.shape))
    return n // int(kernel.shape[-1]) if per_channel and isinstance(layer, keras.layers.Conv2D) else n


def cluster(model, clusters=16, init="kmeans++", preserve_sparsity=True, per_channel=False, layers=None):
    """Wraps a model's layers so each weight tensor shares at most `clusters` values.

    Cluster a trained model (pruned and stripped, for Deep Compression), fine-tune it with a small
    learning rate in a plain `fit`, then `tfc.strip` it. The input model is not changed.

    Example:

    ```python
    clustered = tfc.cluster(tfc.strip(pruned), clusters=16)          # zeros kept where they are
    clustered = tfc.cluster(model, clusters={"conv1": 32, "fc1": 16}, per_channel=True)
    ```

    Args:
      model: a Sequential or functional tf_keras model; a model still wrapped by `tfc.prune` is
        stripped first (its masks applied).
      clusters: the number of shared values per weight tensor, or `{layer name: k}` to cluster only
        those layers, each with its own count. With `preserve_sparsity` the pinned zero is one of
        them. Defaults to `16`.
      init: how centroids start: "kmeans++", "linear" (evenly spaced between min and max),
        "density" (evenly spaced on the CDF) or "random". Defaults to `"kmeans++"`.
      preserve_sparsity: pin one centroid at zero and keep every zero weight zero. Defaults to `True`.
      per_channel: cluster each output channel of a Conv2D kernel on its own (`clusters` values per
        channel); other layers cluster the whole tensor. Defaults to `False`.
      layers: None for every clusterable layer (Dense, Conv, DepthwiseConv, Embedding, ...), a list of
        names, or a predicate `layer -> bool`. Defaults to `None`.

    Returns:
      A new model whose chosen layers are `ClusterWrapper`s (tfmot's `ClusterWeights`). A layer whose tensor has
      no more than `clusters` entries (per channel with `per_channel`) is left unwrapped: it already
      holds at most that many values.

    Raises:
      InputError: `clusters` below 2 (below 3 with `preserve_sparsity`) or not an integer, an
        unknown `init`, unknown or unclusterable layer names, or an already clustered model.
      UnsupportedModelError: a Keras 3, subclassed or quantization-aware model.
    """
    model = tf_keras_model(model)
    if init not in INITS:
        raise InputError(f"init must be one of {', '.join(INITS)}. Got: {init!r}")
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise UnsupportedModelError(f"{type(model).__name__} is a subclassed model; tfc.cluster supports "
                                    "Sequential and functional models")
    if wrappers(model):
        raise InputError(f"model {model.name!r} is already clustered: tfc.strip it before clustering again")
    if any(type(l).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer") for l in model.layers):
        raise UnsupportedModelError("cluster before quantization-aware training: tfc.cluster, fine-tune, "
                                    "tfc.strip, then tfc.quantize")
    from tfcompress.pruning.magnitude import wrappers as prune_wrappers
    if prune_wrappers(model):
        from tfcompress.stripping import strip
        model = strip(model)
    chosen = _choose(model, clusters, layers, preserve_sparsity)
    by_name = {l.name: l for l in model.layers}
    chosen = {n: k for n, k in chosen.items() if (_kernel_size(by_name[n], per_channel) or 0) > k}
    if not chosen:
        raise InputError(f"model {model.name!r} has no layer with more than {clusters} weights to cluster")

    def wrap(layer):   # a built copy with the trained weights: the caller's model stays untouched
        if layer.name not in chosen:
            return layer
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional, keras.layers.MultiHeadAttention)):
            return tfmot.clustering.keras.cluster_weights(
                layer, number_of_clusters=chosen[layer.name], cluster_centroids_init=INITS[init],
                preserve_sparsity=bool(preserve_sparsity))
        wrapper = ClusterWrapper(layer, chosen[layer.name], INITS[init], bool(preserve_sparsity), bool(per_channel))
        try:
            wrapper.build(by_name[layer.name].input_shape)
        except tf.errors.InvalidArgumentError:
            # tfmot's kmeans++ needs as many distinct weights as centroids on each side of the pinned
            # zero (in each channel); a sparse small tensor may have fewer
            warnings.warn(f"layer {layer.name}: too few non-zero weights for kmeans++ with {chosen[layer.name]} "
                          "clusters; its centroids start evenly spaced (init='linear') instead")
            wrapper = ClusterWrapper(layer, chosen[layer.name], INITS["linear"], bool(preserve_sparsity),
                                     bool(per_channel))
        return wrapper

    try:
        return map_layers(model, wrap)
    except ValueError as e:
        first = str(e).strip().splitlines()[0][:300]
        raise UnsupportedModelError(f"tfmot could not cluster model {model.name!r}: {first}") from None


def distinct_values(array, axis=None):
    """Number of distinct values in an array, or the largest count over slices along `axis`.

    >>> distinct_values([[0.5, 0.0], [0.5, 0.25]])
    3
    >>> distinct_values([[1, 2], [1, 1]], axis=-1)
    2
    """
    a = np.asarray(array)
    if axis is None:
        return int(np.unique(a).size)
    a = np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])
    return max(int(np.unique(a[:, c]).size) for c in range(a.shape[1]))


def kernel_of(layer):
    """The clusterable kernel variable of a layer (kernel, depthwise or pointwise kernel), or None."""
    return next((getattr(layer, a) for a in _KERNELS if getattr(layer, a, None) is not None), None)


class _ClusteringDriver:
    """Only reports: clustering needs no schedule. Gives TensorBoard the clusters in use per layer."""

    def __init__(self, layers):
        self.layers = layers

    def summaries(self):
        out = {}
        for w in self.layers:
            for name, indices in w.pulling_indices.items():
                tag = f"clusters/{w.layer.name}" + ("" if name == "kernel" else f"/{name}")
                out[tag] = float(np.unique(indices.numpy()).size)
        return out


@register_driver
def _driver(model):
    found = wrappers(model)
    return _ClusteringDriver(found) if found else None


@register_stripper
def _strip(model):
    found = wrappers(model)
    if not found:
        return None
    names = {w.name for w in found}
    plain = copy_model(tfmot.clustering.keras.strip_clustering(model))
    for layer in iter_layers(plain):
        kernel = kernel_of(layer) if layer.name in names or f"cluster_{layer.name}" in names else None
        if kernel is not None:
            # a zero centroid pinned by multiplying a negative one by 0 is -0.0; the file would store the
            # sign bit, and a coder that reads bits (Deep Compression's) would not see those zeros
            kernel.assign(kernel + 0.0)
    return plain


def quantize_preserving_clusters(model, preserve_sparsity=True):
    """Wraps a stripped clustered model for 8-bit QAT that keeps its clusters (and zeros).

    tfmot's `Default8BitClusterPreserveQuantizeScheme`: each Dense/Conv kernel is trained as its
    centroids and fixed assignments, so after QAT each tensor (each output channel of a per-channel
    quantized Conv kernel) still holds at most as many values as it had, and the int8 file as many
    int8 values. Dense kernels are quantized per tensor, Conv kernels per output channel.

    Args:
      model: a clustered model after `tfc.strip` (a wrapped one is stripped first).
      preserve_sparsity: keep the zero weights exactly zero too. Defaults to `True`.

    Returns:
      A QAT model (tfmot `QuantizeWrapperV2` layers); export it with `tfc.export(..., mode="int8")`.
    """
    model = tf_keras_model(model)
    if wrappers(model):
        model = _strip(model)
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        default_8bit_cluster_preserve_quantize_scheme as _cqat)
    scheme = _cqat.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=bool(preserve_sparsity))
    q = tfmot.quantization.keras
    try:
        annotated = q.quantize_annotate_model(model)
        with q.quantize_scope():
            return q.quantize_apply(annotated, scheme)
    except (ValueError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise UnsupportedModelError(f"tfmot could not quantize model {model.name!r} preserving clusters: "
                                    f"{first}") from None


CUSTOM_OBJECTS = {"ClusterWrapper": ClusterWrapper, "tfcompress>ClusterWrapper": ClusterWrapper,
                  "ClusterWeights": ClusterWeights, "ClusterWeightsRNN": _cw.ClusterWeightsRNN,
                  "ClusterWeightsMHA": _cw.ClusterWeightsMHA}
