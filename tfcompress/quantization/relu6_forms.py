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

The math is unchanged; weights are copied by layer name.
"""
import copy

from tfcompress._tf import keras

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


def _relu_entry(name, functional):
    entry = {"module": "keras.layers", "class_name": "ReLU", "registered_name": None,
             "config": {"name": name, "trainable": True, "dtype": "float32", **_RELU6_CONFIG}}
    if functional:
        entry["name"] = name
    return entry


def _needs_rewrite(entry):
    cls, cfg = entry.get("class_name"), entry.get("config", {})
    if cls in ("Activation", "TFOpLambda"):
        return "replace" if (is_relu6_activation(cfg.get("activation"))
                             or cfg.get("function") in ("nn.relu6", "relu6")) else None
    if cls not in ("ReLU", "InputLayer") and "activation" in cfg and is_relu6_activation(cfg["activation"]):
        return "split"
    return None


def _rename_refs(value, mapping):
    """Replaces [name, node, tensor(, kwargs)] references to renamed layers, anywhere in a config."""
    if isinstance(value, list):
        if len(value) in (3, 4) and isinstance(value[0], str) and value[0] in mapping \
                and isinstance(value[1], int):
            return [mapping[value[0]], *value[1:]]
        return [_rename_refs(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _rename_refs(v, mapping) for k, v in value.items()}
    return value


def _strip_kwargs(nodes):
    """A TFOpLambda's call kwargs (name=...) mean nothing to ReLU."""
    if isinstance(nodes, list):
        if len(nodes) == 4 and isinstance(nodes[0], str) and isinstance(nodes[3], dict):
            return [*nodes[:3], {}]
        return [_strip_kwargs(n) for n in nodes]
    return nodes


def _unique(name, taken):
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    taken.add(out)
    return out


def canonicalize(model, custom_objects=None):
    """Returns `(model, renamed)`: a copy with every ReLU6 as a `ReLU(6.0)` layer, and
    `{new ReLU layer name: layer it was split from}` for fused activations.

    Returns the model itself (not a copy) when it holds no ReLU6 form to rewrite.
    """
    functional = getattr(model, "_is_graph_network", False) and not isinstance(model, keras.Sequential)
    config = copy.deepcopy(model.get_config())
    entries = config["layers"]
    if not any(_needs_rewrite(e) for e in entries):
        return model, {}
    taken = {e["config"]["name"] for e in entries}
    out, split = [], {}
    for entry in entries:
        kind = _needs_rewrite(entry)
        name = entry["config"]["name"]
        if kind == "replace":
            new = _relu_entry(name, functional)
            if functional:
                new["inbound_nodes"] = _strip_kwargs(entry.get("inbound_nodes", []))
            out.append(new)
        elif kind == "split":
            entry["config"]["activation"] = "linear"
            relu_name = _unique(f"{name}_relu6", taken)
            split[relu_name] = name
            out.append(entry)
            relu = _relu_entry(relu_name, functional)
            if functional:
                relu["inbound_nodes"] = [[[name, k, 0, {}]] for k in range(len(entry.get("inbound_nodes", [])))]
            out.append(relu)
        else:
            out.append(entry)
    if functional:
        mapping = {src: relu for relu, src in split.items()}
        for entry in out:
            if entry["config"]["name"] not in split:
                entry["inbound_nodes"] = _rename_refs(entry.get("inbound_nodes", []), mapping)
        config["output_layers"] = _rename_refs(config["output_layers"], mapping)
    config["layers"] = out
    cls = keras.Sequential if isinstance(model, keras.Sequential) else keras.Model
    rebuilt = cls.from_config(config, custom_objects=custom_objects)
    by_name = {l.name: l for l in model.layers}
    for layer in rebuilt.layers:
        if layer.name in by_name and layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    return rebuilt, split
