"""Weight grids below 8 bits for QAT: int4, ternary, binary and powers of two, each with a
straight-through estimator, as tfmot `Quantizer`s of Conv2D / Dense kernels.

The forward pass uses the kernel snapped to its grid; the backward pass treats the snap as identity
(`w + stop_gradient(q(w) - w)`: the real-valued kernel is what the optimizer updates, as in
BinaryConnect). Every grid is computed per output channel (the kernel's last axis) or, with
`per_channel=False`, over the whole tensor:

- `int4`: s = max|w| / 7, levels -7..7 (zero point 0). The 16th code, -8, is left unused: TFLite's int4
  weights are symmetric with zero point 0, and a scale of max|w| / 7 is what ai-edge-quantizer's
  symmetric min-max derives, so the file holds these levels exactly (`tfcompress.tflite.int4`).
- `ternary`: {-a, 0, a} (TWN, Li et al. 2016): threshold d = 0.7 mean|w|, a = mean |w| over |w| > d.
- `binary`: {-a, a}, a = mean|w| (XNOR-Net's scale on BinaryConnect's sign; sign(0) = +1).
- `pow2`: {0, ±2^k}, k from kmax - E + 1 to kmax, kmax = round(log2 max|w|), k = round(log2 |w|)
  clipped to that range, and |w| < 2^(kmax - E) is 0: at most 2E + 1 values (E = `exponents`, 1..7).
- `int8`: s = max|w| / 127, levels -127..127 (tfmot's symmetric weights, here also per tensor for Conv).

After the snap, every grid but int4 goes through TensorFlow's int8 fake-quant with the range
[-127 t, 127 t], t the grid's int8 step (ternary, binary: a / 127; pow2: 2^kmax / 64; int8: s): an
identity on the grid values, and the range the TFLite converter turns into the int8 scale, so the int8
file holds integer multiples of t that are exactly the grid (±127 and 0 for ternary, ±64 ... ±64 / 2^(E-1)
and 0 for pow2). The converter takes no per-channel FULLY_CONNECTED weights from QAT, so Dense kernels
reach it with one step, the largest of their channels', and `tfc.export` then writes the per-channel
kernel, steps and biases into the file (`tfcompress.tflite.low_bit.per_channel_dense`).
int4 kernels are written by ai-edge-quantizer from the snapped values (`tfcompress.tflite.int4`).
"""
import contextlib
import copy

from tfcompress._tf import keras, tf, tfmot
from tfcompress.quantization.scheme import (Registry, Scheme, SparsityPreservingQuantizeConfig, WrappedQuantizeConfig,
                                            _KeepZeros)

GRIDS = ("int8", "int4", "ternary", "binary", "pow2")
LOW_BIT = GRIDS[1:]
MAX_EXPONENTS = 7   # pow2: 2^kmax / 64 as the int8 step puts 2^kmax ... 2^(kmax-6) on 64 ... 1
_EPS = 1e-12


def check(weights, exponents=4):
    """Raises ValueError for an unknown grid or an exponent range int8 cannot hold exactly."""
    if weights not in GRIDS:
        raise ValueError(f"weights must be one of {', '.join(GRIDS)}. Got: {weights!r}")
    if isinstance(exponents, bool) or not isinstance(exponents, int) or not 1 <= exponents <= MAX_EXPONENTS:
        raise ValueError(f"exponents must be an integer from 1 to {MAX_EXPONENTS}. Got: {exponents!r}")


def levels_per_channel(weights, exponents=4):
    """The most distinct values a channel can hold on the grid."""
    return {"int8": 255, "int4": 15, "ternary": 3, "binary": 2, "pow2": 2 * exponents + 1}[weights]


def snap(w, weights, per_channel=True, exponents=4):
    """(grid values, int8 step) of kernel `w`; the step has the kernel's rank (size 1 but the last axis).

    The grid values are integer multiples of the step (`round(values / step)` is the int8 content)."""
    axes = list(range(len(w.shape) - 1)) if per_channel else list(range(len(w.shape)))
    a = tf.abs(w)
    if weights in ("int8", "int4"):
        top = 127.0 if weights == "int8" else 7.0
        step = tf.maximum(tf.reduce_max(a, axis=axes, keepdims=True), _EPS) / top
        return tf.clip_by_value(tf.round(w / step), -top, top) * step, step
    sign = tf.where(w < 0, -tf.ones_like(w), tf.ones_like(w))
    if weights == "binary":
        alpha = tf.maximum(tf.reduce_mean(a, axis=axes, keepdims=True), _EPS)
        return sign * alpha, alpha / 127.0
    if weights == "ternary":
        kept = tf.cast(a > 0.7 * tf.reduce_mean(a, axis=axes, keepdims=True), w.dtype)
        alpha = tf.reduce_sum(a * kept, axis=axes, keepdims=True) / tf.maximum(
            tf.reduce_sum(kept, axis=axes, keepdims=True), 1.0)
        alpha = tf.maximum(alpha, _EPS)
        return sign * kept * alpha, alpha / 127.0
    kmax = tf.round(tf.math.log(tf.maximum(tf.reduce_max(a, axis=axes, keepdims=True), _EPS)) / tf.math.log(2.0))
    kmin = kmax - (exponents - 1)
    k = tf.clip_by_value(tf.round(tf.math.log(tf.maximum(a, _EPS)) / tf.math.log(2.0)), kmin, kmax)
    kept = tf.cast(a >= tf.pow(2.0, kmin - 1.0), w.dtype)
    return sign * kept * tf.pow(2.0, k), tf.pow(2.0, kmax) / 64.0


@keras.utils.register_keras_serializable(package="tfcompress")
class GridWeightsQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
    """A kernel on one of `GRIDS`, trained through a straight-through estimator (module docstring).

    The grid is a function of the kernel, computed in every call. For the converter it is also stored
    (`<name>_grid`, `<name>_step`, non-trainable): the converter folds a fake-quant only of constants
    and would leave the arithmetic of the snap in the file for a large kernel, so inside
    `stored_grids(model)` (what `tfc.export` converts in) inference reads the stored grid instead.
    """

    stored = False   # set by `stored_grids` while a converter traces the model

    def __init__(self, weights="int4", per_channel=True, exponents=4):
        check(weights, exponents)
        self.weights, self.per_channel, self.exponents = weights, bool(per_channel), int(exponents)

    def build(self, tensor_shape, name, layer):
        shape = list(tensor_shape)
        step_shape = [1] * (len(shape) - 1) + [shape[-1]] if self.per_channel else [1] * len(shape)
        grid = layer.add_weight(f"{name}_grid", shape=shape, initializer=keras.initializers.Zeros(), trainable=False)
        step = layer.add_weight(f"{name}_step", shape=step_shape, initializer=keras.initializers.Ones(),
                                trainable=False)
        source = getattr(layer.layer, name, None)
        if source is not None:
            with tf.init_scope():
                values, s = self.grid(tf.convert_to_tensor(source))
                grid.assign(values)
                step.assign(s)
        return {"grid": grid, "step": step}

    def snap(self, w):
        return snap(w, self.weights, self.per_channel, self.exponents)

    def _fake_quant(self, w, step, converter=False):
        if self.weights == "int4":   # written by ai-edge-quantizer from these values, not by the converter
            return w
        if self.per_channel and not (converter and len(w.shape) == 2):
            step = tf.reshape(step, [-1])
            return tf.quantization.fake_quant_with_min_max_vars_per_channel(
                w, -127.0 * step, 127.0 * step, num_bits=8, narrow_range=True)
        # the converter takes no per-channel FULLY_CONNECTED weights from QAT (a per-axis kernel meets the
        # transpose to TFLite's layout): it gets the largest channel's step, and the exact per-channel
        # kernel is written into the file after it (`tfcompress.tflite.low_bit.per_channel_dense`)
        step = tf.reshape(tf.reduce_max(step), [])
        return tf.quantization.fake_quant_with_min_max_vars(w, -127.0 * step, 127.0 * step, num_bits=8,
                                                           narrow_range=True)

    def grid(self, w):
        """(the kernel the forward pass uses, the step of its integer levels in the file)."""
        values, step = self.snap(w)
        return self._fake_quant(values, step), step

    def __call__(self, inputs, training, weights, **kwargs):
        if self.stored and not training and "grid" in weights:   # a fake-quant of two constants
            return self._fake_quant(weights["grid"], weights["step"], converter=True)
        values, step = self.snap(inputs)
        # straight-through: the forward value is the grid, d out / d w = 1 (also where the fake-quant
        # would clip, at ±a for binary and ternary)
        return inputs + tf.stop_gradient(self._fake_quant(values, step) - inputs)

    def get_config(self):
        return {"weights": self.weights, "per_channel": self.per_channel, "exponents": self.exponents}

    def __eq__(self, other):
        return isinstance(other, GridWeightsQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


@keras.utils.register_keras_serializable(package="tfcompress")
class SparsityPreservingGridQuantizer(_KeepZeros, GridWeightsQuantizer):
    """A grid quantizer that keeps a pruned kernel's zeros zero (int4, ternary, pow2 and int8 hold 0)."""


@keras.utils.register_keras_serializable(package="tfcompress")
class GridQuantizeConfig(WrappedQuantizeConfig):
    """A tfmot weight config whose kernel quantizer is a `GridWeightsQuantizer`; activations and
    outputs as the wrapped config has them. A wrapper, so the grid is saved with the model."""

    def __init__(self, config, weights="int4", per_channel=True, exponents=4, keep_zeros=False):
        if isinstance(config, dict):
            config = keras.utils.deserialize_keras_object(config)
        self.weights, self.per_channel, self.exponents, self.keep_zeros = weights, per_channel, exponents, keep_zeros
        self.config = copy.copy(config)
        cls = SparsityPreservingGridQuantizer if keep_zeros else GridWeightsQuantizer
        self.config.weight_quantizer = cls(weights, per_channel, exponents)

    @property
    def weight_quantizer(self):
        return self.config.weight_quantizer

    def get_config(self):
        return {"config": keras.utils.serialize_keras_object(self.config), "weights": self.weights,
                "per_channel": self.per_channel, "exponents": self.exponents, "keep_zeros": self.keep_zeros}


def takes_grid(layer):
    """Conv2D and Dense kernels take a grid (the ops LiteRT runs with int4 weights: CONV_2D,
    FULLY_CONNECTED); depthwise kernels keep tfmot's int8."""
    return type(layer) in (keras.layers.Conv2D, keras.layers.Dense)


def grid_config(config, weights, per_channel, exponents, keep_zeros):
    """`config` with its kernel quantizer on the grid (unchanged when it quantizes no kernel)."""
    if getattr(config, "weight_quantizer", None) is None:
        return config
    return GridQuantizeConfig(config, weights, per_channel, exponents, keep_zeros)


class GridRegistry(Registry):
    """The scheme's registry with Conv2D / Dense kernels on a grid (int8 per channel: tfmot's own)."""

    def __init__(self, preserve_sparsity=False, schedules=None, weights="int8", per_channel=True, exponents=4):
        super().__init__(preserve_sparsity=preserve_sparsity, schedules=schedules)
        self.weights, self.per_channel, self.exponents = weights, per_channel, exponents

    def get_quantize_config(self, layer):
        config = super().get_quantize_config(layer)
        if not takes_grid(layer) or (self.weights == "int8" and self.per_channel):
            return config
        keep_zeros = isinstance(config, SparsityPreservingQuantizeConfig)
        return grid_config(config.config if keep_zeros else config, self.weights, self.per_channel,
                           self.exponents, keep_zeros)


class GridScheme(Scheme):
    """`Scheme` whose registry is a `GridRegistry`."""

    def __init__(self, preserve_sparsity=False, schedules=None, weights="int8", per_channel=True, exponents=4):
        super().__init__(preserve_sparsity=preserve_sparsity, schedules=schedules)
        self.grid = dict(weights=weights, per_channel=per_channel, exponents=exponents)

    def get_quantize_registry(self):
        return GridRegistry(preserve_sparsity=self.preserve_sparsity, schedules=self.schedules, **self.grid)


def grid_kernels(model):
    """{inner layer name: (values, step, GridWeightsQuantizer)} of a QAT model's grid kernels, as numpy:
    the kernel the forward pass uses (`values`) and its int8 step, per channel or of shape (1, ..., 1)."""
    from tfcompress.quantization.objects import QuantizeWrapper
    out = {}
    for layer in model.layers:
        if not isinstance(layer, QuantizeWrapper) or not isinstance(layer.quantize_config, GridQuantizeConfig):
            continue
        for weight, quantizer, qvars in layer._weight_vars:
            w = weight * qvars["sparsity_mask"] if "sparsity_mask" in qvars else weight
            values, step = quantizer.grid(tf.convert_to_tensor(w))
            out[layer.layer.name] = (values.numpy(), step.numpy(), quantizer)
    return out


CUSTOM_OBJECTS = {"GridWeightsQuantizer": GridWeightsQuantizer,
                  "SparsityPreservingGridQuantizer": SparsityPreservingGridQuantizer,
                  "GridQuantizeConfig": GridQuantizeConfig}


@contextlib.contextmanager
def stored_grids(model):
    """Stores every grid kernel's grid from its current kernel and has inference read the stored one
    while inside (for the converter); yields the model's grid, as `weights_of`."""
    from tfcompress.quantization.objects import QuantizeWrapper
    quantizers = []
    for layer in model.layers:
        if isinstance(layer, QuantizeWrapper) and isinstance(layer.quantize_config, GridQuantizeConfig):
            for weight, quantizer, qvars in layer._weight_vars:
                w = weight * qvars["sparsity_mask"] if "sparsity_mask" in qvars else weight
                values, step = quantizer.grid(tf.convert_to_tensor(w))
                qvars["grid"].assign(values)
                qvars["step"].assign(step)
                quantizers.append(quantizer)
    try:
        for q in quantizers:
            q.stored = True
        yield weights_of(model)
    finally:
        for q in quantizers:
            q.stored = False


def weights_of(model):
    """The weight grid of a QAT model's grid kernels ("int8" when it has none)."""
    from tfcompress.quantization.objects import QuantizeWrapper
    for layer in model.layers:
        if isinstance(layer, QuantizeWrapper) and isinstance(layer.quantize_config, GridQuantizeConfig):
            return layer.quantize_config.weights
    return "int8"
