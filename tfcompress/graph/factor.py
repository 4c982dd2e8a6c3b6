"""Layer-kind facts for rewriting one linear layer as two: low-rank factors and depthwise-separable form.

Two facts of the layer-kind table (`LayerKind.factor`, `LayerKind.separate`), filled for Dense and Conv2D
in `builtin.py`:

* `factor(layer, method) -> Factored | None`: the layer's kernel as one matrix `M` (rows, cols), and how to
  build the two layers whose composition computes `x -> x @ A @ B` for any `A` (rows, K), `B` (K, cols).
  With `A @ B == M` the pair computes exactly what the layer did. Methods: `"weight"` (Dense: in -> K ->
  out; Conv2D: a kh×kw conv to K filters, then a 1×1 conv) and `"spatial"` (Conv2D only: a kh×1 conv to K
  filters, then a 1×kw conv, as AIMET's spatial SVD). None when the layer cannot be factored so.
* `separate(layer) -> Separated | None`: a Conv2D kh×kw as a DepthwiseConv2D kh×kw and a Conv2D 1×1,
  with the weights of the best such approximation of its kernel (per input channel, the rank-1 truncated
  SVD of that channel's (kh*kw, out) slice; Eckart-Young makes it the least-squares optimum).

The second layer of each pair keeps the original's config (name, activation, bias, regularizers), so it
outputs what the original output, under the same name; the first is named `<name>_lr` (low rank) or
`<name>_dw` (depthwise) and has no bias.
"""
import dataclasses
from typing import Callable

import numpy as np

from tfcompress._tf import keras

L = keras.layers
METHODS = ("weight", "spatial")


@dataclasses.dataclass(frozen=True)
class Factored:
    """A layer as `x -> x @ A @ B` with `A @ B ≈ matrix`.

    Attributes:
      matrix: the kernel as one (rows, cols) float64 matrix.
      layers: `layers(rank) -> (first, second)`, two fresh unbuilt layers for factors of that rank.
      weights: `weights(a, b) -> (first weights, second weights)` from `a` (rows, K) and `b` (K, cols).
    """
    matrix: np.ndarray
    layers: Callable
    weights: Callable

    @property
    def full_rank(self):
        return int(min(self.matrix.shape))


@dataclasses.dataclass(frozen=True)
class Separated:
    """A Conv2D as a depthwise conv then a 1×1 conv: the two fresh layers and their weights."""
    layers: tuple
    weights: tuple
    relative_error: float   # ||W - W_separable||_F / ||W||_F of the kernel


def _dtype(cfg):
    return cfg.get("dtype")


def _bias(layer):
    return layer.get_weights()[1:]


def dense_factor(layer, method):
    if method != "weight":
        return None
    cfg = layer.get_config()
    kernel = layer.get_weights()[0].astype(np.float64)

    def layers(rank):
        first = L.Dense(int(rank), use_bias=False, name=f"{layer.name}_lr", dtype=_dtype(cfg))
        return first, L.Dense.from_config(dict(cfg))

    return Factored(kernel, layers, lambda a, b: ([a], [b] + _bias(layer)))


def _conv_ok(layer):
    return (type(layer) is L.Conv2D and getattr(layer, "groups", 1) == 1
            and layer.data_format == "channels_last")


def conv_factor(layer, method):
    if method not in METHODS or not _conv_ok(layer):
        return None
    cfg = layer.get_config()
    w = layer.get_weights()[0].astype(np.float64)            # (kh, kw, cin, cout)
    kh, kw, cin, cout = w.shape
    (sh, sw), (dh, dw) = layer.strides, layer.dilation_rate
    common = dict(padding=cfg["padding"], use_bias=False, name=f"{layer.name}_lr", dtype=_dtype(cfg))
    if method == "weight":
        matrix = w.reshape(kh * kw * cin, cout)

        def layers(rank):
            first = L.Conv2D(int(rank), (kh, kw), strides=(sh, sw), dilation_rate=(dh, dw), **common)
            second = L.Conv2D.from_config(dict(cfg, kernel_size=(1, 1), strides=(1, 1), padding="valid",
                                               dilation_rate=(1, 1)))
            return first, second

        def weights(a, b):
            k = a.shape[1]
            return [a.reshape(kh, kw, cin, k)], [b.reshape(1, 1, k, cout)] + _bias(layer)
        return Factored(matrix, layers, weights)
    if kh == 1 or kw == 1:
        return None
    # W[i, j, c, o] = sum_k A[(i, c), k] B[k, (j, o)]: rows are (kernel row, input), cols (kernel column, output)
    matrix = w.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)

    def layers(rank):
        # 'same' padding pads each axis from that axis's kernel size and stride alone, so the two convs pad
        # exactly as the original did; the first has no bias, so the padded columns it sees stay zero
        first = L.Conv2D(int(rank), (kh, 1), strides=(sh, 1), dilation_rate=(dh, 1), **common)
        second = L.Conv2D.from_config(dict(cfg, kernel_size=(1, kw), strides=(1, sw), dilation_rate=(1, dw)))
        return first, second

    def weights(a, b):
        k = a.shape[1]
        first = a.reshape(kh, cin, k)[:, None]                         # (kh, 1, cin, k)
        second = b.reshape(k, kw, cout).transpose(1, 0, 2)[None]       # (1, kw, k, cout)
        return [first], [second] + _bias(layer)
    return Factored(matrix, layers, weights)


def conv_separate(layer):
    if not _conv_ok(layer) or tuple(layer.kernel_size) == (1, 1):
        return None
    cfg = layer.get_config()
    w = layer.get_weights()[0].astype(np.float64)            # (kh, kw, cin, cout)
    kh, kw, cin, cout = w.shape
    depthwise = np.zeros((kh, kw, cin, 1))
    pointwise = np.zeros((1, 1, cin, cout))
    for c in range(cin):
        u, s, vt = np.linalg.svd(w[:, :, c, :].reshape(kh * kw, cout), full_matrices=False)
        root = np.sqrt(s[0])
        depthwise[:, :, c, 0] = (u[:, 0] * root).reshape(kh, kw)
        pointwise[0, 0, c, :] = vt[0] * root
    approx = depthwise[:, :, :, 0, None] * pointwise[0, 0][None, None]
    norm = np.linalg.norm(w)
    error = float(np.linalg.norm(w - approx) / norm) if norm > 0 else 0.0
    first = L.DepthwiseConv2D((kh, kw), strides=layer.strides, padding=cfg["padding"],
                              dilation_rate=layer.dilation_rate, depth_multiplier=1, use_bias=False,
                              name=f"{layer.name}_dw", dtype=_dtype(cfg))
    second = L.Conv2D.from_config(dict(cfg, kernel_size=(1, 1), strides=(1, 1), padding="valid",
                                       dilation_rate=(1, 1)))
    weights = ([depthwise.astype(np.float32)], [pointwise.astype(np.float32)] + _bias(layer))
    return Separated((first, second), weights, error)
