"""Reading a functional tf-keras model's graph: its nodes in order, the tensors between them, who reads whom.

Every module that needs the structure of a model asks here (or `rewrite.py`, to change it), so the
private parts of Keras' graph (`_nodes_by_depth`, `_inbound_nodes`, `_keras_history`) are read in
one package.
"""
from tfcompress._tf import keras, tf
from tfcompress.errors import InputError, UnsupportedModelError


def is_graph_model(model):
    """True for a functional or built Sequential model (one whose layers form a graph of nodes)."""
    return isinstance(model, keras.Model) and bool(getattr(model, "_is_graph_network", False))


def functional(model):
    """A Sequential model as a functional model over the same layers; other models unchanged.

    Raises:
      InputError: a Sequential model without a known input shape.
    """
    if isinstance(model, keras.Sequential):
        if not model.built or not getattr(model, "_is_graph_network", False):
            raise InputError(f"Sequential model {model.name!r} has no known input shape; build it with "
                             "keras.Input(...) first")
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def require_graph(model, what="this"):
    """`functional(model)`, refusing subclassed models with an error that says why."""
    if isinstance(model, keras.Sequential):
        return functional(model)
    if not is_graph_model(model):
        raise UnsupportedModelError(
            f"{what} needs a functional or Sequential tf-keras model with a known input shape; "
            f"{getattr(model, 'name', model)} ({type(model).__name__}) is subclassed or not built")
    return model


def tensor_key(t):
    """(layer name, node index, tensor index) of a Keras tensor: its place in the graph."""
    h = t._keras_history
    return (h.layer.name, h.node_index, h.tensor_index)


def nodes(model):
    """The model's nodes (one per layer call, inputs included) in topological order."""
    by_depth = model._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def node_inputs(node):
    """The Keras tensors a node reads, in call order."""
    return list(node.keras_inputs)


def node_outputs(node):
    """The Keras tensors a node makes, flattened."""
    return tf.nest.flatten(node.outputs)


def call_counts(model):
    """{layer name: number of times it is called inside the model}."""
    counts = {}
    for node in nodes(model):
        counts[node.layer.name] = counts.get(node.layer.name, 0) + 1
    return counts


def inbound_layers(layer, call=0):
    """The layers whose outputs the `call`-th call of `layer` reads (empty for an input layer)."""
    calls = getattr(layer, "_inbound_nodes", [])
    if call >= len(calls):
        return []
    return [t._keras_history.layer for t in calls[call].keras_inputs]


def times_called(layer):
    """How many times the layer has been called (in this model and any other built on it)."""
    return len(getattr(layer, "_inbound_nodes", []))


def first_call(layer):
    """The node of the layer's first call, or None for a layer never called."""
    calls = getattr(layer, "_inbound_nodes", [])
    return calls[0] if calls else None


def readers(model):
    """{tensor key: [names of the layers reading it]}."""
    out = {}
    for node in nodes(model):
        for t in node.keras_inputs:
            out.setdefault(tensor_key(t), []).append(node.layer.name)
    return out


def output_keys(model):
    return [tensor_key(t) for t in tf.nest.flatten(model.outputs)]
