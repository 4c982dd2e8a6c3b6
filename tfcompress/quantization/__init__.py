"""Quantization-aware training: `quantize(model)` wraps a model for 8-bit QAT on tfmot's default scheme.

What it adds to `tfmot.quantization.keras.quantize_model`:

- every ReLU6 form (`ReLU(6.0)`, `ReLU(max_value=6)`, `Activation("relu6")`, `activation="relu6"` or
  `activation=tf.nn.relu6` on Conv2D / DepthwiseConv2D / Dense, `tf.nn.relu6(x)` on a Keras tensor) is
  accepted, folded with Conv+BN like ReLU is, and quantized on the fixed range [0, 6], so the int8
  file holds scale 6/255 and zero point -128 for it;
- weights of a pruned model (stripped, or still wrapped by `tfc.prune`) keep their exact zeros through
  QAT and into the int8 file (the counterpart of tfmot's `Default8BitPrunePreserveQuantizeScheme`);
- `skip=[names]` keeps chosen layers float (selective quantization);
- `weights="int4" | "ternary" | "binary" | "pow2"` puts Conv2D / Dense kernels on a grid below 8 bits,
  trained with a straight-through estimator (`tfcompress.quantization.grids`); activations stay int8;
- custom layers: `register_quantize_config(LayerClass, config)`; an unsupported layer is named in
  the error with the way out.

The wrappers are tfmot's `QuantizeWrapperV2`; `tfc.strip` leaves them in place (they are what the
converter reads) and `tfc.export(..., mode="int8")` converts them to an integer-only file.
"""
import re

from tfcompress._tf import keras, tfmot
from tfcompress.errors import InputError, UnsupportedModelError
from tfcompress.graph import map_layers
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.graph.held import hold, release
from tfcompress.quantization.op_forms import canonicalize_ops
from tfcompress.quantization.relu6_forms import canonicalize
from tfcompress.quantization.objects import (CUSTOM_OBJECTS, QuantizeLayer, QuantizeWrapper,  # noqa: F401
                                             is_quantized, quantize_scope)
from tfcompress.quantization.scheme import (OutputQuantizeConfig, ReLU6QuantizeConfig, Registry, Scheme,
                                            register_quantize_config)
from tfcompress.quantization.unwrap import float_model
from tfcompress.quantization import grids as _grids
from tfcompress.quantization import sparsify as _sparsify  # noqa: F401  (registers the fit driver)

CUSTOM_OBJECTS.update(_grids.CUSTOM_OBJECTS)   # grid models load in quantize_scope like the others
__all__ = ["quantize", "register_quantize_config", "is_quantized", "float_model", "quantize_scope",
           "OutputQuantizeConfig", "ReLU6QuantizeConfig", "Scheme"]

_WEIGHTED = ("kernel", "depthwise_kernel", "pointwise_kernel")
_NO_COMPUTE = (keras.layers.InputLayer,)
_SPLIT_BEFORE_REGISTRY = (keras.layers.BatchNormalization, keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def _names(arg, what):
    if arg is None:
        return None
    if isinstance(arg, str):
        return [arg]
    if callable(arg):
        return arg
    try:
        return list(arg)
    except TypeError:
        raise InputError(f"{what} must be None, a layer name, a list of names or a predicate. Got: {arg!r}") from None


def _has_zeros(model):
    for layer in model.layers:
        for attr in _WEIGHTED:
            w = getattr(layer, attr, None)
            if w is not None and int(keras.backend.sum(keras.backend.cast(keras.backend.equal(w, 0), "int32"))):
                return True
    return False


def _unsupported(pairs):
    names = ", ".join(f"{n} ({c})" for n, c in pairs)
    return UnsupportedModelError(
        f"layer(s) {names} cannot be quantized: tfmot has no quantize config for "
        f"{'this class' if len({c for _, c in pairs}) == 1 else 'these classes'} here; register one with "
        "tfc.quantization.register_quantize_config(LayerClass, QuantizeConfig()) or keep the layer float with "
        f"skip=[{', '.join(repr(n) for n, _ in pairs)}]")


def _reached(wrapper):
    """True when a PruneWrapper's weights hold its schedule's final sparsity."""
    final = float(wrapper.schedule.final_sparsity())
    for v, m, _ in wrapper.pruning_vars:
        k = (v * m).numpy()
        if int((k == 0).sum()) < int(round(final * k.size)):
            return False
    return True


def _unprunable(model):
    from tfcompress.stripping import strip
    return strip(model)


def quantize(model, layers=None, skip=None, preserve_sparsity=None, weights="int8", per_channel=True, exponents=4):
    """Wraps a model for quantization-aware training (8-bit, TFLite's integer scheme).

    Train the returned model with a small learning rate for a few epochs (no callback is needed),
    then `tfc.export(model, path, mode="int8")`; no representative data is needed for a QAT model.

    Example:

    ```python
    qat = tfc.quantize(model)                         # every layer
    qat = tfc.quantize(model, skip=["logits"])        # logits stay float
    qat = tfc.quantize(tfc.strip(pruned))             # zeros preserved exactly
    qat = tfc.quantize(model, weights="int4")         # Conv2D / Dense kernels on -7..7 per channel
    qat = tfc.quantize(model, weights="pow2", exponents=4)   # {0, ±2^k}, 4 exponents per channel
    qat = tfc.quantize(tfc.prune(model, tfc.PolynomialDecay(0.5, end_step=500)))   # prune during QAT:
    qat.fit(x, y, callbacks=[tfc.CompressionCallback()])                           # the callback is needed
    qat.compile(...); qat.fit(x, y, epochs=3)         # small learning rate, e.g. 1e-4
    report = tfc.export(qat, "model.tflite", mode="int8", eval_data=(x_test, y_test))
    qat.save("qat.h5")                                # tfmot's QAT wrappers do not round-trip in .keras
    ```

    Custom layers: `tfc.quantization.register_quantize_config(MyLayer, MyQuantizeConfig())` (a
    `tfmot.quantization.keras.QuantizeConfig`), before calling `quantize`.

    Args:
      model: a Sequential or functional tf_keras model, possibly pruned (stripped or still wrapped).
      layers: names (or a predicate `layer -> bool`) of the layers to quantize. Defaults to `None`
        (every layer).
      skip: names (or a predicate) of layers to keep float: no weight or activation fake-quant in
        training. A skipped layer that feeds a quantized one still gets tfmot's output quantizer (the
        quantized layer needs its input range), so in the int8 file the converter runs it in int8
        when TFLite has an int8 kernel for it; skipped layers at the end of the model, or feeding only
        skipped layers, stay float in the file. Defaults to `None`.
      preserve_sparsity: keep every zero weight exactly zero. Defaults to `None`: on when the model was
        pruned (wrapped by `tfc.prune`, or any kernel holds exact zeros).
      weights: the grid of Conv2D and Dense kernels: `int8` (tfmot's), `int4` (levels -7..7 times a
        scale), `ternary` ({-a, 0, a}), `binary` ({-a, a}) or `pow2` ({0, ±2^k} over `exponents`
        consecutive k); see `tfcompress.quantization.grids`. Depthwise kernels stay int8. `tfc.export`
        writes int4 kernels as INT4 tensors and the other grids as int8 tensors holding exactly the
        grid. Defaults to `int8`.
      per_channel: one grid per output channel; False: one per tensor. With `int8`, True keeps tfmot's
        default (Conv per channel, Dense per tensor). Defaults to `True`.
      exponents: how many powers of two `pow2` uses per channel (1 to 7). Defaults to `4`.

    A model still wrapped by `tfc.prune` must have reached its schedule's target (trained with
    `tfc.CompressionCallback`): QAT keeps zeros but runs no schedule.

    Returns:
      A new model of `QuantizeWrapperV2` layers; the input model is not changed.

    Raises:
      UnsupportedModelError: subclassed or nested models, or layers tfmot cannot quantize (named, with
        how to register a `QuantizeConfig` or skip them).
      InputError: unknown layer names in `layers` or `skip`, `preserve_sparsity=False` for a model
        still pruning on its schedule, an unknown `weights` grid or `exponents` out of range, or a
        low-bit grid on a model still pruning (finish pruning first) or, for `binary`, holding zeros.
    """
    model = tf_keras_model(model)
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise UnsupportedModelError(f"{type(model).__name__} is a subclassed model; tfc.quantize supports "
                                    "Sequential and functional models")
    if is_quantized(model):
        raise InputError(f"model {model.name!r} is already wrapped for quantization-aware training")
    from tfcompress.pruning.magnitude import wrappers as prune_wrappers
    found = prune_wrappers(model)
    was_pruned = bool(found)
    # layers still short of their schedule's target go on pruning inside QAT (`sparsify.py`)
    schedules = {w.layer.name: w.schedule for w in found if not _reached(w)}
    if schedules and preserve_sparsity is False:
        raise InputError(f"layer(s) {', '.join(schedules)} are still pruning on their schedule, which QAT "
                         "continues only with preserve_sparsity left on. Got: preserve_sparsity=False")
    try:
        _grids.check(weights, exponents)
    except ValueError as e:
        raise InputError(str(e)) from None
    if schedules and weights != "int8":
        raise InputError(f"layer(s) {', '.join(schedules)} are still pruning on their schedule; weights="
                         f"{weights!r} needs a pruned model that reached its target: train it with "
                         "tfc.CompressionCallback first")
    if was_pruned:
        model = _unprunable(model)
    if preserve_sparsity is None:
        preserve_sparsity = was_pruned or _has_zeros(model)
    if weights == "binary" and preserve_sparsity:
        raise InputError(f"binary weights hold no zero, so the zeros of model {model.name!r} cannot be kept: "
                         "pass preserve_sparsity=False or choose weights='ternary'")
    nested = [l.name for l in model.layers if isinstance(l, keras.Model)]
    if nested:
        raise UnsupportedModelError(f"layer(s) {', '.join(nested)} are nested models; tfmot's QAT needs a flat "
                                    "model: rebuild it with the inner model's layers called directly")
    chosen_arg, skip_arg = _names(layers, "layers"), _names(skip, "skip")
    known = {l.name for l in model.layers}
    for arg, what in ((chosen_arg, "layers"), (skip_arg, "skip")):
        if isinstance(arg, list):
            missing = [n for n in arg if n not in known]
            if missing:
                raise InputError(f"{what}: no layer named {', '.join(map(repr, missing))} in model {model.name!r}")

    def picked(layer, arg, default):
        if arg is None:
            return default
        return bool(arg(layer)) if callable(arg) else layer.name in arg

    wanted = {l.name for l in model.layers if not isinstance(l, _NO_COMPUTE)
              and picked(l, chosen_arg, True) and not picked(l, skip_arg, False)}
    own_classes = {**CUSTOM_OBJECTS, **{type(l).__name__: type(l) for l in model.layers}}
    canonical, split = canonicalize(model, custom_objects=own_classes)
    canonical, added = canonicalize_ops(canonical, custom_objects=own_classes)   # x + 3.0 and friends: layers
    for relu, source in {**split, **added}.items():   # a layer split off follows the decision for its source
        if source in wanted:
            wanted.add(relu)
    registry = Registry(preserve_sparsity=preserve_sparsity, schedules=schedules)
    # BatchNormalization gets its config from the Conv/Dense+BN fold, not from the registry; separable
    # convolutions are split into depthwise + pointwise by the layout transform before the registry sees them
    unsupported = [(l.name, type(l).__name__) for l in canonical.layers if l.name in wanted
                   and not registry.supports(l) and not isinstance(l, _SPLIT_BEFORE_REGISTRY)]
    if unsupported:
        raise _unsupported(unsupported)
    if not wanted:
        raise InputError(f"nothing to quantize in model {model.name!r}")
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def wrap(layer):
        return annotate(layer) if layer.name in wanted else layer

    try:
        # the model's own (custom) layer classes, so tfmot's clones can rebuild them from config
        held = hold(canonical)   # tfmot rebuilds from config: Lambda functions stay in memory meanwhile
        own = {type(l).__name__: type(l) for l in held.layers}
        with quantize_scope(own):
            annotated = map_layers(held, wrap, own)
            scheme = _grids.GridScheme(preserve_sparsity, schedules, weights, per_channel, exponents)
            qat = tfmot.quantization.keras.quantize_apply(annotated, scheme=scheme)
        return release(qat, dict(CUSTOM_OBJECTS, **own))
    except (ValueError, RuntimeError, TypeError) as e:
        found = re.findall(r"Layer ([^:\s]+):<class '(?:[\w.]+\.)?(\w+)'> is not supported", str(e))
        if found:
            raise _unsupported(found) from None
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise UnsupportedModelError(f"tfmot could not quantize model {model.name!r}: {first}") from None
