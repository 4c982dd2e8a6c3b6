"""Magnitude pruning inside `fit`, on tfmot's pruning wrapper.

tfmot's `PruneLowMagnitude` evaluates its schedule, a `tf.cond` and a weight re-assignment in the
graph of every training step. Here the wrapper only multiplies each prunable weight by its mask in
the forward pass (so pruned weights get no gradient and stay out of the output); the schedule runs in
Python in `CompressionCallback`, which recomputes masks only on the steps the schedule names. The
wrapper subclasses tfmot's, so tfmot's registry of prunable layers, `PrunableLayer` for custom
layers, and `strip_pruning` all apply.
"""
import numpy as np

from tfcompress._tf import keras, tf, tfmot
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.callbacks import iter_layers, register_driver
from tfcompress.errors import Error, InputError, UnsupportedModelError
from tfcompress.graph import copy_model, map_layers
from tfcompress.schedules import ConstantSparsity, Schedule
from tfcompress.stripping import register_stripper

from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry as _registry  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper as _pw  # noqa: E402

CALLBACK_MISSING = ("a model pruned with tfc.prune was trained without its callback: pass "
                    "callbacks=[tfc.CompressionCallback()] to model.fit")


@keras.utils.register_keras_serializable(package="tfcompress")
class PruneWrapper(_pw.PruneLowMagnitude):
    """Holds a layer's masks; masks its prunable weights in the forward pass.

    `pruning_step` (tfmot's variable) is -1 until `CompressionCallback` arms the wrapper at the start
    of `fit`; a training step on an unarmed wrapper fails with an error that names the callback.
    """

    def __init__(self, layer, schedule, **kwargs):
        if not isinstance(schedule, Schedule):
            raise InputError(f"schedule must be a tfc schedule (ConstantSparsity, PolynomialDecay, "
                             f"IterativeSteps). Got: {type(schedule).__name__}")
        self.schedule = schedule
        kwargs.pop("pruning_schedule", None)
        # tfmot's own schedule object is only used by its in-graph path, which this wrapper replaces.
        super().__init__(layer, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0), **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        # Which attribute of the inner layer holds each prunable weight, so `call` can lend the layer
        # the masked tensor instead of re-assigning the variable every step.
        attrs = vars(self.layer)
        self._weight_attrs = []
        for weight in self.prunable_weights:
            self._weight_attrs.append(next((k for k, v in attrs.items() if v is weight), None))

    def call(self, inputs, training=None, **kwargs):
        if training is None:
            training = keras.backend.learning_phase()
        if training is True and not getattr(self, "_armed", False):
            self._traced_unarmed = True
            raise Error(CALLBACK_MISSING)  # at trace time: the usual case, a clean error
        if training is True or tf.is_tensor(training):
            # in the graph: catches a cached train function reused after the callback was dropped
            checks = [tf.debugging.assert_non_negative(self.pruning_step, message=CALLBACK_MISSING)]
        else:
            checks = []
        if None in self._weight_attrs:  # weights we cannot lend: fall back to assigning
            with tf.control_dependencies(checks):
                self.add_update(self.pruning_obj.weight_mask_op())
            return self._inner_call(inputs, training, **kwargs)
        with tf.control_dependencies(checks):
            masked = [tf.identity(w) * m if checks else w * m for (w, m, _) in self.pruning_vars]
        try:
            for attr, value in zip(self._weight_attrs, masked):
                object.__setattr__(self.layer, attr, value)
            return self._inner_call(inputs, training, **kwargs)
        finally:
            for attr, (w, _, _) in zip(self._weight_attrs, self.pruning_vars):
                object.__setattr__(self.layer, attr, w)

    def _inner_call(self, inputs, training, **kwargs):
        import inspect
        if "training" in inspect.getfullargspec(self.layer.call).args:
            return self.layer.call(inputs, training=training, **kwargs)
        return self.layer.call(inputs, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("pruning_schedule", None)
        config["schedule"] = self.schedule.get_config()
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        schedule = Schedule.from_dict(config.pop("schedule"))
        for key in ("pruning_schedule", "block_size", "block_pooling_type", "sparsity_m_by_n"):
            config.pop(key, None)
        layer = keras.layers.deserialize(config.pop("layer"))
        return cls(layer, schedule, **config)

    # -- mask math, run eagerly by the driver on the steps the schedule names --
    def apply_masks(self):
        """Pruned weights := +0.0, so the variables themselves hold the zeros (`w * 0` would leave -0.0
        for negative weights, whose sign bit survives into the file and hides the zero from coders)."""
        for w, m, _ in self.pruning_vars:
            w.assign(_masked(w, m))

    def update_masks(self, sparsity):
        """Zeros exactly round(sparsity * size) weights of smallest magnitude in each prunable weight."""
        for w, m, t in self.pruning_vars:
            mask, threshold = magnitude_mask(w * m, sparsity)
            m.assign(mask)
            w.assign(_masked(w * m, mask))
            t.assign(tf.cast(threshold, t.dtype))


def magnitude_mask(weights, sparsity):
    """(mask, threshold): the 0/1 mask, shaped like `weights`, that zeros exactly round(sparsity * size)
    entries of smallest magnitude (ties broken by position), and the largest magnitude it zeros."""
    values = tf.reshape(weights, [-1])
    n = int(values.shape[0])
    k = int(round(float(sparsity) * n))
    if k <= 0:
        return tf.ones_like(weights), 0.0
    order = tf.argsort(tf.abs(values), stable=True)
    mask = tf.tensor_scatter_nd_update(tf.ones_like(values), order[:k, None], tf.zeros([k], values.dtype))
    return tf.reshape(mask, weights.shape), tf.abs(tf.gather(values, order[k - 1]))


def _masked(w, mask):
    return tf.where(mask > 0, w, tf.zeros_like(w))


def _select(model, schedule, layers):
    """{layer name: schedule} for the layers to prune."""
    if isinstance(layers, dict):
        chosen = {name: _as_schedule(name, s, schedule) for name, s in layers.items()}
    elif layers is None:
        if schedule is None:
            raise InputError("prune needs a schedule")
        chosen = {l.name: schedule for l in model.layers if _prunable(l)}
    elif callable(layers):
        chosen = {l.name: schedule for l in model.layers if layers(l)}
    else:
        if isinstance(layers, str):
            layers = [layers]
        chosen = {name: schedule for name in layers}
    names = {l.name: l for l in model.layers}
    missing = [n for n in chosen if n not in names]
    if missing:
        raise InputError(f"no layer named {', '.join(map(repr, missing))} in model {model.name!r}")
    unprunable = [n for n in chosen if not _prunable(names[n])]
    if unprunable and layers is not None:
        raise InputError(f"layer(s) {', '.join(unprunable)} cannot be pruned (no prunable weights); implement "
                         "tfmot.sparsity.keras.PrunableLayer for custom layers")
    if schedule is None and not isinstance(layers, dict):
        raise InputError("prune needs a schedule, or layers={name: schedule}")
    return {n: s for n, s in chosen.items() if n not in unprunable}


def _as_schedule(name, value, template):
    """A layer's schedule from `{name: schedule}` or `{name: sparsity}` (`tfc.allocate`): a number takes the
    place of the target of `template` (a ConstantSparsity or PolynomialDecay), or is a ConstantSparsity."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if template is None:
            return ConstantSparsity(float(value))
        config = template.get_config()
        if "target" not in config["config"]:
            raise InputError(f"a sparsity per layer needs a schedule with a target (ConstantSparsity, "
                             f"PolynomialDecay) to take it. Got: {type(template).__name__}")
        config["config"]["target"] = float(value)
        return Schedule.from_dict(config)
    raise InputError(f"layers[{name!r}] must be a schedule or a sparsity. Got: {type(value).__name__}")


def _prunable(layer):
    if isinstance(layer, (PruneWrapper, keras.Model)):
        return False
    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return True
    return _registry.PruneRegistry.supports(layer) and bool(_registry.PruneRegistry._weight_names(layer))


def prune(model, schedule=None, layers=None):
    """Wraps a model's layers for magnitude pruning during `fit`.

    The returned model is a copy; the input model is left untouched. Train it with
    `tfc.CompressionCallback()` in the callbacks, then `tfc.strip` it.

    Example:

    ```python
    model = tfc.prune(model, tfc.PolynomialDecay(0.8, end_step=2000, frequency=100))
    model = tfc.prune(model, layers={"fc1": tfc.ConstantSparsity(0.9), "conv2": tfc.ConstantSparsity(0.5)})
    ```

    Args:
      model: a Sequential or functional tf_keras model.
      schedule: the sparsity schedule for the chosen layers.
      layers: None for every prunable layer (Conv, Dense, DepthwiseConv, ...), a list of layer names, a
        predicate `layer -> bool`, or `{layer name: schedule}` for per-layer schedules, or `{layer name:
        sparsity}` (what `tfc.allocate` returns): each number is the target of `schedule` for that layer,
        or of a `ConstantSparsity` without one. The dict may also come in place of `schedule`.
        Defaults to `None`.

    Returns:
      A new model whose chosen layers are wrapped.

    Raises:
      UnsupportedModelError: a Keras 3 or subclassed model.
      InputError: unknown layer names, unprunable layers named explicitly, or a bad schedule.
    """
    if isinstance(schedule, dict) and layers is None:
        schedule, layers = None, schedule
    model = tf_keras_model(model)
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise UnsupportedModelError(
            f"{type(model).__name__} is a subclassed model; tfc.prune supports Sequential and functional "
            "models (wrap the layers yourself with tfc.pruning.magnitude.PruneWrapper inside it)")
    chosen = _select(model, schedule, layers)
    if not chosen:
        raise InputError(f"model {model.name!r} has no prunable layer")

    def wrap(layer):   # a copy holding the trained weights; masks and thresholds start at their initial values
        if layer.name in chosen:
            return PruneWrapper(layer, chosen[layer.name])
        return layer

    return map_layers(model, wrap)


def wrappers(model):
    return [l for l in iter_layers(model) if isinstance(l, PruneWrapper)]


def sparsity(layer_or_weights):
    """Fraction of exact zeros in a wrapper's or layer's prunable weights (or in an array)."""
    if isinstance(layer_or_weights, PruneWrapper):
        arrays = [(w * m).numpy() for w, m, _ in layer_or_weights.pruning_vars]
    elif isinstance(layer_or_weights, keras.layers.Layer):
        arrays = [layer_or_weights.kernel.numpy()] if hasattr(layer_or_weights, "kernel") else \
            [w.numpy() for w in layer_or_weights.trainable_weights if len(w.shape) > 1]
    else:
        arrays = [np.asarray(layer_or_weights)]
    total = sum(a.size for a in arrays)
    return float(sum((a == 0).sum() for a in arrays) / total) if total else 0.0


class _PruningDriver:
    """Runs the schedules of every PruneWrapper in the model from `CompressionCallback`."""

    def __init__(self, model, layers):
        self.model = model
        self.layers = layers
        self.step = 0

    def on_train_begin(self):
        opt = self.model.optimizer
        self.step = int(opt.iterations.numpy()) if opt is not None else 0
        self.per_call = int(getattr(self.model, "_steps_per_execution", None).numpy()) \
            if getattr(self.model, "_steps_per_execution", None) is not None else 1
        for layer in self.layers:
            layer.pruning_step.assign(self.step)
            layer._armed = True
        if any(getattr(l, "_traced_unarmed", False) for l in self.layers):
            # a fit without the callback failed while tracing; that half-traced function is unusable
            self.model.train_function = self.model.make_train_function(force=True)
            for layer in self.layers:
                layer._traced_unarmed = False

    def on_train_batch_begin(self, batch):
        step = self.step
        self.step += self.per_call
        for layer in self.layers:
            for s in range(step, step + self.per_call):
                should, target = layer.schedule(s)
                if should:
                    layer.update_masks(target)

    def on_epoch_end(self, epoch):
        for layer in self.layers:
            layer.apply_masks()
            layer.pruning_step.assign(self.step)

    def on_train_end(self):
        for layer in self.layers:
            layer.apply_masks()
            layer.pruning_step.assign(-1)
            layer._armed = False

    def summaries(self):
        return {f"sparsity/{l.layer.name}": sparsity(l) for l in self.layers}


@register_driver
def _driver(model):
    found = wrappers(model)
    return _PruningDriver(model, found) if found else None


@register_stripper
def _strip(model):
    found = wrappers(model)
    if not found:
        return None
    for layer in found:
        layer.apply_masks()
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    return copy_model(stripped)


CUSTOM_OBJECTS = {"PruneWrapper": PruneWrapper, "tfcompress>PruneWrapper": PruneWrapper}
