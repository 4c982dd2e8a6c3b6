"""What a model outputs: its single output shape, and whether that output is logits or probabilities.

A model's output is taken as probabilities when its output layer (looking through wrappers and nested
models) ends in a softmax activation or is a `Softmax` layer; otherwise, on the first batch the
Distiller sees, when every output of the probe batch is non-negative and every row sums to 1 (within
1e-3). Anything else is logits. A sigmoid output is refused: distillation here needs one distribution
over classes per sample.
"""
import numpy as np

from tfcompress._tf import keras, tf
from tfcompress.errors import InputError

KINDS = ("logits", "probabilities")
PROBE_SAMPLES = 64


def single_output_shape(model, what):
    """The per-sample shape of `model`'s one output; raises InputError when unbuilt or multi-output."""
    try:
        shape = model.output_shape
    except (AttributeError, RuntimeError):
        raise InputError(f"{what} is not built: call it on a batch or give it an Input before distilling") from None
    if isinstance(shape, list):
        if len(shape) != 1:
            raise InputError(f"{what} has {len(shape)} outputs; the Distiller needs one output of class scores")
        shape = shape[0]
    return tuple(shape[1:])


def input_shape(model):
    """The per-sample shape of `model`'s one input, or None when unknown or several."""
    try:
        shape = model.input_shape
    except (AttributeError, RuntimeError):
        return None
    return tuple(shape[1:]) if isinstance(shape, tuple) else None


def _output_layer(model):
    """The layer producing a single-output model's output, through nested models and wrappers."""
    outputs = getattr(model, "outputs", None) or []
    history = getattr(outputs[0], "_keras_history", None) if len(outputs) == 1 else None
    layer = history.layer if history is not None else (model.layers[-1] if model.layers else None)
    while True:
        if isinstance(layer, keras.Model) and layer is not model:
            return _output_layer(layer)
        inner = getattr(layer, "layer", None)  # pruning, clustering and QAT wrappers hold `.layer`
        if isinstance(inner, keras.layers.Layer):
            layer = inner
            continue
        return layer


def _activation_name(layer):
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    for _ in range(3):  # QAT replaces `activation` with an object that holds the original one
        name = getattr(act, "__name__", None)
        if name:
            return name
        act = getattr(act, "activation", None)
    return None


def structural_kind(model, what):
    """('probabilities', why) for a softmax at the output, (None, why) when only a probe can tell."""
    layer = _output_layer(model)
    name = _activation_name(layer) if layer is not None else None
    where = f"output layer {layer.name!r}" if layer is not None else "output"
    if name == "softmax":
        return "probabilities", f"{where} ends in softmax"
    if name in ("sigmoid", "hard_sigmoid"):
        raise InputError(f"{what}'s {where} ends in {name}; the Distiller needs class logits or softmax "
                         "probabilities: remove the final activation (train with from_logits=True)")
    return None, f"{where} has activation {name or 'none'}"


def probe_kind(values):
    """(kind, why) from the outputs of a probe batch."""
    values = np.asarray(values, dtype=np.float64)
    if values.size and np.all(values >= 0) and np.allclose(values.sum(-1), 1.0, atol=1e-3):
        return "probabilities", "probe batch outputs are non-negative and each row sums to 1"
    return "logits", "probe batch outputs are not a distribution (negative values or rows not summing to 1)"


def probe_batch(x, y):
    """(first few inputs or None, whether labels come with them: True / False / None for unknown)."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        has_labels = isinstance(spec, tuple) and len(spec) >= 2
        try:
            element = next(iter(x.take(1)))
        except (StopIteration, tf.errors.OutOfRangeError):
            return None, has_labels
        batch = element[0] if isinstance(element, tuple) else element
        return tf.nest.map_structure(lambda a: a[:PROBE_SAMPLES], batch), has_labels
    if isinstance(x, keras.utils.Sequence):
        try:
            element = x[0]
        except Exception:  # a Sequence that cannot be indexed up front: probe nothing
            return None, None
        has_labels = isinstance(element, tuple) and len(element) >= 2
        batch = element[0] if isinstance(element, tuple) else element
        return tf.nest.map_structure(lambda a: a[:PROBE_SAMPLES], batch), has_labels
    leaves = tf.nest.flatten(x) if x is not None else []
    if leaves and all(isinstance(a, (np.ndarray, tf.Tensor)) or hasattr(a, "__array__") for a in leaves):
        probe = tf.nest.map_structure(lambda a: a[:PROBE_SAMPLES] if isinstance(a, tf.Tensor)
                                      else np.asarray(a)[:PROBE_SAMPLES], x)
        return probe, y is not None
    return None, (True if y is not None else None)
