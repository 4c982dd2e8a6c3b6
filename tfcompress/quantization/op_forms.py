"""TensorFlow ops called on Keras tensors, rewritten into layers QAT can wrap.

`x + 3.0` or `tf.math.multiply(x, 1 / 6)` on a Keras tensor becomes a `TFOpLambda` that keeps its
constant among the call's arguments; tfmot's QAT wrappers call a layer with its input tensor only, so
the constant is lost and the model cannot be quantized (hard-swish in MobileNetV3 is made of two of
them). Each elementwise op with one tensor and scalar constants becomes a `ConstantMath` layer holding
the constant in its config (same name, same math); an op on two tensors becomes the matching merge
layer (`Add`, `Subtract`, `Multiply`, `Maximum`, `Minimum`). The converter turns both back into the
same TFLite ops. A Conv / Dense whose fused activation TFLite cannot fuse (swish, sigmoid, gelu, ...)
becomes the linear layer followed by an `Activation`, so the tensor between them gets its int8 range.
`Rescaling`, `Normalization` and a BatchNormalization with no Conv / Dense before it to fold into
become a multiply and an add `ConstantMath` (their constants quantized: int8 MUL and ADD in the file). The rewrite goes through
`tfcompress.graph.Rewrite`.
"""
import numpy as np

from tfcompress._tf import keras, tf, tfmot
from tfcompress.graph import Rewrite, register_layer
from tfcompress.graph.walk import first_call, inbound_layers, times_called

_BINARY = {"add": tf.math.add, "subtract": tf.math.subtract, "multiply": tf.math.multiply,
           "truediv": tf.math.truediv, "maximum": tf.math.maximum, "minimum": tf.math.minimum}
# TFOpLambda function names -> (op, the tensor is the first operand)
_FUNCTIONS = {"__operators__.add": ("add", True), "math.add": ("add", True), "__operators__.radd": ("add", False),
              "__operators__.sub": ("subtract", True), "math.subtract": ("subtract", True),
              "__operators__.rsub": ("subtract", False), "__operators__.mul": ("multiply", True),
              "math.multiply": ("multiply", True), "__operators__.rmul": ("multiply", False),
              "__operators__.truediv": ("truediv", True), "math.truediv": ("truediv", True),
              "math.divide": ("truediv", True), "__operators__.rtruediv": ("truediv", False),
              "math.maximum": ("maximum", True), "math.minimum": ("minimum", True)}
_MERGES = {"add": keras.layers.Add, "subtract": keras.layers.Subtract, "multiply": keras.layers.Multiply,
           "maximum": keras.layers.Maximum, "minimum": keras.layers.Minimum}


@keras.utils.register_keras_serializable(package="tfcompress")
class ConstantMath(keras.layers.Layer):
    """`x op value` (or `value op x`) for an elementwise op and a constant: a scalar, or one value per
    channel of the last axis.

    Args:
      op: one of add, subtract, multiply, truediv, maximum, minimum.
      value: the constant, a number or a list (one per channel).
      tensor_first: the tensor is the left operand. Defaults to `True`.
    """

    CONSTANTS = ("constant",)

    def __init__(self, op, value, tensor_first=True, **kwargs):
        super().__init__(**kwargs)
        if op not in _BINARY:
            raise ValueError(f"op must be one of {', '.join(_BINARY)}. Got: {op!r}")
        self.op, self.tensor_first = op, bool(tensor_first)
        self.value = float(value) if np.ndim(value) == 0 else np.asarray(value, np.float32).tolist()

    def build(self, input_shape):
        # a weight, not a Python float, so QAT can fake-quantize it and the converter stores it as int8
        self.constant = self.add_weight("constant", shape=np.shape(self.value), trainable=False,
                                        initializer=keras.initializers.Constant(self.value))
        super().build(input_shape)

    def call(self, x):
        c = tf.cast(self.constant, x.dtype)
        return _BINARY[self.op](x, c) if self.tensor_first else _BINARY[self.op](c, x)

    def get_config(self):
        return dict(super().get_config(), op=self.op, value=self.value, tensor_first=self.tensor_first)


@keras.utils.register_keras_serializable(package="tfcompress")
class ConstantsQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """QAT of a layer whose constants are weights (`layer.CONSTANTS`, e.g. ConstantMath's constant): each
    on an 8-bit grid, so the int8 file's MUL / ADD reads an int8 constant, and the output on a learned
    8-bit range."""

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, name), tfmot.quantization.keras.quantizers.LastValueQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)) for name in layer.CONSTANTS]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        for name, value in zip(layer.CONSTANTS, quantize_weights):
            setattr(layer, name, value)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


ScalarMath = ConstantMath


# per-channel constants are sliced like any per-channel vector when channels go
register_layer(ConstantMath, "pass", elementwise=True, quantize="constant")
CUSTOM_OBJECTS = {"ConstantMath": ConstantMath, "tfcompress>ConstantMath": ConstantMath,
                  "ConstantsQuantizeConfig": ConstantsQuantizeConfig,
                  "tfcompress>ConstantsQuantizeConfig": ConstantsQuantizeConfig}


def _is_tensor(value):
    return hasattr(value, "_keras_history")


def _plan(layer):
    """What a TFOpLambda becomes: ("scalar", op, value, tensor_first), ("merge", op), or None."""
    if type(layer).__name__ != "TFOpLambda":
        return None
    spec = _FUNCTIONS.get(layer.get_config().get("function"))
    node = first_call(layer)
    if spec is None or node is None or times_called(layer) != 1:
        return None
    op, tensor_first = spec
    flat = [a for a in tf.nest.flatten((node.call_args, {k: v for k, v in node.call_kwargs.items() if k != "name"}))
            if a is not None]
    tensors = [a for a in flat if _is_tensor(a)]
    constants = [a for a in flat if not _is_tensor(a)]
    if len(tensors) == 1 and len(constants) == 1 and tf.experimental.numpy.ndim(constants[0]) == 0:
        return ("scalar", op, float(constants[0]), tensor_first)
    if len(tensors) == 2 and not constants and op in _MERGES and tensors[0].shape == tensors[1].shape:
        return ("merge", op)
    return None


def _rebuilt(plan):
    def build(layer, args, kwargs):
        tensors = [a for a in tf.nest.flatten((args, kwargs)) if _is_tensor(a)]
        if plan[0] == "scalar":
            _, op, value, first = plan
            return ConstantMath(op, value, first, name=layer.name)(tensors[0])
        return _MERGES[plan[1]](name=layer.name)(tensors)
    return build


def _affine(layer):
    """(scale, offset, trainable) of the affine map a Rescaling, Normalization or BatchNormalization
    computes in inference, or None."""
    if isinstance(layer, keras.layers.Rescaling):
        if np.ndim(layer.scale) or np.ndim(layer.offset):
            return None
        return float(layer.scale), float(layer.offset), False
    if isinstance(layer, keras.layers.Normalization):
        mean, var = layer.mean.numpy().reshape(-1), layer.variance.numpy().reshape(-1)
        if layer.invert or mean.shape[0] != int(layer.input_shape[-1]):
            return None
        scale = 1.0 / np.sqrt(np.maximum(var, keras.backend.epsilon()))
        return scale, -mean * scale, False
    if isinstance(layer, keras.layers.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if len(axis) != 1 or axis[0] not in (-1, len(layer.input_shape) - 1):
            return None
        n = int(layer.input_shape[-1])
        gamma = layer.gamma.numpy() if layer.scale else np.ones(n, np.float32)
        beta = layer.beta.numpy() if layer.center else np.zeros(n, np.float32)
        scale = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
        return scale, beta - layer.moving_mean.numpy() * scale, True
    return None


def _lone_batchnorm(layer, model_layers):
    """A BatchNormalization tfmot cannot fold: the layer before it is no Conv / Dense it folds into."""
    if not isinstance(layer, keras.layers.BatchNormalization):
        return False
    before = inbound_layers(layer)
    folds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    return not (len(before) == 1 and type(before[0]) in folds)


def _as_affine(layer, x):
    # two layers, so the product between MUL and ADD gets its own int8 range
    scale, offset, _ = _affine(layer)
    y = ConstantMath("multiply", scale, name=f"{layer.name}_scale")(x)
    return ConstantMath("add", offset, name=layer.name)(y)


# activations TFLite fuses into CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED; any other (swish, sigmoid,
# gelu, ...) is a separate op whose input needs an int8 range, so QAT needs it as a separate layer
_FUSABLE = ("linear", "relu", "relu6")


def _fused_activation(layer):
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None)
    if act is None or name is None or isinstance(layer, keras.layers.Activation) or name in _FUSABLE:
        return None
    return name if "activation" in layer.get_config() else None


def _split(name, act):
    def build(layer, x):
        linear = type(layer).from_config(dict(layer.get_config(), activation="linear"))
        y = linear(x)
        linear.set_weights(layer.get_weights())
        return keras.layers.Activation(act, name=f"{name}_{act}")(y)
    return build


def canonicalize_ops(model, custom_objects=None):
    """Returns `(model, added)`: `model` with every elementwise TFOpLambda `_plan` knows rewritten into a
    layer and scalar `Rescaling` into its scale and offset (the model itself when there is none), and
    `{new layer name: layer it comes from}` for layers the rewrite added."""
    plans = {layer.name: _plan(layer) for layer in model.layers}
    rescale = [l.name for l in model.layers
               if (isinstance(l, (keras.layers.Rescaling, keras.layers.Normalization)) or _lone_batchnorm(l, None))
               and _affine(l) is not None]
    fused = {l.name: _fused_activation(l) for l in model.layers}
    fused = {n: a for n, a in fused.items() if a is not None}
    plans = {n: p for n, p in plans.items() if p is not None}
    if not plans and not rescale and not fused:
        return model, {}
    rewrite = Rewrite(model, custom_objects)
    for name, plan in plans.items():
        rewrite.replace_call(name, _rebuilt(plan))
    for name in rescale:
        rewrite.replace(name, _as_affine)
    for name, act in fused.items():
        rewrite.replace(name, _split(name, act))
    added = {f"{name}_scale": name for name in rescale}
    added.update({f"{name}_{act}": name for name, act in fused.items()})
    new = rewrite.apply()
    return new, {n: src for n, src in added.items() if n in {l.name for l in new.layers}}
