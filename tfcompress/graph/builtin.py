"""The layer-kind table's entries for tf-keras' own layers (see `kinds.py` for what each field means)."""
import numpy as np

from tfcompress._tf import keras, tf
from tfcompress.graph.kinds import cut_vectors, prod, register_layer
from tfcompress.graph.walk import first_call

L = keras.layers


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _set(key):
    def config(cfg, out_keep):
        return dict(cfg, **{key: int(out_keep.sum())})
    return config


# ---------------------------------------------------------------- producers: Conv1D/2D/3D, Dense


def _conv_role(layer):
    return "produce" if _channels_last(layer) and getattr(layer, "groups", 1) == 1 else None


def _cut_kernel_bias(layer, weights, in_keeps, out_keep):
    kernel = weights[0][..., in_keeps[0], :][..., out_keep]
    return [kernel] + [b[out_keep] for b in weights[1:]]


def _zero_kernel(layer, weights, in_keep, out_keep):
    w = [a.copy() for a in weights]
    w[0][..., ~in_keep, :] = 0.0
    w[0][..., ~out_keep] = 0.0
    return w


def _kernel(layer):
    return layer.get_weights()[0]


def _reads_kernel(layer):
    return np.moveaxis(layer.get_weights()[0], -2, -1)


def _kernel_io(layer):
    k = layer.get_weights()[0]
    return k.reshape(-1, k.shape[-2], k.shape[-1])


def _kernel_bias_axes(layer):
    return {0: -1, 1: 0} if layer.use_bias else {0: -1}


def _conv_macs(layer, in_shape, out_shape):
    groups = getattr(layer, "groups", 1) or 1
    return prod(out_shape[1:]) * prod(layer.kernel_size) * int(in_shape[-1]) // groups


def _dense_macs(layer, in_shape, out_shape):
    return prod(in_shape[1:]) * int(out_shape[-1])


_PRODUCER = dict(zero=_zero_kernel, reads=_reads_kernel, kernel_io=_kernel_io, out_axes=_kernel_bias_axes,
                 kernel_regularizer="kernel_regularizer")
for _cls in (L.Conv1D, L.Conv2D, L.Conv3D):
    register_layer(_cls, _conv_role, _cut_kernel_bias, _set("filters"), _kernel, macs=_conv_macs, **_PRODUCER)
register_layer(L.Dense, "produce", _cut_kernel_bias, _set("units"), _kernel, macs=_dense_macs, **_PRODUCER)


# Conv2DTranspose kernels are (kh, kw, out, in).
def _cut_transpose(layer, weights, in_keeps, out_keep):
    kernel = weights[0][:, :, out_keep, :][..., in_keeps[0]]
    return [kernel] + [b[out_keep] for b in weights[1:]]


def _zero_transpose(layer, weights, in_keep, out_keep):
    w = [a.copy() for a in weights]
    w[0][..., ~in_keep] = 0.0
    w[0][:, :, ~out_keep, :] = 0.0
    return w


register_layer(L.Conv2DTranspose, _conv_role, _cut_transpose, _set("filters"),
               lambda l: np.moveaxis(l.get_weights()[0], 2, -1), zero=_zero_transpose,
               reads=lambda l: l.get_weights()[0],
               out_axes=lambda l: {0: 2, 1: 0} if l.use_bias else {0: 2},
               macs=lambda l, i, o: prod(i[1:]) * prod(l.kernel_size) * int(o[-1]),
               kernel_regularizer="kernel_regularizer")


def _cut_separable(layer, weights, in_keeps, out_keep):
    depthwise, pointwise = weights[0], weights[1]
    m = depthwise.shape[-1]
    keep_in = in_keeps[0]
    return ([depthwise[:, :, keep_in, :], pointwise[:, :, np.repeat(keep_in, m), :][..., out_keep]]
            + [b[out_keep] for b in weights[2:]])


def _zero_separable(layer, weights, in_keep, out_keep):
    w = [a.copy() for a in weights]
    w[0][:, :, ~in_keep, :] = 0.0
    w[1][..., ~out_keep] = 0.0
    return w


def _separable_macs(layer, in_shape, out_shape):
    spatial = prod(out_shape[1:-1])
    cin = int(in_shape[-1]) * layer.depth_multiplier
    return spatial * cin * prod(layer.kernel_size) + spatial * cin * int(out_shape[-1])


register_layer(L.SeparableConv2D, _conv_role, _cut_separable, _set("filters"), lambda l: l.get_weights()[1],
               zero=_zero_separable, reads=lambda l: np.moveaxis(l.get_weights()[0], 2, -1),
               out_axes=lambda l: {1: -1, 2: 0} if l.use_bias else {1: -1}, macs=_separable_macs)


# ---------------------------------------------------------------- channel-preserving layers


def _depthwise_role(layer):
    return "pass" if _channels_last(layer) and layer.depth_multiplier == 1 else None


def _cut_depthwise(layer, weights, in_keeps, out_keep):
    return [weights[0][:, :, out_keep, :]] + [b[out_keep] for b in weights[1:]]


register_layer(L.DepthwiseConv2D, _depthwise_role, _cut_depthwise,
               macs=lambda l, i, o: prod(o[1:]) * prod(l.kernel_size))


def _bn_role(layer):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    try:
        rank = len(layer.input_shape)
    except (AttributeError, RuntimeError):
        rank = None
    ok = len(axis) == 1 and (axis[0] == -1 or (rank is not None and axis[0] == rank - 1))
    return "pass" if ok else None


register_layer(L.BatchNormalization, _bn_role, cut_vectors,
               gamma=lambda l: np.abs(l.gamma.numpy()) if l.scale else np.ones(l.moving_mean.shape),
               mean_index=lambda l: int(l.scale) + int(l.center),
               out_axes=lambda l: {i: 0 for i in range(len(l.weights))})


def _pass_if_channels_last(layer):
    return "pass" if _channels_last(layer) else None


def couples_channels(layer):
    """True when the layer normalises across its output channels (softmax): removing one of them would
    change the others, so the channel graph keeps them all."""
    if isinstance(layer, L.Softmax):
        return True
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") in ("softmax", "log_softmax")


register_layer(L.Activation, "pass", elementwise=True)
register_layer(L.Softmax, lambda l: "pass" if l.axis in (-1, len(l.output_shape) - 1) else None)
for _cls in (L.ReLU, L.LeakyReLU, L.ELU):
    register_layer(_cls, _pass_if_channels_last, elementwise=True, rectifier=True)
for _cls in (L.ThresholdedReLU, L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
             L.ActivityRegularization):
    register_layer(_cls, _pass_if_channels_last, elementwise=True)
for _cls in (L.SpatialDropout1D, L.SpatialDropout2D,
             L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
             L.AveragePooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
             L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.ZeroPadding1D, L.ZeroPadding2D,
             L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D, L.UpSampling1D, L.UpSampling2D,
             L.UpSampling3D):
    register_layer(_cls, _pass_if_channels_last)


def _scalar_rescaling(layer):
    return "pass" if np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0 else None


register_layer(L.Rescaling, _scalar_rescaling, elementwise=True, quantize="output")
def _normalization_role(layer):
    # per-channel mean and variance held as weights (adapted), on the last axis: sliced like BN's
    cfg = layer.get_config()
    axis = cfg.get("axis")
    last = axis in (-1, None) or (isinstance(axis, (list, tuple)) and tuple(axis) in ((-1,),))
    return "pass" if last and cfg.get("mean") is None and cfg.get("variance") is None else None


register_layer(L.Normalization, _normalization_role, cut_vectors, quantize="output")
register_layer(L.Identity, "pass", elementwise=True)


# ---------------------------------------------------------------- merges, concat, reshapes

for _cls in (L.Add, L.Subtract, L.Average, L.Maximum, L.Minimum):
    register_layer(_cls, "merge")
register_layer(L.Multiply, "merge", quantize="output")   # squeeze-excite gates, hard-swish


def _concat_role(layer):
    rank = len(layer.output_shape) if hasattr(layer, "output_shape") else None
    return "concat" if layer.axis == -1 or (rank is not None and layer.axis == rank - 1) else "merge"


register_layer(L.Concatenate, _concat_role)
register_layer(L.Flatten, lambda l: "flatten" if _channels_last(l) else None)


def _reshape_config(cfg, out_keep):
    shape = list(cfg["target_shape"])
    if shape[-1] != -1:
        shape[-1] = int(out_keep.sum())
    return dict(cfg, target_shape=tuple(shape))


def _reshape_role(layer):
    src, dst = layer.input_shape, layer.output_shape
    if src[-1] is not None and src[-1] == dst[-1]:
        return "reshape"
    if len(dst) == 2 and None not in src[1:]:  # (H, W, C) -> (H*W*C,): a Flatten
        return "flatten"
    return None


register_layer(L.Reshape, _reshape_role, config=_reshape_config)


# ---------------------------------------------------------------- TensorFlow ops on Keras tensors

# tf.* functions (and operators) that act element by element; a TFOpLambda calling one of them on Keras
# tensors with only scalar constants besides keeps channel k as channel k.
ELEMENTWISE_OPS = frozenset(
    f"{p}{n}" for p in ("", "math.", "nn.") for n in (
        "relu", "relu6", "elu", "selu", "gelu", "silu", "swish", "sigmoid", "tanh", "softplus", "softsign",
        "leaky_relu", "abs", "negative", "square", "sqrt", "rsqrt", "exp", "log", "multiply", "add", "subtract",
        "divide", "truediv", "maximum", "minimum", "pow", "clip_by_value", "scalar_mul", "hard_sigmoid"))
ELEMENTWISE_OPS |= {f"__operators__.{n}" for n in ("add", "sub", "mul", "truediv", "neg", "pow", "radd",
                                                    "rsub", "rmul", "rtruediv")}
ELEMENTWISE_OPS |= {f"math.{n}" for n in ("multiply_no_nan", "add_n", "divide_no_nan")}


def _scalar(value):
    return isinstance(value, (int, float, bool, type(None), str)) or (np.ndim(value) == 0 and not
                                                                     hasattr(value, "_keras_history"))


def _op_role(layer):
    node = first_call(layer)
    if node is None or len(layer._inbound_nodes) != 1:
        return None
    cfg = layer.get_config()
    if cfg.get("function") not in ELEMENTWISE_OPS:
        return None
    flat = tf.nest.flatten((node.call_args, node.call_kwargs))
    tensors = [a for a in flat if hasattr(a, "_keras_history")]
    if not all(_scalar(a) for a in flat if not hasattr(a, "_keras_history")):
        return None
    out = node.outputs
    if any(t.shape[-1] != out.shape[-1] for t in tensors):
        return None
    return "pass" if len(tensors) == 1 else "merge"


def _op_class():
    from tf_keras.src.layers.core.tf_op_layer import TFOpLambda
    return TFOpLambda


register_layer(_op_class(), _op_role, elementwise=True)


# ---------------------------------------------------------------- Lambda: cloned from the object in memory


def _clone_lambda(layer):
    # from_config would rebuild the function from its serialized bytecode, which Keras' safe mode
    # refuses; the function object itself is right here.
    return type(layer)(layer.function, output_shape=layer._output_shape, mask=layer.mask,
                       arguments=dict(layer.arguments), name=layer.name, trainable=layer.trainable,
                       dtype=layer.dtype_policy.name if hasattr(layer, "dtype_policy") else layer.dtype)


register_layer(L.Lambda, lambda l: None, clone=_clone_lambda)


# ---------------------------------------------------------------- two-layer forms: low rank, separable


def _add_facts(cls, **facts):
    import dataclasses
    from tfcompress.graph.kinds import KINDS
    KINDS[cls] = dataclasses.replace(KINDS[cls], **facts)


from tfcompress.graph import factor as _factor  # noqa: E402

_add_facts(L.Dense, factor=_factor.dense_factor)
_add_facts(L.Conv2D, factor=_factor.conv_factor, separate=_factor.conv_separate)


# ---------------------------------------------------------------- per-channel rescaling: BN folding, equalization


def _linear(layer):
    return getattr(getattr(layer, "activation", None), "__name__", "linear") == "linear"


def _fused_relu(layer):
    return getattr(getattr(layer, "activation", None), "__name__", "") == "relu"


def _folder(out_shape):
    """`fold` for a layer whose kernel holds its output channels in its last axes (`out_shape(kernel)`)."""
    def fold(layer, weights, gain, offset=None):
        kernel, gain = weights[0], np.asarray(gain, dtype=np.float64)
        if not _linear(layer) and not (_fused_relu(layer) and offset is None and np.all(gain > 0)):
            return None
        out = [(kernel * gain.reshape(out_shape(kernel))).astype(kernel.dtype)]
        bias = weights[1].astype(np.float64) * gain if len(weights) > 1 else None
        if offset is not None:
            bias = (0.0 if bias is None else bias) + np.asarray(offset, dtype=np.float64)
        if bias is not None:
            out.append(bias.astype(kernel.dtype))
        return dict(layer.get_config(), use_bias=bias is not None or layer.use_bias), out
    return fold


def _scale_in(layer, weights, s):
    # Conv1D/2D/3D, Dense and DepthwiseConv2D kernels all hold their input channels on axis -2
    return [(weights[0] * np.asarray(s, dtype=np.float64).reshape(-1, 1)).astype(weights[0].dtype)] + list(weights[1:])


def _bn_affine(layer):
    mean, var = layer.moving_mean.numpy().astype(np.float64), layer.moving_variance.numpy().astype(np.float64)
    gamma = layer.gamma.numpy().astype(np.float64) if layer.scale else np.ones_like(mean)
    beta = layer.beta.numpy().astype(np.float64) if layer.center else np.zeros_like(mean)
    gain = gamma / np.sqrt(var + layer.epsilon)
    return gain, beta - gain * mean


def _relu_homogeneous(layer):
    c = layer.get_config()
    return c.get("max_value") is None and float(c.get("threshold") or 0.0) == 0.0


for _cls in (L.Conv1D, L.Conv2D, L.Conv3D, L.Dense):
    _add_facts(_cls, fold=_folder(lambda k: (k.shape[-1],)), scale_in=_scale_in)
_add_facts(L.DepthwiseConv2D, fold=_folder(lambda k: k.shape[-2:]), scale_in=_scale_in,
           filters=lambda l: l.get_weights()[0].reshape(*l.get_weights()[0].shape[:2], -1),
           reads=lambda l: np.moveaxis(l.get_weights()[0], 2, -1))
_add_facts(L.BatchNormalization, affine=_bn_affine)
_add_facts(L.ReLU, homogeneous=_relu_homogeneous)
_add_facts(L.Activation, homogeneous=lambda l: getattr(l.activation, "__name__", "") in ("relu", "linear"))
for _cls in (L.LeakyReLU, L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
             L.SpatialDropout1D, L.SpatialDropout2D, L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
             L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D, L.GlobalAveragePooling1D,
             L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
             L.GlobalMaxPooling3D, L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D,
             L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.Identity):
    _add_facts(_cls, homogeneous=True)


def _relu_fused(layer):
    c = layer.get_config()
    if c.get("negative_slope") or c.get("threshold"):
        return None
    return {None: "relu", 6: "relu6", 6.0: "relu6"}.get(c.get("max_value"))


for _cls in (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout,
             L.AlphaDropout, L.ActivityRegularization):
    _add_facts(_cls, inference_identity=True)
for _cls in (L.Conv1D, L.Conv2D, L.DepthwiseConv2D, L.Conv2DTranspose, L.Dense):
    _add_facts(_cls, fuses=("affine", "activation"))
_add_facts(L.Add, fuses=("activation",))
_add_facts(L.ReLU, fused_activation=_relu_fused)
_add_facts(L.Activation, fused_activation=lambda l: {"relu": "relu", "relu6": "relu6"}.get(
    l.get_config().get("activation")))
