"""`tfc.add_exits`: classifiers at intermediate layers, trained with the model in one `fit`.

Each exit is a small head on a layer's output (by default, for image features: a 3x3 convolution with
stride 2, BatchNorm, ReLU6, global average pooling and a Dense layer with the model's number of classes;
for vectors: one Dense layer). The returned `ExitModel` is a functional model whose outputs are the
exits' logits in depth order and then the model's own output; its `compile` weights the exits' losses
(`loss_weights`) and uses one loss for every output (sparse categorical cross-entropy on logits unless
another is given), so `fit(x, y)` takes the usual labels.

Head layers are named `exit<i>_...` and the last one `exit<i>`, so the exits are found again in a copy
of the model (after `tfc.prune`, `tfc.strip`, saving) by `exit_points`.
"""
import re

from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.graph.rewrite import Rewrite
from tfcompress.graph.walk import inbound_layers, require_graph

L = keras.layers
_EXIT = re.compile(r"^exit(\d+)$")


def default_head(features, classes, name):
    """The default exit head on a Keras tensor: logits of shape (batch, classes).

    Args:
      features: the Keras tensor the exit reads (rank 4 image features or rank 2 vectors).
      classes: how many logits.
      name: the exit's name (`exit<i>`); head layers are `<name>_conv`, ..., and `<name>` last.

    Returns:
      The logits tensor.
    """
    x = features
    if len(x.shape) == 4:
        width = max(32, int(x.shape[-1]))
        stride = 2 if min(int(x.shape[1]), int(x.shape[2])) >= 8 else 1
        x = L.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = L.BatchNormalization(name=f"{name}_bn")(x)
        x = L.ReLU(6.0, name=f"{name}_relu6")(x)
        x = L.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    elif len(x.shape) != 2:
        x = L.Flatten(name=f"{name}_flatten")(x)
    return L.Dense(classes, name=name)(x)


class ExitModel(keras.Model):
    """A functional model with early exits: outputs `[exit0, ..., exit<n-1>, final]` (all logits).

    Args:
      inputs, outputs: as for a functional `keras.Model`.
      exit_at: the layer names the exits read, in depth order.
      loss_weights: one weight per output (exits, then the final output). Defaults to `None` (1 each).
      name: the model's name. Defaults to `None`.
    """

    def __init__(self, inputs, outputs, exit_at=(), loss_weights=None, name=None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.exit_at = list(exit_at)
        self.exit_loss_weights = list(loss_weights) if loss_weights is not None else [1.0] * len(self.outputs)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, **kwargs):
        """`keras.Model.compile` with the exits' loss weights and one loss for every output by default.

        Args:
          optimizer: as for `keras.Model.compile`. Defaults to `"rmsprop"`.
          loss: one loss for every output, or one per output. Defaults to `None`: sparse categorical
            cross-entropy on logits.
          metrics: as for `keras.Model.compile` (a list applies to every output). Defaults to `None`.
          loss_weights: overrides the weights given to `add_exits`. Defaults to `None`.
          **kwargs: passed to `keras.Model.compile`.
        """
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if loss_weights is None:
            loss_weights = dict(zip(self.output_names, self.exit_loss_weights))
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(exit_at=self.exit_at, exit_loss_weights=self.exit_loss_weights)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        exit_at, weights = config.pop("exit_at", []), config.pop("exit_loss_weights", None)
        model = super().from_config(config, custom_objects)
        model.exit_at, model.exit_loss_weights = list(exit_at), weights or [1.0] * len(model.outputs)
        return model


def _weights(loss_weights, n):
    if loss_weights is None:
        return [1.0] * (n + 1)
    weights = [float(w) for w in loss_weights]
    if len(weights) == n:
        weights.append(1.0)
    if len(weights) != n + 1 or any(w < 0 for w in weights):
        raise InputError(f"loss_weights must hold one non-negative weight per exit ({n}), or one more for the "
                         f"final output. Got: {list(loss_weights)}")
    return weights


def add_exits(model, at, head=None, loss_weights=None):
    """Adds an early-exit classifier after each named layer; returns a new multi-output model.

    The model's own layers keep their names and weights; the model passed in is left untouched. Train
    the result with `compile` + `fit(x, y)` (labels as for the original), calibrate thresholds with
    `tfc.calibrate_exits`, and export one file with a signature per stage with `tfc.export_exits`.

    Example:

    ```python
    ee = tfc.add_exits(model, at=["block1_add", "block3_add"])
    ee.compile(optimizer="adam", metrics=["accuracy"])
    ee.fit(x, y, epochs=10)
    ```

    Args:
      model: a functional or Sequential tf-keras (or Keras 3) classifier with one output of logits.
      at: names of the layers to put exits after, in any order (they are sorted by depth). A stage of
        the exported file ends at each, so nothing may connect across it (cut after a residual add).
      head: `head(features, classes, name) -> logits` building one exit on a Keras tensor, or a list of
        them (one per exit, in depth order). Defaults to `None`: `default_head`.
      loss_weights: one loss weight per exit, or one more for the final output (whose weight is else 1).
        Defaults to `None` (1 for every output).

    Returns:
      An `ExitModel` with outputs `[exit0, ..., final]`.

    Raises:
      InputError: no exit, an unknown or repeated layer name, an exit at the output layer, bad weights,
        or a model whose output is not one vector of logits.
      UnsupportedModelError: a subclassed model.
    """
    model = require_graph(tf_keras_model(model), "add_exits")
    if isinstance(at, str):
        at = [at]
    at = list(at or [])
    if not at:
        raise InputError("add_exits needs at least one layer name in `at`. Got: []")
    if len(set(at)) != len(at):
        raise InputError(f"add_exits: a layer is named twice in `at`. Got: {at}")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise InputError(f"add_exits needs a model with one output of logits (batch, classes). Got outputs: "
                         f"{[tuple(o.shape) for o in model.outputs]}")
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    unknown = [n for n in at if n not in order]
    if unknown:
        raise InputError(f"add_exits: no layer named {unknown[0]!r} in model {model.name!r}")
    final = model.outputs[0]._keras_history.layer.name
    if final in at:
        raise InputError(f"add_exits: {final!r} is the model's output layer; put exits before it")
    at = sorted(at, key=order.get)
    heads = list(head) if isinstance(head, (list, tuple)) else [head or default_head] * len(at)
    if len(heads) != len(at):
        raise InputError(f"head: one builder per exit ({len(at)}). Got: {len(heads)}")
    classes = int(model.outputs[0].shape[-1])
    rewrite = Rewrite(model)
    for i, (name, build) in enumerate(zip(at, heads)):
        rewrite.add_branch(name, lambda t, build=build, i=i: build(t, classes, f"exit{i}"))
    new = rewrite.apply()
    outputs = list(new.outputs[1:]) + [new.outputs[0]]
    return ExitModel(new.inputs, outputs, exit_at=at, loss_weights=_weights(loss_weights, len(at)),
                     name=f"{model.name}_exits")


def exit_points(model):
    """(cut layer names, exit output layer names, final output layer name) of a model with exits.

    Read from `ExitModel.exit_at` when present, else from the layer names (`exit<i>` outputs, whose head
    layers `exit<i>_...` lead back to the layer the exit reads).

    Raises:
      InputError: the model has no exit outputs.
    """
    names = output_names(model)
    exits = sorted((n for n in names if _EXIT.match(n)), key=lambda n: int(_EXIT.match(n).group(1)))
    finals = [n for n in names if not _EXIT.match(n)]
    if not exits or len(finals) != 1:
        raise InputError(f"model {model.name!r} has no early exits (outputs named exit<i> and one final output; "
                         f"build it with tfc.add_exits). Got outputs: {names}")
    at = list(getattr(model, "exit_at", []) or [])
    if len(at) != len(exits):
        at = []
        by_name = {layer_name(l): l for l in model.layers}
        for name in exits:
            layer = by_name[name]
            while layer_name(layer) == name or layer_name(layer).startswith(f"{name}_"):
                inbound = inbound_layers(layer)
                if len(inbound) != 1:
                    raise InputError(f"exit {name!r}: cannot find the layer it reads (head layer {layer.name!r} "
                                     f"has {len(inbound)} inputs)")
                layer = inbound[0]
            at.append(layer_name(layer))
    return at, exits, finals[0]


def layer_name(layer):
    """A layer's own name, seen through a QAT wrapper (`tfc.quantize` names it `quant_<name>`)."""
    inner = getattr(layer, "layer", None)
    return inner.name if isinstance(inner, keras.layers.Layer) else layer.name


def output_names(model):
    """The names of the layers that make a model's outputs, in order (through QAT wrappers)."""
    return [layer_name(o._keras_history.layer) for o in model.outputs]
