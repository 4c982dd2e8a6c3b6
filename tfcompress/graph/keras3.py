"""Keras 3 models in and out: `from_keras3(model) -> tf_keras model`, `to_keras3(model) -> Keras 3 model`.

tfmot works only with tf_keras, so tfcompress trains and rewrites in tf_keras underneath. A Keras 3 model
is rebuilt node by node, in topological order, as a tf_keras model of the same layers (configs moved
across by `translate.py`, weights copied layer by layer), and back. A Lambda keeps its function object;
Keras 3 operations on tensors (`keras.ops.add(x, 1.0)`) become the TensorFlow op that computes the same
and back. A layer with no counterpart on the other side (a custom layer, a Keras 3 layer tf_keras lacks,
a training wrapper) is named, with every other such layer and its class, in one error.

Example:

>>> import keras
>>> x = keras.Input((4,))
>>> k3 = keras.Model(x, keras.layers.Dense(2, name="fc")(x))
>>> tk = from_keras3(k3)
>>> type(tk).__module__.split(".")[0], tk.get_layer("fc").units
('tf_keras', 2)
>>> type(to_keras3(tk)).__module__.split(".")[0]
'keras'
"""
import sys

import numpy as np

from tfcompress._tf import check_model, keras as tk, keras3, tf
from tfcompress.errors import UnsupportedModelError
from tfcompress.graph.translate import Untranslatable, input_kwargs, layer_config
from tfcompress.graph.walk import nodes as tk_nodes, require_graph


def is_keras3(model):
    """True for a Keras 3 model (or layer), subclasses included; Keras 3 is not imported to answer."""
    return "keras" in sys.modules and isinstance(model, sys.modules["keras"].layers.Layer)


def tf_keras_model(model, what="model"):
    """The tf_keras model a public verb works on: a tf_keras model itself, a Keras 3 model translated by
    `from_keras3` (so every verb accepts both; those that return a model return tf_keras).

    Raises:
      UnsupportedModelError: not a Keras model, or a Keras 3 model that cannot be translated.
    """
    if is_keras3(model) and isinstance(model, keras3().Model):
        return from_keras3(model)
    return check_model(model, what)


def _hard_silu(x):
    return x * tf.nn.relu6(x + 3.0) / 6.0


# Keras 3 operations -> the TensorFlow function tf_keras records (as a TFOpLambda) for them
_K3_OPS = {"Add": tf.math.add, "Subtract": tf.math.subtract, "Multiply": tf.math.multiply,
           "Divide": tf.math.truediv, "TrueDivide": tf.math.truediv, "Maximum": tf.math.maximum,
           "Minimum": tf.math.minimum, "Negative": tf.math.negative, "Abs": tf.math.abs, "Square": tf.math.square,
           "Sqrt": tf.math.sqrt, "Exp": tf.math.exp, "Relu": tf.nn.relu, "Relu6": tf.nn.relu6,
           "Sigmoid": tf.math.sigmoid, "Tanh": tf.math.tanh, "Silu": tf.nn.silu, "HardSilu": _hard_silu}
# tf_keras TFOpLambda functions -> the Keras 3 operation
_TK_OPS = {"math.add": "add", "__operators__.add": "add", "math.subtract": "subtract", "__operators__.sub": "subtract",
           "math.multiply": "multiply", "__operators__.mul": "multiply", "math.truediv": "true_divide",
           "__operators__.truediv": "true_divide", "math.maximum": "maximum", "math.minimum": "minimum",
           "math.negative": "negative", "math.abs": "abs", "math.square": "square", "math.sqrt": "sqrt",
           "math.exp": "exp", "nn.relu": "relu", "nn.relu6": "relu6", "math.sigmoid": "sigmoid",
           "nn.sigmoid": "sigmoid", "math.tanh": "tanh", "nn.tanh": "tanh", "nn.silu": "silu", "nn.swish": "silu"}


def _refuse(missing, direction, model=None):
    listed = ", ".join(f"{name} ({cls})" for name, cls in missing)
    wrapped = model is not None and any(isinstance(getattr(l, "layer", None), tk.layers.Layer) for l in model.layers)
    hint = "; training wrappers stay in tf_keras: tfc.strip the model first" if wrapped else ""
    raise UnsupportedModelError(f"cannot translate to {direction}: no counterpart for layer(s) {listed}{hint}")


def _weights(new, old):
    values = old.get_weights()
    if values:
        shapes = [tuple(np.shape(v)) for v in values]
        if [tuple(w.shape) for w in new.weights] != shapes:
            raise UnsupportedModelError(f"layer {old.name!r} ({type(old).__name__}): its weights {shapes} do "
                                        f"not fit the translated layer's {[tuple(w.shape) for w in new.weights]}")
        new.set_weights(values)


def _map(structure, new_of):
    return tf.nest.map_structure(lambda t: new_of.get(id(t), t), structure)


def _builtin(layer, package):
    return (type(layer).__module__ or "").startswith(f"{package}.src.layers")


# ---------------------------------------------------------------------------------- Keras 3 -> tf_keras


def _k3_nodes(model):
    graph = getattr(model, "_functional", None) or model
    by_depth = graph._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def _to_tk_layer(op):
    """A fresh tf_keras layer doing what Keras 3 operation `op` does; None when there is none."""
    k3 = keras3()
    if isinstance(op, k3.Model):
        return from_keras3(op)
    if isinstance(op, k3.layers.Lambda):
        return tk.layers.Lambda(op.function, output_shape=getattr(op, "_output_shape", None), mask=op.mask,
                                arguments=dict(op.arguments), name=op.name, trainable=op.trainable)
    if not _builtin(op, "keras"):
        return None
    cls = getattr(tk.layers, type(op).__name__, None)
    if cls is None:
        return None
    return cls.from_config(layer_config(op.get_config(), cls, "tf_keras", type(op)))


def from_keras3(model):
    """A tf_keras model computing what a Keras 3 model computes, with its weights (a tf_keras model is
    returned as it is).

    Args:
      model: a functional or Sequential Keras 3 model.

    Returns:
      A tf_keras model: functional, or Sequential for a Sequential model; layer names kept.

    Raises:
      UnsupportedModelError: a subclassed model, or layers without a tf_keras counterpart (all named).
    """
    if isinstance(model, tk.Model):
        return model
    k3 = keras3()
    if not isinstance(model, k3.Model) or not (isinstance(model, k3.Sequential) or hasattr(model, "_nodes_by_depth")
                                                or hasattr(model, "_functional")):
        raise UnsupportedModelError(f"{getattr(model, 'name', model)} ({type(model).__name__}) is not a functional "
                                    "or Sequential Keras 3 model; only those can be translated")
    if isinstance(model, k3.Sequential):
        return _sequential(model, _to_tk_layer, tk, "tf_keras")
    new_of, layers, missing = {}, {}, []
    for node in _k3_nodes(model):
        op = node.operation
        if isinstance(op, k3.layers.InputLayer):
            new_of[id(node.output_tensors[0])] = tk.Input(**input_kwargs(op.get_config(), "keras3"))
            continue
        is_op = type(op).__name__ in _K3_OPS and not isinstance(op, k3.layers.Layer)
        if not is_op and op.name not in layers:
            layers[op.name] = _translated(op, _to_tk_layer, missing, "tf_keras")
        if missing:
            continue   # keep looking for every layer without a counterpart
        args, kwargs = node.arguments.args, {k: v for k, v in node.arguments.kwargs.items() if v is not None}
        args, kwargs = _map(args, new_of), _map(kwargs, new_of)
        if is_op:
            outputs = _K3_OPS[type(op).__name__](*args, **kwargs)
        else:
            outputs = _call(layers[op.name], op, args, kwargs)
        for old, new in zip(node.output_tensors, tf.nest.flatten(outputs)):
            new_of[id(old)] = new
    if missing:
        _refuse(missing, "tf_keras")
    out = tf.nest.map_structure(lambda t: new_of[id(t)], _outputs(model))
    ins = [new_of[id(t)] for t in model.inputs]
    return tk.Model(ins if len(ins) > 1 else ins[0], out, name=model.name)


def _outputs(model):
    outputs = model.outputs
    return outputs[0] if len(outputs) == 1 else list(outputs)


# ---------------------------------------------------------------------------------- tf_keras -> Keras 3


def _to_k3_layer(layer):
    k3 = keras3()
    if isinstance(layer, tk.Model):
        return to_keras3(layer)
    if type(layer) is tk.layers.Lambda:
        return k3.layers.Lambda(layer.function, output_shape=layer._output_shape, mask=layer.mask,
                                arguments=dict(layer.arguments), name=layer.name, trainable=layer.trainable)
    if not _builtin(layer, "tf_keras"):
        return None
    cls = getattr(k3.layers, type(layer).__name__, None)
    if cls is None:
        return None
    return cls.from_config(layer_config(layer.get_config(), cls, "keras3", type(layer)))


def to_keras3(model):
    """A Keras 3 model computing what a tf_keras model computes, with its weights (the way back after
    `tfc.strip`; a Keras 3 model is returned as it is).

    Args:
      model: a functional or Sequential tf_keras model without training wrappers (strip it first).

    Returns:
      A Keras 3 model: functional, or Sequential for a Sequential model; layer names kept.

    Raises:
      UnsupportedModelError: a subclassed model, or layers without a Keras 3 counterpart (all named;
        pruning, clustering and QAT wrappers among them: `tfc.strip` the model first).
    """
    k3 = keras3()
    if isinstance(model, k3.Model):
        return model
    if isinstance(model, tk.Sequential):
        return _sequential(model, _to_k3_layer, k3, "Keras 3")
    source = require_graph(model, "to_keras3")
    new_of, layers, missing = {}, {}, []
    for node in tk_nodes(source):
        layer = node.layer
        if isinstance(layer, tk.layers.InputLayer):
            (old,) = tf.nest.flatten(node.outputs)
            new_of[id(old)] = k3.Input(**input_kwargs(layer.get_config(), "tf_keras"))
            continue
        op = _TK_OPS.get(layer.get_config().get("function")) if type(layer).__name__ == "TFOpLambda" else None
        if type(layer).__name__ == "TFOpLambda" and op is None:
            missing.append((layer.name, f"TFOpLambda {layer.get_config().get('function')}"))
        elif op is None and layer.name not in layers:
            layers[layer.name] = _translated(layer, _to_k3_layer, missing, "Keras 3")
        if missing:
            continue
        args = _map(node.call_args, new_of)
        kwargs = _map({k: v for k, v in node.call_kwargs.items() if k != "name" and v is not None}, new_of)
        outputs = getattr(k3.ops, op)(*args, **kwargs) if op else _call(layers[layer.name], layer, args, kwargs)
        for old, new_t in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
            new_of[id(old)] = new_t
    if missing:
        _refuse(missing, "Keras 3", model)
    ins = [new_of[id(t)] for t in source.inputs]
    out = tf.nest.map_structure(lambda t: new_of[id(t)], source._nested_outputs)
    return k3.Model(ins if len(ins) > 1 else ins[0], out, name=model.name)


def _translated(layer, make, missing, side):
    """`make(layer)`, or None with the layer noted in `missing` when it has no counterpart."""
    try:
        new = make(layer)
    except Untranslatable as e:
        missing.append((layer.name, f"{type(layer).__name__}: {e} has no {side} counterpart"))
        return None
    if new is None:
        missing.append((layer.name, type(layer).__name__))
    return new


def _call(new, old, args, kwargs):
    """Calls the translated layer; the first call builds it, and it takes the original's weights."""
    first = not new.built
    outputs = new(*args, **kwargs)
    if first and not isinstance(old, (tk.Model, keras3().Model)):
        _weights(new, old)
    return outputs


def _sequential(model, make, side_keras, side):
    """A Sequential model of the other version: its layers translated, built on the same input, weights copied."""
    missing = []
    layers = [_translated(layer, make, missing, side) for layer in model.layers]
    if missing:
        _refuse(missing, side, model if side == "Keras 3" else None)
    head = side_keras.Input(batch_shape=tuple(model.inputs[0].shape), dtype=model.inputs[0].dtype)
    new = side_keras.Sequential([head] + layers, name=model.name)
    for old, layer in zip(model.layers, layers):
        if not isinstance(old, (tk.Model, keras3().Model)):
            _weights(layer, old)
    return new
