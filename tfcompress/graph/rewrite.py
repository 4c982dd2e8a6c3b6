"""The one place that changes a tf-keras model's structure.

A `Rewrite` collects edits to a functional (or Sequential) model and `apply()` builds the new model in one
pass over the original's nodes, in topological order, calling fresh copies of its layers on new Keras
tensors with the arguments each call had. The model is rebuilt from the objects in memory, not from its
serialized config, so a model's own Lambda functions and custom layers come along and nothing is
deserialized (Keras' safe mode is never switched off). Weights are copied layer by layer, by name.

The verbs (tfmot's `model_transformer` and Torch-Pruning's DepGraph are the references):

* `replace(name, build)`: a layer becomes a sub-graph, `build(layer, inputs) -> outputs`
  (`replace_call` hands `build` the call's whole arguments instead);
* `set_config(name, config, weights=None)`: the layer rebuilt with a changed config (a new width);
* `set_weights(name, weights)`: the layer keeps its config and gets these weights;
* `insert_after(name, layer)`, `insert_before(name, layer, input_index=0)`: a new layer on a tensor;
  before a consumer it is seen by that consumer alone (one inserted layer object given to several
  consumers of the same tensor is called once and shared);
* `remove(name)`: a one-input layer is left out, its readers read its input;
* `add_output(name)`: the model gains an output at a layer's output (a head);
* `add_branch(name, build)`: the model gains an output `build(tensor)` on a layer's output (new layers
  that only that output reads: an early-exit head).

A rewrite that changes nothing reproduces the original's outputs bit for bit.

Example:

>>> from tfcompress._tf import keras
>>> x = keras.Input((4,))
>>> m = keras.Model(x, keras.layers.Dense(2, name="fc")(keras.layers.Dense(3, name="hidden")(x)))
>>> new = Rewrite(m).insert_after("hidden", keras.layers.ReLU(name="act")).add_output("hidden").apply()
>>> [l.name for l in new.layers][1:], len(new.outputs)
(['hidden', 'act', 'fc'], 2)
"""
from tfcompress._tf import keras, tf
from tfcompress.errors import InputError
from tfcompress.graph.kinds import kind_of
from tfcompress.graph.walk import nodes, require_graph


def _is_keras_tensor(x):
    return hasattr(x, "_keras_history")


def clone_layer(layer, config=None, custom_objects=None):
    """A fresh, unbuilt copy of `layer` (with `config` instead of its own, when given).

    Nested models are copied with their weights; a Lambda keeps its function object; other layers come
    from `from_config` of their own class, with the model's classes in scope for wrappers.
    """
    if isinstance(layer, keras.Model) and config is None:
        return copy_model(layer, custom_objects=custom_objects)
    kind = kind_of(layer)
    if config is None and kind is not None and kind.clone is not None:
        return kind.clone(layer)
    cfg = layer.get_config() if config is None else config
    with keras.utils.custom_object_scope(custom_objects or {}):
        return type(layer).from_config(cfg)


def _classes(model):
    """{class name: class} of every layer in the model, wrapped layers included."""
    out = {}
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        out[type(layer).__name__] = type(layer)
        inner = getattr(layer, "layer", None)
        if isinstance(inner, keras.layers.Layer):
            stack.append(inner)
        if isinstance(layer, keras.Model) and layer is not model:
            stack.extend(layer.layers)
    return out


class Rewrite:
    """Edits to one model, applied together by `apply()`.

    Args:
      model: a functional or Sequential tf-keras model (a Sequential one comes back functional). It is
        never changed.
      custom_objects: classes `from_config` may need (e.g. inside wrappers) beyond the model's own
        layer classes, which are always known. Defaults to `None`.
      wrap: `wrap(layer) -> layer`, applied to every copied layer once it is built and holds its
        weights (see `map_layers`). Defaults to `None`.

    Raises:
      UnsupportedModelError: a subclassed model.
    """

    def __init__(self, model, custom_objects=None, wrap=None):
        self.wrap = wrap
        self.model = require_graph(model, "a model rewrite")
        self.layers = {layer.name: layer for layer in self.model.layers}
        self.custom_objects = dict(_classes(self.model), **(custom_objects or {}))
        self._replace, self._configs, self._weights = {}, {}, {}
        self._after, self._before, self._removed, self._outputs = {}, {}, set(), []
        self._branches = []

    def _layer(self, name):
        if name not in self.layers:
            raise InputError(f"no layer named {name!r} in model {self.model.name!r}")
        return self.layers[name]

    def replace(self, name, build):
        """`build(layer, inputs) -> outputs` makes the layer's replacement on the new input tensor(s)
        (the first argument of each call, as the call had it)."""
        self._layer(name)
        self._replace[name] = build
        return self

    def replace_call(self, name, build):
        """`build(layer, args, kwargs) -> outputs` makes the layer's replacement from the call's own
        arguments, Keras tensors mapped to the new ones (for calls whose constants matter, such as a
        TensorFlow op on a tensor and a scalar)."""
        self._layer(name)
        self._replace[name] = _WholeCall(build)
        return self

    def set_config(self, name, config, weights=None):
        """Rebuild `name` from `config`; its weights are `weights`, or its own when the shapes still fit."""
        self._layer(name)
        self._configs[name] = config
        if weights is not None:
            self._weights[name] = weights
        return self

    def set_weights(self, name, weights):
        self._layer(name)
        self._weights[name] = list(weights)
        return self

    def insert_after(self, name, layer):
        self._layer(name)
        self._after.setdefault(name, []).append(layer)
        return self

    def insert_before(self, name, layer, input_index=0):
        self._layer(name)
        self._before.setdefault((name, input_index), []).append(layer)
        return self

    def remove(self, name):
        self._layer(name)
        self._removed.add(name)
        return self

    def add_output(self, name):
        self._layer(name)
        self._outputs.append(name)
        return self

    def add_branch(self, name, build):
        """`build(tensor) -> output` makes new layers on `name`'s new output tensor; the model gains
        `output` after its own outputs and those of `add_output`, in the order of the calls."""
        self._layer(name)
        self._branches.append((name, build))
        return self

    # ------------------------------------------------------------------ building

    def _input(self, layer):
        cfg = layer.get_config()
        return keras.Input(batch_shape=cfg["batch_input_shape"], dtype=cfg.get("dtype"), name=cfg["name"],
                           sparse=cfg.get("sparse", False), ragged=cfg.get("ragged", False))

    def _new_layer(self, layer):
        name = layer.name
        return clone_layer(layer, self._configs.get(name), self.custom_objects)

    def _fill_weights(self, old, new):
        name = old.name
        if name in self._weights:
            values = self._weights[name]
        else:
            values = old.get_weights()
            shapes = [tuple(w.shape) for w in new.weights]
            if shapes != [tuple(v.shape) for v in values]:
                if name in self._configs:
                    raise ValueError(f"layer {name!r}: the new config changes its weight shapes "
                                     f"({shapes}); give the weights with set_config(..., weights=...)")
                raise ValueError(f"layer {name!r}: its copy has weights {shapes}, the original "
                                 f"{[tuple(v.shape) for v in values]}")
        if values:
            new.set_weights(values)

    def apply(self, name=None):
        """The new model (uncompiled); `name` defaults to the original's."""
        new_of = {}      # id(old Keras tensor) -> new tensor
        clones = {}      # old layer name -> new layer
        shared = {}      # (id(inserted layer), id(old tensor)) -> its output
        for node in nodes(self.model):
            layer = node.layer
            if isinstance(layer, keras.layers.InputLayer):
                (old,) = tf.nest.flatten(node.outputs)
                new_of[id(old)] = self._input(layer)
                continue
            outputs = self._call(node, new_of, clones, shared)
            for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
                new_of[id(old)] = new
        inputs = tf.nest.map_structure(lambda t: new_of[id(t)], self.model._nested_inputs)
        outputs = tf.nest.map_structure(lambda t: new_of[id(t)], self.model._nested_outputs)
        if self._outputs or self._branches:
            outputs = tf.nest.flatten(outputs) + [new_of[id(self.layers[n].output)] for n in self._outputs]
            outputs += [build(new_of[id(self.layers[n].output)]) for n, build in self._branches]
        return keras.Model(inputs, outputs, name=name or self.model.name)

    def _call(self, node, new_of, clones, shared):
        layer = node.layer
        name = layer.name
        keras_inputs = list(node.keras_inputs)

        def mapped(t):
            if not _is_keras_tensor(t):
                return t
            new = new_of[id(t)]
            index = next(i for i, k in enumerate(keras_inputs) if k is t)
            for extra in self._before.get((name, index), ()):
                key = (id(extra), id(t))
                if key not in shared:
                    shared[key] = extra(new)
                new = shared[key]
            return new

        args = tf.nest.map_structure(mapped, node.call_args)
        kwargs = tf.nest.map_structure(mapped, node.call_kwargs)
        if name in self._removed:
            if len(keras_inputs) != 1:
                raise ValueError(f"remove: layer {name!r} has {len(keras_inputs)} inputs; only one-input "
                                 "layers can be removed")
            outputs = mapped(keras_inputs[0])
        elif isinstance(self._replace.get(name), _WholeCall):
            outputs = self._replace[name].build(layer, args, kwargs)
        elif name in self._replace:
            outputs = self._replace[name](layer, args[0] if args else next(iter(kwargs.values())))
        else:
            new = clones.get(name)
            first = new is None
            if first:
                new = self._new_layer(layer)
                if self.wrap is not None:
                    with tf.name_scope(new.name):   # weight names as if built by a call: 'conv/kernel:0'
                        new._maybe_build(args[0] if args else next(iter(kwargs.values())))
                    self._fill_weights(layer, new)
                    new = self.wrap(new)
                clones[name] = new
            outputs = new(*args, **kwargs)
            if first and self.wrap is None:
                self._fill_weights(layer, new)
        for extra in self._after.get(name, ()):
            outputs = extra(outputs)
        return outputs


class _WholeCall:
    def __init__(self, build):
        self.build = build


def _sequential_input(model):
    if not model.built or not getattr(model, "_is_graph_network", False):
        raise InputError(f"Sequential model {model.name!r} has no known input shape; build it with "
                         "keras.Input(...) first")
    return keras.Input(batch_shape=model.input_shape, dtype=model.inputs[0].dtype)


def _built_copy(layer, objects):
    """A copy of a Sequential's layer, built on the original's input shape and holding its weights."""
    new = clone_layer(layer, None, objects)
    if not new.built:
        with tf.name_scope(new.name):
            new.build(layer.input_shape)
    if layer.get_weights():
        new.set_weights(layer.get_weights())
    return new


def copy_model(model, custom_objects=None):
    """A copy of a functional or Sequential model with the same weights and outputs (bit for bit).

    A Sequential model comes back as a Sequential over copies of its layers.
    """
    return map_layers(model, lambda layer: layer, custom_objects)


def map_layers(model, fn, custom_objects=None):
    """A copy of `model` in which each layer (inputs aside) is `fn(copy)`: a new layer, or the copy itself.

    The copy handed to `fn` is built and holds the original's weights, so a wrapper that reads them when
    it is built (clustering's centroids) sees the trained values. For wrapping layers (pruning,
    clustering, quantization annotations) in a new model without touching the original. A Sequential
    model comes back Sequential.
    """
    if not isinstance(model, keras.Sequential):
        return Rewrite(model, custom_objects, wrap=fn).apply()
    head = _sequential_input(model)
    objects = dict(_classes(model), **(custom_objects or {}))
    return keras.Sequential([head] + [fn(_built_copy(layer, objects)) for layer in model.layers], name=model.name)
