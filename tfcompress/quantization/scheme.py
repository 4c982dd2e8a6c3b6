"""tfmot's default 8-bit QAT scheme, extended: fixed [0, 6] ReLU6 ranges, sparsity-preserving weight
quantizers, user quantize configs for custom layers, and weights kept quantized ahead of a ReLU.

Everything here subclasses tfmot's own classes (`Default8BitQuantizeRegistry`,
`Default8BitQuantizeLayoutTransform`, `Default8BitQuantizeScheme`, `LastValueQuantizer`,
`Default8BitConvWeightsQuantizer`); the quantization math is tfmot's.
"""
import copy

from tfcompress._tf import keras, tf, tfmot
from tfcompress.graph import inbound_layers, kind_of
from tfcompress.quantization.relu6_forms import is_relu6_layer

from tensorflow_model_optimization.python.core.quantization.keras import quantizers as _q  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras import quantize_aware_activation as _qaa  # noqa
from tensorflow_model_optimization.python.core.quantization.keras import utils as _qutils  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_configs as _configs, default_8bit_quantize_layout_transform as _layout,
    default_8bit_quantize_registry as _registry, default_8bit_quantize_scheme as _scheme,
    default_8bit_quantizers as _d8q, default_8bit_transforms as _transforms)
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (  # noqa: E402
    model_transformer as _mt, transforms as _tr)

QuantizeConfig = tfmot.quantization.keras.QuantizeConfig
RELU6_MIN, RELU6_MAX = 0.0, 6.0

# layer class -> factory(layer) -> QuantizeConfig, filled by register_quantize_config
_CUSTOM = {}


def register_quantize_config(layer_class, config):
    """Tells `tfc.quantize` how to quantize a custom layer class.

    Args:
      layer_class: the Keras layer class.
      config: a `tfmot.quantization.keras.QuantizeConfig` instance (copied per layer) or a callable
        `layer -> QuantizeConfig`.

    Example:

    ```python
    # no weight to quantize, the output on a learned 8-bit range: a custom elementwise layer, a Lambda
    tfc.quantization.register_quantize_config(MyScale, tfc.quantization.OutputQuantizeConfig())
    qat = tfc.quantize(model)
    ```

    Returns:
      `layer_class`.

    Raises:
      TypeError: `config` is neither a QuantizeConfig nor a callable.
    """
    if not (isinstance(config, QuantizeConfig) or callable(config)):
        raise TypeError(f"config must be a tfmot QuantizeConfig or a callable layer -> QuantizeConfig. "
                        f"Got: {type(config).__name__}")
    _CUSTOM[layer_class] = config
    return layer_class


def custom_config(layer):
    for cls in type(layer).__mro__:
        if cls in _CUSTOM:
            c = _CUSTOM[cls]
            return copy.deepcopy(c) if isinstance(c, QuantizeConfig) else c(layer)
    return None


@keras.utils.register_keras_serializable(package="tfcompress")
class OutputQuantizeConfig(QuantizeConfig):
    """No weight quantized; the output on an 8-bit range learned in training (moving average of min/max).

    What a layer that computes without weights of its own needs to run in int8 after QAT: a custom
    elementwise layer, a `Lambda`, a `Multiply` gate.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_q.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


@keras.utils.register_keras_serializable(package="tfcompress")
class ReLU6QuantizeConfig(OutputQuantizeConfig):
    """A ReLU6 output quantized on the fixed range [0, 6]: scale 6/255, zero point -128 in int8.

    tfmot learns the range with a moving average of the batch min/max; a ReLU6 output spans [0, 6] by
    construction, so its range is fixed instead (and identical on every device and every export).
    """

    def get_output_quantizers(self, layer):
        return [_q.FixedQuantizer(num_bits=8, init_min=RELU6_MIN, init_max=RELU6_MAX, narrow_range=False)]

    def __eq__(self, other):
        return isinstance(other, ReLU6QuantizeConfig)


class _KeepZeros:
    """Weight quantizer mixin: the quantized weight is (weight * mask), mask = (weight != 0) when the
    layer was wrapped. Zeros stay exactly zero through training (their gradient is zero) and int8
    symmetric quantization maps them to 0. Unlike tfmot's PrunePreserve quantizers, the mask is a
    non-trainable variable, so it is saved with the model and survives a reload."""

    scheduled = False   # True: a pruning schedule moves the mask inside fit (`tfcompress.quantization.sparsify`)

    def build(self, tensor_shape, name, layer):
        weights = super().build(tensor_shape, name, layer) or {}
        mask = layer.add_weight(f"{name}_sparsity_mask", shape=tensor_shape, initializer=keras.initializers.Ones(),
                                trainable=False)
        source = getattr(layer.layer, name, None)
        if source is not None:
            with tf.init_scope():
                mask.assign(tf.cast(tf.not_equal(source, 0), mask.dtype))
        weights["sparsity_mask"] = mask
        if self.scheduled:
            weights["armed"] = layer.add_weight(f"{name}_pruning_armed", shape=(), trainable=False,
                                                initializer=keras.initializers.Zeros())
        return weights

    def __call__(self, inputs, training, weights, **kwargs):
        if self.scheduled and training:
            tf.debugging.assert_positive(
                weights["armed"], message="this QAT model prunes on a schedule, which only "
                "tfc.CompressionCallback runs: pass callbacks=[tfc.CompressionCallback()] to fit")
        return super().__call__(inputs * weights["sparsity_mask"], training, weights, **kwargs)


@keras.utils.register_keras_serializable(package="tfcompress")
class SparsityPreservingWeightsQuantizer(_KeepZeros, _q.LastValueQuantizer):
    """Per-tensor symmetric 8-bit weights (tfmot's default for Dense) that keep zeros zero."""

    def __init__(self, num_bits=8, per_axis=False, symmetric=True, narrow_range=True):
        super().__init__(num_bits=num_bits, per_axis=per_axis, symmetric=symmetric, narrow_range=narrow_range)


@keras.utils.register_keras_serializable(package="tfcompress")
class SparsityPreservingConvWeightsQuantizer(_KeepZeros, _d8q.Default8BitConvWeightsQuantizer):
    """Per-channel symmetric 8-bit conv weights (tfmot's default for Conv) that keep zeros zero."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


def _swap_weight_quantizer(config, scheduled=False):
    q = getattr(config, "weight_quantizer", None)
    if isinstance(q, _d8q.Default8BitConvWeightsQuantizer) and not isinstance(q, _KeepZeros):
        config.weight_quantizer = SparsityPreservingConvWeightsQuantizer()
    elif isinstance(q, _q.LastValueQuantizer) and not isinstance(q, _KeepZeros):
        config.weight_quantizer = SparsityPreservingWeightsQuantizer(q.num_bits, q.per_axis, q.symmetric,
                                                                     q.narrow_range)
    if isinstance(getattr(config, "weight_quantizer", None), _KeepZeros):
        config.weight_quantizer.scheduled = scheduled
    return config


class WrappedQuantizeConfig(QuantizeConfig):
    """A QuantizeConfig that hands everything to the tfmot config it wraps (`self.config`), whose weight
    quantizer a subclass has swapped."""

    def get_weights_and_quantizers(self, layer):
        return self.config.get_weights_and_quantizers(layer)

    def get_activations_and_quantizers(self, layer):
        return self.config.get_activations_and_quantizers(layer)

    def set_quantize_weights(self, layer, quantize_weights):
        self.config.set_quantize_weights(layer, quantize_weights)

    def set_quantize_activations(self, layer, quantize_activations):
        self.config.set_quantize_activations(layer, quantize_activations)

    def get_output_quantizers(self, layer):
        return self.config.get_output_quantizers(layer)


@keras.utils.register_keras_serializable(package="tfcompress")
class SparsityPreservingQuantizeConfig(WrappedQuantizeConfig):
    """A tfmot weight config whose weight quantizer keeps zeros zero. A wrapper rather than an attribute
    swap, so the choice is saved with the model (tfmot's configs re-create their quantizer on load).

    With a `schedule` (a `tfc` sparsity schedule, or its config), the zeros are not only kept but made:
    `CompressionCallback` moves the mask on the schedule during QAT (`tfcompress.quantization.sparsify`).
    """

    def __init__(self, config, schedule=None):
        if isinstance(config, dict):
            config = keras.utils.deserialize_keras_object(config)
        if isinstance(schedule, dict):
            from tfcompress.schedules import Schedule
            schedule = Schedule.from_dict(schedule)
        self.schedule = schedule
        self.config = _swap_weight_quantizer(copy.copy(config), schedule is not None)

    def get_config(self):
        out = {"config": keras.utils.serialize_keras_object(self.config)}
        if self.schedule is not None:
            out["schedule"] = self.schedule.to_dict()
        return out


def _keep_zeros(config, schedule=None):
    """The same config with its weight quantizer swapped for the sparsity-preserving one."""
    if getattr(config, "weight_quantizer", None) is None or isinstance(config, SparsityPreservingQuantizeConfig):
        return config
    return SparsityPreservingQuantizeConfig(config, schedule)


def _concat_of_relu6(layer):
    """A Concatenate whose inputs are all ReLU6 outputs is itself on [0, 6]; the converter gives a
    concat's inputs the concat's scale, so any other range would unpin them."""
    if not isinstance(layer, keras.layers.Concatenate):
        return False
    inbound = inbound_layers(layer)
    return bool(inbound) and all(is_relu6_layer(getattr(l, "layer", l)) for l in inbound)


def _output_only(layer):
    """The layer-kind table says QAT quantizes only this layer's output (Multiply gates, Rescaling, ...)."""
    kind = kind_of(layer)
    return kind is not None and kind.quantize == "output"


class Registry(_registry.Default8BitQuantizeRegistry):
    """tfmot's default 8-bit registry plus ReLU6, user-registered configs and sparsity preservation."""

    def __init__(self, preserve_sparsity=False, schedules=None):
        super().__init__()
        self.preserve_sparsity = preserve_sparsity
        self.schedules = dict(schedules or {})

    def supports(self, layer):
        return (custom_config(layer) is not None or is_relu6_layer(layer) or _output_only(layer)
                or getattr(kind_of(layer), "quantize", None) == "constant" or super().supports(layer))

    def get_quantize_config(self, layer):
        config = custom_config(layer)
        if config is None and (is_relu6_layer(layer) or _concat_of_relu6(layer)):
            config = ReLU6QuantizeConfig()
        if config is None and _output_only(layer) and not super().supports(layer):
            config = OutputQuantizeConfig()
        if config is None and getattr(kind_of(layer), "quantize", None) == "constant":
            from tfcompress.quantization.op_forms import ConstantsQuantizeConfig
            config = ConstantsQuantizeConfig()
        if config is None:
            # tfmot hands out one shared config object per layer class; never modify it in place
            config = copy.copy(super().get_quantize_config(layer))
        return _keep_zeros(config, self.schedules.get(layer.name)) if self.preserve_sparsity else config


class _LayerReLUQuantize(_transforms.LayerReLUQuantize):
    """Conv / DepthwiseConv / Dense / Add followed by a ReLU: no fake-quant between them.

    tfmot gives the producer a NoOpQuantizeConfig, which also leaves a Conv's or Dense's *weights*
    unquantized during training. Here a weighted producer keeps its weight quantizer and only its
    output quantization is turned off (its activation becomes NoOpActivation, as tfmot does in
    Conv+BN+ReLU)."""

    def replacement(self, match_layer):
        producer = match_layer.input_layers[0]
        if producer.layer["class_name"] == "Add" or producer.metadata.get("quantize_config") is not None:
            return super().replacement(match_layer)
        producer.layer["config"]["activation"] = _qutils.serialize_activation(
            _qaa.NoOpActivation(), use_legacy_format=True)
        return match_layer

    def custom_objects(self):
        return {"NoOpQuantizeConfig": _configs.NoOpQuantizeConfig, "NoOpActivation": _qaa.NoOpActivation}


def _relu6_node(node):
    c = node.layer.get("config", {})
    return node.layer.get("class_name") == "ReLU" and c.get("max_value") is not None \
        and float(c["max_value"]) == 6.0 and not float(c.get("negative_slope") or 0.0) \
        and not float(c.get("threshold") or 0.0)


class _Relu6Concat:
    """Concatenate of ReLU6 outputs only: the concat output is fixed to [0, 6] too, so the inputs keep
    their pinned ranges and share one scale (tfmot would drop their quantizers and learn the concat's
    range). Mixed inputs fall back to tfmot's transform."""

    def replacement(self, match_layer):
        if all(_relu6_node(n) for n in match_layer.input_layers):
            if not match_layer.metadata.get("quantize_config"):
                match_layer.metadata["quantize_config"] = ReLU6QuantizeConfig()
            return match_layer
        return super().replacement(match_layer)

    def custom_objects(self):
        return {"ReLU6QuantizeConfig": ReLU6QuantizeConfig}


_CONCATS = [type(f"_Relu6{c.__name__}", (_Relu6Concat, c), {})
            for c in (_transforms.ConcatTransform6Inputs, _transforms.ConcatTransform5Inputs,
                      _transforms.ConcatTransform4Inputs, _transforms.ConcatTransform3Inputs,
                      _transforms.ConcatTransform)]


class LayoutTransform(_layout.Default8BitQuantizeLayoutTransform):
    """tfmot's default 8-bit transforms, with `_LayerReLUQuantize` in place of `LayerReLUQuantize` and
    ReLU6-aware Concatenate transforms."""

    def apply(self, model, layer_quantize_map):
        t = _transforms
        transforms = [
            t.InputLayerQuantize(), t.SeparableConv1DQuantize(), t.SeparableConvQuantize(),
            t.Conv2DReshapeBatchNormReLUQuantize(), t.Conv2DReshapeBatchNormActivationQuantize(),
            t.Conv2DBatchNormReLUQuantize(), t.Conv2DBatchNormActivationQuantize(),
            t.Conv2DReshapeBatchNormQuantize(), t.Conv2DBatchNormQuantize(),
            *(c() for c in _CONCATS),
            t.DenseBatchNormQuantize(), t.DenseBatchNormReLUQuantize(), t.DenseBatchNormActivationQuantize(),
            _LayerReLUQuantize(), t.LayerReluActivationQuantize(),
        ]
        return _mt.ModelTransformer(model, transforms, set(layer_quantize_map.keys()),
                                    layer_quantize_map).transform()


class Scheme(_scheme.Default8BitQuantizeScheme):
    """`Default8BitQuantizeScheme` with fixed ReLU6 ranges; with `preserve_sparsity=True` it is also
    the counterpart of tfmot's `Default8BitPrunePreserveQuantizeScheme` (zeros kept exactly)."""

    def __init__(self, preserve_sparsity=False, schedules=None):
        super().__init__()
        self.preserve_sparsity = preserve_sparsity
        self.schedules = schedules

    def get_layout_transformer(self):
        return LayoutTransform()

    def get_quantize_registry(self):
        return Registry(preserve_sparsity=self.preserve_sparsity, schedules=self.schedules)


CUSTOM_OBJECTS = {
    "OutputQuantizeConfig": OutputQuantizeConfig,
    "ReLU6QuantizeConfig": ReLU6QuantizeConfig,
    "SparsityPreservingQuantizeConfig": SparsityPreservingQuantizeConfig,
    "SparsityPreservingWeightsQuantizer": SparsityPreservingWeightsQuantizer,
    "SparsityPreservingConvWeightsQuantizer": SparsityPreservingConvWeightsQuantizer,
    "FixedQuantizer": _q.FixedQuantizer,
}
del _tr
