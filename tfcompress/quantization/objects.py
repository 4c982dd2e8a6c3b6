"""The classes a QAT model holds (tfmot's wrappers, quantizers and configs, and tfcompress's own), and
the questions asked of them: is a model quantized, which scope loads it."""
from tfcompress._tf import tfmot
from tfcompress.graph.held import CUSTOM_OBJECTS as _HELD_OBJECTS
from tfcompress.quantization.op_forms import CUSTOM_OBJECTS as _OP_OBJECTS
from tfcompress.quantization.scheme import CUSTOM_OBJECTS as _SCHEME_OBJECTS

from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer as _ql  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras import quantize_wrapper as _qw  # noqa: E402

QuantizeWrapper = _qw.QuantizeWrapper
QuantizeLayer = _ql.QuantizeLayer


def quantize_scope(*extra):
    """tfmot's `quantize_scope` with tfcompress's configs and quantizers known (for loading models)."""
    objects = dict(CUSTOM_OBJECTS)
    for e in extra:
        objects.update(e)
    return tfmot.quantization.keras.quantize_scope(objects)


def is_quantized(model):
    """True when the model holds QAT wrappers."""
    return any(isinstance(l, (QuantizeWrapper, QuantizeLayer)) for l in model.layers)


def _scope_dict():
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_annotate, quantize_aware_activation, quantize_config, quantizers)
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry)
    objects = {"QuantizeAnnotate": quantize_annotate.QuantizeAnnotate,
               "QuantizeAwareActivation": quantize_aware_activation.QuantizeAwareActivation,
               "NoOpActivation": quantize_aware_activation.NoOpActivation,
               "QuantizeWrapper": _qw.QuantizeWrapper, "QuantizeWrapperV2": _qw.QuantizeWrapperV2,
               "QuantizeLayer": QuantizeLayer, "OutputOnlyConfig": quantize_config.OutputOnlyConfig,
               "FixedQuantizeConfig": quantize_config.FixedQuantizeConfig}
    objects.update(default_8bit_quantize_registry._types_dict())
    objects.update(quantizers._types_dict())
    return objects


CUSTOM_OBJECTS = _scope_dict()
CUSTOM_OBJECTS.update(_SCHEME_OBJECTS)
CUSTOM_OBJECTS.update(_HELD_OBJECTS)   # a Lambda quantized with a registered config stays held in its wrapper
CUSTOM_OBJECTS.update(_OP_OBJECTS)
