"""The float model under a QAT model: same layers, same trained weights, no fake quantization.

Used to export a QAT-trained model in the float modes (float32, float16, dynamic) and int16x8, and as
the float reference of the per-layer error report. This is not `strip`: a QAT model keeps its
wrappers through `tfc.strip`, because the int8 export reads its learned ranges from them.
"""
from tfcompress._tf import keras
from tfcompress.graph import Rewrite, clone_layer
from tfcompress.quantization.objects import CUSTOM_OBJECTS, QuantizeLayer, QuantizeWrapper, is_quantized


def _plain_activation(act):
    """QuantizeAwareActivation(x) -> x; NoOpActivation -> linear."""
    while isinstance(act, dict) and act.get("class_name") == "QuantizeAwareActivation":
        act = act.get("config", {}).get("activation")
    if isinstance(act, dict) and act.get("class_name") == "NoOpActivation":
        return "linear"
    return act


def _values(plain, variables):
    # QuantizeWrapper takes the inner layer's variables over; find each by its own name ('kernel:0',
    # 'moving_mean:0'), which the quantizer variables ('kernel_min:0', 'optimizer_step:0') never share.
    # Full names are no key: a reloaded model scopes them differently ('quant_fc1/kernel:0').
    by_short = {}
    for v in variables:
        by_short.setdefault(v.name.rsplit("/", 1)[-1], []).append(v)
    values = []
    for w in plain.weights:
        found = by_short.get(w.name.rsplit("/", 1)[-1], [])
        if len(found) != 1:
            raise ValueError(f"float_model: {len(found)} candidates for weight {w.name} of layer {plain.name}")
        values.append(found[0].numpy())
    return values


def _unwrapped(wrapper, inputs, custom_objects):
    inner = wrapper.layer
    config = inner.get_config()
    if "activation" in config:
        config["activation"] = _plain_activation(keras.activations.serialize(inner.activation)
                                                 if callable(inner.activation) else config["activation"])
    plain = clone_layer(inner, config, custom_objects)
    outputs = plain(inputs)
    if plain.weights:
        plain.set_weights(_values(plain, wrapper.weights))
    return outputs


def float_model(model):
    """Returns a plain float copy of a QAT model (or the model itself when it holds no QAT wrapper).

    Layer names are the inner layers' names (`quant_conv1` -> `conv1`); `QuantizeLayer`s become
    identity `Activation("linear")` layers that the converter drops.
    """
    if not is_quantized(model):
        return model
    rewrite = Rewrite(model, CUSTOM_OBJECTS)
    for layer in model.layers:
        if isinstance(layer, QuantizeWrapper):
            rewrite.replace(layer.name, lambda w, x: _unwrapped(w, x, rewrite.custom_objects))
        elif isinstance(layer, QuantizeLayer):
            rewrite.replace(layer.name, lambda q, x: keras.layers.Activation("linear", name=q.name)(x))
    return rewrite.apply()
