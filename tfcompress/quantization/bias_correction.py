"""Empirical bias correction (Nagel et al. 2019, §4.2): the mean shift weight quantization causes, put back.

Quantizing a kernel `W` to `Q(W)` moves each output channel's mean by `E[(W - Q(W)) x]`, and the shifts
add up layer after layer; a ReLU turns a shifted mean into a different activation. With calibration data
the shift is measured instead of derived: layer by layer in topological order, the mean pre-activation
output of the float model (`E[W x]`) minus that of a model whose earlier layers already hold their
quantized kernels and corrected biases (`E[Q(W) x~]`), per output channel, is added to the layer's bias.
The kernels stay float: the converter quantizes them to exactly the `Q(W)` simulated here (symmetric
int8, [-127, 127], one scale per output channel or per tensor, as the export asks), so the file holds
`Q(W)` and the corrected bias.

BatchNormalization layers are folded into their weight layers first (as the converter folds them), and
weight layers without a bias get one, so the correction has somewhere to go.
"""
import dataclasses

import numpy as np

from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.graph import clone_layer, copy_model, kind_of, require_graph
from tfcompress.quantization.equalize import fold_batchnorm, weight_kind

QMAX = 127   # TFLite int8 weights: symmetric, zero point 0, narrow range [-127, 127]


@dataclasses.dataclass
class BiasCorrection:
    """Per layer: the largest |correction| added to its bias and the output mean error before it."""
    layers: dict = dataclasses.field(default_factory=dict)   # name -> {"max_shift": float, "mean_error": float}
    per_channel: bool = True
    samples: int = 0


def quantize_kernel(layer, per_channel=True):
    """`Q(kernel)` of a weight layer: its kernel as the int8 file holds it, dequantized (symmetric, one
    scale per output channel or one per tensor)."""
    kind = kind_of(layer)
    kernel = layer.get_weights()[0]
    layer = _linear_twin(layer, layer.get_weights())   # fold refuses fused activations; the kernel is all we scale
    filters = np.abs(kind.filters(layer).astype(np.float64))
    n = filters.shape[-1]
    rng = filters.reshape(-1, n).max(0) if per_channel else np.full(n, filters.max())
    scale = np.where(rng > 0, rng / QMAX, 1.0)
    _, (scaled,) = kind.fold(layer, [kernel.astype(np.float64)], 1.0 / scale)
    _, (back,) = kind.fold(layer, [np.clip(np.round(scaled), -QMAX, QMAX)], scale)
    return back.astype(kernel.dtype)


def _linear_twin(layer, weights):
    """A copy of `layer` without its fused activation, holding `weights` (its pre-activation output)."""
    cfg = layer.get_config()
    if "activation" in cfg:
        cfg = dict(cfg, activation="linear")
    twin = clone_layer(layer, cfg)
    twin.build(layer.input_shape)
    twin.set_weights(weights)
    return twin


def _mean_out(model, layer, weights, x, batch_size):
    probe = keras.Model(model.inputs, model.get_layer(layer.name).input)
    twin = _linear_twin(layer, weights)
    total, count = 0.0, 0
    for i in range(0, len(x), batch_size):
        y = twin(probe(x[i:i + batch_size], training=False)).numpy().astype(np.float64)
        y = y.reshape(-1, y.shape[-1])
        total, count = total + y.sum(0), count + len(y)
    return total / count


def correct_biases(model, data, per_channel=True, samples=256, batch_size=64, progress=None):
    """A copy of `model` whose biases undo the mean shift of int8 weight quantization, layer by layer.

    Args:
      model: a functional or Sequential tf_keras model (not changed).
      data: calibration inputs (an array, or `(x, y)`), e.g. the export's representative data.
      per_channel: simulate one weight scale per output channel (`True`) or per tensor. Defaults to `True`.
      samples: how many samples to measure the means on. Defaults to `256`.
      batch_size: samples per forward pass. Defaults to `64`.
      progress: `progress(iterable) -> iterable` wrapping the layers (a progress bar). Defaults to `None`.

    Returns:
      `(model, BiasCorrection)`: BatchNormalization folded, every weight layer with a corrected bias.

    Raises:
      InputError: no data.
    """
    x = data[0] if isinstance(data, tuple) else data
    if x is None or len(x) == 0:
        raise InputError("bias correction needs calibration data: a few hundred typical inputs")
    x = np.asarray(x, dtype=np.float32)[:samples]
    folded, _ = fold_batchnorm(require_graph(model, "bias correction"), biases=True)
    quant, out = copy_model(folded), copy_model(folded)   # folded stays the float reference throughout
    layers = [l for l in folded.layers if weight_kind(l) is not None and getattr(l, "use_bias", False)]
    info = BiasCorrection(per_channel=per_channel, samples=len(x))
    for layer in (progress or (lambda r: r))(layers):
        kernel, bias = layer.get_weights()[:2]
        q = quantize_kernel(layer, per_channel)
        want = _mean_out(folded, layer, [kernel, bias], x, batch_size)
        got = _mean_out(quant, layer, [q, bias], x, batch_size)
        shift = want - got
        new_bias = (bias.astype(np.float64) + shift).astype(bias.dtype)
        quant.get_layer(layer.name).set_weights([q, new_bias])
        out.get_layer(layer.name).set_weights([kernel, new_bias])
        info.layers[layer.name] = {"max_shift": float(np.abs(shift).max()),
                                   "mean_error": float(np.abs(shift).mean())}
    return out, info


def check_export(mode, qat, representative_data, bias_correction, per_channel):
    """Notes for the export report; refuses options that do not apply: per-tensor weights and bias
    correction are for post-training int8 / int16x8 (a QAT model's biases and scales are learned)."""
    what = "bias_correction" if bias_correction else "per_channel=False"
    if mode not in ("int8", "int16x8"):
        raise InputError(f"{what} applies to int8 and int16x8 export. Got mode: {mode!r}")
    if qat and bias_correction:
        raise InputError("bias_correction applies to post-training quantization; a QAT model exports the "
                         "biases it learned")
    if bias_correction and representative_data is None:
        raise InputError("bias_correction needs representative_data: a few hundred typical inputs")
    if qat and not per_channel:
        return ["per_channel=False: a QAT model's weights keep the scales it learned"]
    return []


def export_model(model, data, per_channel, samples):
    """`(model, note)`: the bias-corrected model `tfc.export` converts, and the line its report gets."""
    corrected, info = correct_biases(model, data, per_channel=per_channel, samples=samples)
    worst = max(info.layers.items(), key=lambda kv: kv[1]["max_shift"], default=(None, None))
    where = f"; largest shift {worst[1]['max_shift']:.3g} in {worst[0]}" if worst[0] else ""
    return corrected, (f"bias correction: {len(info.layers)} layers on {info.samples} samples for "
                       f"{'per-channel' if per_channel else 'per-tensor'} weights{where}")
