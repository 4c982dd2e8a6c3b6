"""Rewrites every ReLU6 form of a model into one: a `ReLU(max_value=6.0)` layer.

tfmot's QAT knows `layers.ReLU` (and folds Conv+BN+ReLU), but fails on `activation="relu6"` and
`activation=tf.nn.relu6` (tfmot #407: "unknown activation"), does not fold `Activation("relu6")` into
Conv+BN (#1030), and never sees `tf.nn.relu6(x)` called on a Keras tensor (a `TFOpLambda`). After this
rewrite each of them is a `ReLU` layer, so the fold patterns match and the QAT registry can give every
ReLU6 the fixed [0, 6] output quantizer.

- `Activation("relu6")`, `Activation(tf.nn.relu6)`, `TFOpLambda(tf.nn.relu6)`: replaced in place by a
  `ReLU(max_value=6.0)` with the same name.
- `Conv2D` / `DepthwiseConv2D` / `Dense` / ... with `activation="relu6"` (or `tf.nn.relu6`): the layer
  becomes linear and a `ReLU(max_value=6.0)` named `<layer>_relu6` follows it. The TFLite converter
  fuses the pair back into one op with a fused RELU6.

The math is unchanged; the rewrite goes through `tfcompress.graph.Rewrite`, weights copied by layer name.
"""
from tfcompress._tf import keras
from tfcompress.graph import Rewrite

_RELU6_CONFIG = {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0}


def is_relu6_activation(value):
    """True for an activation given as 'relu6', tf.nn.relu6 or keras' serialized form of either."""
    if isinstance(value, dict):
        value = value.get("config", value.get("class_name"))
    if callable(value):
        value = getattr(value, "__name__", None)
    return value == "relu6"


def is_relu6_layer(layer):
    """True for a layer whose output is ReLU6 of its input (any of the forms this module knows)."""
    if isinstance(layer, keras.layers.ReLU):
        c = layer.get_config()
        return (c.get("max_value") is not None and float(c["max_value"]) == 6.0
                and float(c.get("negative_slope") or 0.0) == 0.0 and float(c.get("threshold") or 0.0) == 0.0)
    if isinstance(layer, keras.layers.Activation):
        return is_relu6_activation(layer.get_config().get("activation"))
    if type(layer).__name__ == "TFOpLambda":
        return layer.get_config().get("function") in ("nn.relu6", "relu6")
    return False


def _needs_rewrite(layer):
    if isinstance(layer, (keras.layers.Activation, keras.layers.InputLayer)) or type(layer).__name__ == "TFOpLambda":
        return "replace" if is_relu6_layer(layer) and not isinstance(layer, keras.layers.InputLayer) else None
    if not isinstance(layer, keras.layers.ReLU) and is_relu6_activation(getattr(layer, "activation", None)):
        return "split"
    return None


def _unique(name, taken):
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    taken.add(out)
    return out


def _relu6(name):
    return keras.layers.ReLU(name=name, **_RELU6_CONFIG)


def _as_relu6(layer, inputs):
    return _relu6(layer.name)(inputs)


def canonicalize(model, custom_objects=None):
    """Returns `(model, renamed)`: a copy with every ReLU6 as a `ReLU(6.0)` layer, and
    `{new ReLU layer name: layer it was split from}` for fused activations.

    Returns the model itself (not a copy) when it holds no ReLU6 form to rewrite. A Sequential model
    with a form to rewrite comes back functional.
    """
    kinds = {layer.name: _needs_rewrite(layer) for layer in model.layers}
    if not any(kinds.values()):
        return model, {}
    rewrite = Rewrite(model, custom_objects)
    taken = set(kinds)
    split = {}
    for layer in model.layers:
        kind = kinds[layer.name]
        if kind == "replace":
            rewrite.replace(layer.name, _as_relu6)
        elif kind == "split":
            rewrite.set_config(layer.name, dict(layer.get_config(), activation="linear"))
            relu_name = _unique(f"{layer.name}_relu6", taken)
            split[relu_name] = layer.name
            rewrite.insert_after(layer.name, _relu6(relu_name))
    return rewrite.apply(), split
