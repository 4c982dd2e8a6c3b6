"""Cutting a model into pieces: the sub-model between some layers' outputs and others'.

`submodel(model, inputs, outputs)` is the part of a functional model that computes the outputs of the
layers named in `outputs` from the outputs of the layers named in `inputs` (new `keras.Input`s take
their place), built from fresh copies of the layers that lie between, with the original's weights.
Early-exit export cuts a model with exits into stages this way; a stage's input is the previous
stage's features.

Example:

>>> from tfcompress._tf import keras
>>> x = keras.Input((4,), name="x")
>>> h = keras.layers.Dense(3, name="hidden")(x)
>>> m = keras.Model(x, keras.layers.Dense(2, name="fc")(keras.layers.ReLU(name="act")(h)))
>>> tail = submodel(m, inputs=["hidden"], outputs=["fc"])
>>> [l.name for l in tail.layers], tail.input_shape
(['hidden_features', 'act', 'fc'], (None, 3))
"""
from tfcompress._tf import keras, tf
from tfcompress.errors import InputError
from tfcompress.graph.rewrite import clone_layer
from tfcompress.graph.walk import nodes, require_graph


def _output_of(model, name):
    try:
        layer = model.get_layer(name)
    except ValueError:
        raise InputError(f"no layer named {name!r} in model {model.name!r}") from None
    outs = tf.nest.flatten(layer.output) if not isinstance(layer, keras.layers.InputLayer) else [layer.output]
    if len(outs) != 1 or len(getattr(layer, "_inbound_nodes", [])) > 1:
        raise InputError(f"layer {name!r} has {len(outs)} outputs or is called more than once; a cut needs "
                         "one output tensor")
    return outs[0]


def _producer(t):
    layer, node_index, _ = t._keras_history
    return layer._inbound_nodes[node_index]


def _needed(outputs, cut_ids):
    """ids of the nodes that the outputs depend on, walking back and stopping at the cut tensors."""
    needed, stack = set(), [t for t in outputs if id(t) not in cut_ids]
    while stack:
        node = _producer(stack.pop())
        if id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(t for t in node.keras_inputs if id(t) not in cut_ids)
    return needed


def submodel(model, inputs, outputs, name=None):
    """The part of `model` from the outputs of the `inputs` layers to the outputs of the `outputs` layers.

    Args:
      model: a functional or Sequential tf-keras model. It is never changed.
      inputs: names of the layers whose output tensors become the sub-model's inputs (an input layer's
        name means that model input).
      outputs: names of the layers whose output tensors become the sub-model's outputs, in order.
      name: the sub-model's name. Defaults to `None` (the original's name).

    Returns:
      A functional model over fresh copies of the layers between, holding the original's weights; its
      input layers are named after the cut layers (`<layer>_features`, or the input layer's own name).

    Raises:
      InputError: an unknown layer name, an output that does not depend on the inputs, or a layer
        between that also reads a tensor from before the cut (a skip connection crosses it; cut after
        the join instead).
    """
    model = require_graph(model, "submodel")
    cut = [_output_of(model, n) for n in inputs]
    targets = [_output_of(model, n) for n in outputs]
    new_of = {}
    for n, t in zip(inputs, cut):
        layer = model.get_layer(n)
        in_name = n if isinstance(layer, keras.layers.InputLayer) else f"{n}_features"
        new_of[id(t)] = keras.Input(batch_shape=(None,) + tuple(t.shape[1:]), dtype=t.dtype, name=in_name)
    needed = _needed(targets, {id(t) for t in cut})
    clones = {}
    for node in nodes(model):
        if id(node) not in needed or isinstance(node.layer, keras.layers.InputLayer):
            continue
        layer = node.layer
        missing = [t for t in node.keras_inputs if id(t) not in new_of]
        if len(missing) == len(node.keras_inputs):
            continue     # before the cut: only a connection across it needs it, and its reader says so
        if missing:
            raise InputError(f"layer {layer.name!r} reads {missing[0]._keras_history.layer.name!r}, which is "
                             f"before the cut at {inputs}: a connection crosses it; cut after the layer that "
                             "joins it")

        def mapped(t):
            return new_of[id(t)] if hasattr(t, "_keras_history") else t
        args = tf.nest.map_structure(mapped, node.call_args)
        kwargs = tf.nest.map_structure(mapped, node.call_kwargs)
        new = clones.get(layer.name)
        first = new is None
        if first:
            new = clones[layer.name] = clone_layer(layer)
        out = new(*args, **kwargs)
        if first and layer.get_weights():
            new.set_weights(layer.get_weights())
        for old, made in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out)):
            new_of[id(old)] = made
    lost = [n for n, t in zip(outputs, targets) if id(t) not in new_of]
    if lost:
        raise InputError(f"output {lost[0]!r} does not depend on the inputs {inputs}")
    return keras.Model([new_of[id(t)] for t in cut], [new_of[id(t)] for t in targets], name=name or model.name)
