"""The float model under a QAT model: same layers, same trained weights, no fake quantization.

Used to export a QAT-trained model in the float modes (float32, float16, dynamic) and int16x8, and as
the float reference of the per-layer error report. This is not `strip`: a QAT model keeps its
wrappers through `tfc.strip`, because the int8 export reads its learned ranges from them.
"""
import copy

from tfcompress._tf import keras
from tfcompress.quantization.relu6_forms import _rename_refs


def _plain_activation(act):
    """QuantizeAwareActivation(x) -> x; NoOpActivation -> linear."""
    while isinstance(act, dict) and act.get("class_name") == "QuantizeAwareActivation":
        act = act.get("config", {}).get("activation")
    if isinstance(act, dict) and act.get("class_name") == "NoOpActivation":
        return "linear"
    return act


def float_model(model):
    """Returns a plain float copy of a QAT model (or the model itself when it holds no QAT wrapper).

    Layer names are the inner layers' names (`quant_conv1` -> `conv1`); `QuantizeLayer`s become
    identity `Activation("linear")` layers that the converter drops.
    """
    from tfcompress.quantization import CUSTOM_OBJECTS, is_quantized
    if not is_quantized(model):
        return model
    config = copy.deepcopy(model.get_config())
    renamed, out = {}, []
    for entry in config["layers"]:
        cls = entry.get("class_name")
        if cls in ("QuantizeWrapperV2", "QuantizeWrapper"):
            inner = copy.deepcopy(entry["config"]["layer"])
            if "activation" in inner.get("config", {}):
                inner["config"]["activation"] = _plain_activation(inner["config"]["activation"])
            renamed[entry["config"]["name"]] = inner["config"]["name"]
            if "inbound_nodes" in entry:
                inner["name"] = inner["config"]["name"]
                inner["inbound_nodes"] = entry["inbound_nodes"]
            out.append(inner)
        elif cls == "QuantizeLayer":
            identity = {"class_name": "Activation", "config": {"name": entry["config"]["name"],
                                                               "activation": "linear", "dtype": "float32"}}
            if "inbound_nodes" in entry:
                identity["name"] = entry["config"]["name"]
                identity["inbound_nodes"] = entry["inbound_nodes"]
            out.append(identity)
        else:
            out.append(entry)
    for entry in out:
        if "inbound_nodes" in entry:
            entry["inbound_nodes"] = _rename_refs(entry["inbound_nodes"], renamed)
    if "output_layers" in config:
        config["output_layers"] = _rename_refs(config["output_layers"], renamed)
        config["input_layers"] = _rename_refs(config["input_layers"], renamed)
    config["layers"] = out
    cls = keras.Sequential if isinstance(model, keras.Sequential) else keras.Model
    plain = cls.from_config(config, custom_objects=CUSTOM_OBJECTS)
    # QuantizeWrapper takes the inner layer's variables over; find each by its own name ('kernel:0',
    # 'moving_mean:0'), which the quantizer variables ('kernel_min:0', 'optimizer_step:0') never share.
    # Full names are no key: a reloaded model scopes them differently ('quant_fc1/kernel:0').
    from tfcompress.quantization import QuantizeLayer, QuantizeWrapper
    owners = {}
    for layer in model.layers:
        if isinstance(layer, QuantizeWrapper):
            owners[layer.layer.name] = layer.weights
        elif not isinstance(layer, QuantizeLayer):
            owners[layer.name] = layer.weights
    for layer in plain.layers:
        if not layer.weights:
            continue
        by_short = {}
        for v in owners.get(layer.name, []):
            by_short.setdefault(v.name.rsplit("/", 1)[-1], []).append(v)
        values = []
        for w in layer.weights:
            found = by_short.get(w.name.rsplit("/", 1)[-1], [])
            if len(found) != 1:
                raise ValueError(f"float_model: {len(found)} candidates for weight {w.name} of layer {layer.name}")
            values.append(found[0].numpy())
        layer.set_weights(values)
    return plain
