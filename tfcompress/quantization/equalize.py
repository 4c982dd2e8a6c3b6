"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization", §4.1): per-tensor weights that
quantize as well as per-channel ones, with the model's function unchanged.

Two weight layers in a row, `W1` (output channel c) and `W2` (reading channel c), with only layers
between them that commute with a positive per-channel scale (ReLU, pooling, dropout at inference: the
layer table's `homogeneous`), compute the same when `W1`'s output channel c is divided by `s[c]` and
`W2`'s input channel c multiplied by it. `s[c] = sqrt(r1[c] / r2[c])` (r: the channel's largest |weight|)
makes both ranges `sqrt(r1[c] * r2[c])`, which balances the channels of each tensor; a layer in two pairs
(a depthwise convolution between a 1×1 expansion and a 1×1 projection) is balanced by iterating the pairs
until the scales settle. BatchNormalization layers right after a weight layer are folded into it first
(the converter folds them the same way), so the ranges are those of the kernels the file will hold.

ReLU6 does not commute with scaling (`relu6(x / s) * s` clips at `6 s`), so a pair through a ReLU6 is
never scaled silently: with `relu6="skip"` (default) it is left as it is and listed in the report with
the reason, so every ReLU6 keeps its pinned [0, 6]; with `relu6="relu"` the ReLU6 layers inside such
pairs become ReLU first (as Nagel et al. do for MobileNetV2, and AIMET's `equalize_model`) and the
pairs are equalized: the model then differs from the original wherever a pre-activation exceeded 6,
and those layers are no longer pinned in the int8 file. Which layers changed is in the report.

Example:

>>> import numpy as np
>>> from tfcompress._tf import keras
>>> x = keras.Input((6,))
>>> m = keras.Model(x, keras.layers.Dense(3, name="b")(keras.layers.Dense(4, activation="relu", name="a")(x)))
>>> m.get_layer("a").set_weights([np.ones((6, 4)) * [1e-3, 1.0, 10.0, 100.0], np.zeros(4)])
>>> eq, report = equalize(m, report=True)
>>> [p["pair"] for p in report.pairs]
[('a', 'b')]
>>> xs = np.random.RandomState(0).randn(8, 6).astype("float32")
>>> bool(np.allclose(eq.predict(xs, verbose=0), m.predict(xs, verbose=0), atol=1e-4))
True
"""
import dataclasses

import numpy as np

from tfcompress.errors import InputError
from tfcompress.graph import Rewrite, copy_model, kind_of, require_graph
from tfcompress.graph.walk import call_counts, inbound_layers, nodes, output_keys, readers, tensor_key

RELU6_MODES = ("skip", "relu")


@dataclasses.dataclass
class EqualizationReport:
    """What `equalize` did.

    Attributes:
      folded: `[(weight layer, BatchNormalization folded into it)]`.
      pairs: one dict per equalized pair: `pair` (first, second), `via` (layers between), `ratio_before`
        and `ratio_after` (the largest over the smallest per-channel range of the pair's shared channels,
        each layer's worst), `scale_min` / `scale_max` (of the accumulated scales).
      skipped: `[(first, second, reason)]` for consecutive weight layers left alone.
      converted: ReLU6 layers turned into ReLU (`relu6="relu"`).
      iterations: passes over the pairs until the scales settled.
    """
    folded: list = dataclasses.field(default_factory=list)
    pairs: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    converted: list = dataclasses.field(default_factory=list)
    iterations: int = 0

    def to_dict(self):
        return dataclasses.asdict(self)

    def format(self):
        lines = [f"equalized {len(self.pairs)} pairs in {self.iterations} passes; folded {len(self.folded)} "
                 f"BatchNormalization layers"]
        for p in self.pairs:
            a, b = p["pair"]
            lines.append(f"  {a} -> {b}: range ratio {p['ratio_before']:.3g} -> {p['ratio_after']:.3g}")
        lines.extend(f"  skipped {a} -> {b}: {why}" for a, b, why in self.skipped)
        if self.converted:
            lines.append(f"  ReLU6 turned into ReLU: {', '.join(self.converted)}")
        return "\n".join(lines)


def _single_reader(model, layer, readers_of, outputs, counts):
    """The one layer reading `layer`'s output, or None (several readers, a model output, a shared layer)."""
    if counts.get(layer.name, 0) != 1:
        return None
    key = tensor_key(layer.output)
    names = readers_of.get(key, [])
    if key in outputs or len(names) != 1 or counts.get(names[0], 0) != 1:
        return None
    return model.get_layer(names[0])


def fold_batchnorm(model, biases=False):
    """A copy of `model` with every BatchNormalization that directly follows a weight layer folded into it.

    A BatchNormalization folds when it alone reads the output of a layer whose kind can absorb it (the
    layer table's `fold`: Conv1D/2D/3D, Dense, DepthwiseConv2D without a fused nonlinear activation) and
    both are called once. The converter does the same fold in the file, so the kernels of the copy are
    the ones int8 export quantizes. Goes through `tfcompress.graph.Rewrite` (`set_config`, `remove`).

    Args:
      model: a functional or Sequential tf_keras model.
      biases: also give every other such weight layer a (zero) bias, for bias correction. Defaults to `False`.

    Returns:
      `(model, [(weight layer, folded BatchNormalization)])`.
    """
    model = require_graph(model, "BatchNormalization folding")
    readers_of, outputs, counts = readers(model), set(output_keys(model)), call_counts(model)
    rewrite, folded, done = Rewrite(model), [], set()
    for node in nodes(model):
        bn = node.layer
        kind = kind_of(bn)
        if kind is None or kind.affine is None or counts.get(bn.name, 0) != 1 or kind.role_of(bn) != "pass":
            continue
        (prev,) = inbound_layers(bn) or [None]
        pkind = weight_kind(prev) if prev is not None else None
        if pkind is None or _single_reader(model, prev, readers_of, outputs, counts) is not bn:
            continue
        gain, offset = kind.affine(bn)
        result = pkind.fold(prev, prev.get_weights(), gain, offset)
        if result is None:
            continue
        rewrite.set_config(prev.name, *result).remove(bn.name)
        folded.append((prev.name, bn.name))
        done.add(prev.name)
    if biases:
        for layer in model.layers:
            kind = weight_kind(layer)
            if layer.name in done or kind is None or getattr(layer, "use_bias", True):
                continue
            w = layer.get_weights()
            result = kind.fold(layer, w, np.ones(_out_channels(layer)), np.zeros(_out_channels(layer)))
            if result is not None:
                rewrite.set_config(layer.name, *result)
    if not folded and not biases:
        return copy_model(model), []
    return rewrite.apply(), folded


def _out_channels(layer):
    return int(layer.output.shape[-1])


def _activation_block(layer):
    """None when `layer`'s fused activation commutes with scaling; else why not."""
    name = getattr(getattr(layer, "activation", None), "__name__", "linear")
    if name in ("linear", "relu"):
        return None
    return f"{layer.name} has activation {name}" + (": its clip at 6 does not commute with scaling"
                                                   if name == "relu6" else ", which does not commute with scaling")


def _is_relu6(layer):
    from tfcompress.quantization.relu6_forms import is_relu6_layer
    return is_relu6_layer(layer)


def weight_kind(layer):
    """The layer-kind entry of a layer equalization and bias correction can rescale (Conv1D/2D/3D, Dense,
    DepthwiseConv2D in their channels-last forms), or None."""
    kind = kind_of(layer)
    if kind is None or kind.scale_in is None or kind.fold is None or kind.filters is None or kind.reads is None:
        return None
    return kind if kind.role_of(layer) is not None else None


def find_pairs(model):
    """`(pairs, skipped)`: consecutive weight layers with only scale-commuting layers between them.

    `pairs` is `[(first, second, [layers between])]`; `skipped` is `[(first, second, reason, blockers)]`
    for consecutive weight layers separated by a layer that does not commute with a per-channel scale
    (`blockers`: the names of those layers). A chain ends (no pair, nothing reported) where a tensor has
    several readers (a residual branch) or is a model output.
    """
    model = require_graph(model, "cross-layer equalization")
    readers_of, outputs, counts = readers(model), set(output_keys(model)), call_counts(model)
    pairs, skipped = [], []
    for first in model.layers:
        if weight_kind(first) is None or counts.get(first.name, 0) != 1:
            continue
        via, blockers, reasons = [], [], []
        why = _activation_block(first)
        if why:
            blockers.append(first.name)
            reasons.append(why)
        layer = first
        while True:
            nxt = _single_reader(model, layer, readers_of, outputs, counts)
            if nxt is None:
                break
            if weight_kind(nxt) is not None:
                if reasons:
                    skipped.append((first.name, nxt.name, "; ".join(reasons), blockers))
                else:
                    pairs.append((first.name, nxt.name, via))
                break
            kind = kind_of(nxt)
            if kind is None or kind.role_of(nxt) != "pass":
                break
            if not kind.is_homogeneous(nxt):
                if not kind.elementwise and not _is_relu6(nxt):
                    break
                blockers.append(nxt.name)
                reasons.append(f"{nxt.name} is ReLU6: its clip at 6 does not commute with scaling"
                               if _is_relu6(nxt) else f"{nxt.name} ({type(nxt).__name__}) does not commute with scaling")
            via.append(nxt.name)
            layer = nxt
    return pairs, skipped


def _relu_instead(model, names):
    """`model` with the ReLU6 layers (or fused relu6 activations) `names` turned into ReLU."""
    from tfcompress._tf import keras
    rewrite = Rewrite(model)
    for name in names:
        layer = model.get_layer(name)
        if _is_relu6(layer):
            rewrite.replace(name, lambda l, x: keras.layers.ReLU(name=l.name)(x))
        else:
            rewrite.set_config(name, dict(layer.get_config(), activation="relu"))
    return rewrite.apply()


def _ranges(array):
    """Largest |w| per channel of an array with channels on its last axis."""
    return np.abs(array.reshape(-1, array.shape[-1])).max(0).astype(np.float64)


def _pair_ranges(model, first, second):
    a, b = model.get_layer(first), model.get_layer(second)
    return _ranges(kind_of(a).filters(a)), _ranges(kind_of(b).reads(b))


def _ratio(r):
    r = r[r > 0]
    return float(r.max() / r.min()) if len(r) else 1.0


def rescale(model, pair, s):
    """Divides output channel c of `pair[0]` by `s[c]` and multiplies input channel c of `pair[1]` by it,
    in place (weights only; the pair must come from `find_pairs`, so the function is unchanged)."""
    a, b = model.get_layer(pair[0]), model.get_layer(pair[1])
    s = np.asarray(s, dtype=np.float64)
    _, wa = kind_of(a).fold(a, a.get_weights(), 1.0 / s)
    a.set_weights(wa)
    b.set_weights(kind_of(b).scale_in(b, b.get_weights(), s))


def equalize(model, relu6="skip", iterations=100, tolerance=1e-4, report=False):
    """Cross-layer equalization: balances the per-channel weight ranges of consecutive layers, exactly.

    BatchNormalization layers after weight layers are folded in first (`fold_batchnorm`); then every pair
    from `find_pairs` is rescaled by `s = sqrt(r1 / r2)` per channel, pass after pass, until no scale moves
    by more than `tolerance`. The result computes what the model did (to float rounding) unless
    `relu6="relu"` turned ReLU6 layers into ReLU.

    Example: `eq = tfc.equalize(model)`, then `tfc.export(eq, "m.tflite", per_channel=False, ...)`.

    Args:
      model: a functional or Sequential tf_keras or Keras 3 model (not changed).
      relu6: `"skip"` leaves pairs through a ReLU6 alone (listed in the report); `"relu"` turns those
        ReLU6 layers into ReLU and equalizes the pairs. Defaults to `"skip"`.
      iterations: the most passes over the pairs. Defaults to `100`.
      tolerance: stop when every scale of a pass is within `1 ± tolerance`. Defaults to `1e-4`.
      report: also return an `EqualizationReport`. Defaults to `False`.

    Returns:
      The equalized model (Keras 3 when a Keras 3 model came in), or `(model, EqualizationReport)`.

    Raises:
      InputError: an unknown `relu6` mode.
      UnsupportedModelError: a subclassed model.
    """
    from tfcompress.graph.keras3 import is_keras3, tf_keras_model, to_keras3
    if relu6 not in RELU6_MODES:
        raise InputError(f"relu6 must be one of {', '.join(RELU6_MODES)}. Got: {relu6!r}")
    keras3_in = is_keras3(model)
    model = require_graph(tf_keras_model(model), "tfc.equalize")
    rep = EqualizationReport()
    model, rep.folded = fold_batchnorm(model)
    pairs, skipped = find_pairs(model)
    if relu6 == "relu":
        relu6_blocked = [s for s in skipped if all(_is_relu6(model.get_layer(n)) or
                                                   getattr(getattr(model.get_layer(n), "activation", None),
                                                           "__name__", "") == "relu6" for n in s[3])]
        rep.converted = list(dict.fromkeys(n for s in relu6_blocked for n in s[3]))
        if rep.converted:
            model = _relu_instead(model, rep.converted)
            pairs, skipped = find_pairs(model)
    rep.skipped = [(a, b, why) for a, b, why, _ in skipped]
    before = {(a, b): _pair_ranges(model, a, b) for a, b, _ in pairs}
    total = {(a, b): np.ones(len(before[(a, b)][0])) for a, b, _ in pairs}
    for rep.iterations in range(1, iterations + 1):
        moved = 0.0
        for a, b, _ in pairs:
            r1, r2 = _pair_ranges(model, a, b)
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1.0)), 1.0)
            rescale(model, (a, b), s)
            total[(a, b)] *= s
            moved = max(moved, float(np.abs(np.log(s)).max()) if len(s) else 0.0)
        if moved <= tolerance:
            break
    for a, b, via in pairs:
        r1, r2 = before[(a, b)]
        n1, n2 = _pair_ranges(model, a, b)
        rep.pairs.append({"pair": (a, b), "via": list(via), "ratio_before": max(_ratio(r1), _ratio(r2)),
                          "ratio_after": max(_ratio(n1), _ratio(n2)), "scale_min": float(total[(a, b)].min()),
                          "scale_max": float(total[(a, b)].max())})
    out = to_keras3(model) if keras3_in else model
    return (out, rep) if report else out


def channel_range_ratios(model):
    """{weight layer: largest / smallest per-output-channel range of its kernel}, BatchNormalization folded
    in as the file will hold it (the measure per-tensor quantization suffers from)."""
    from tfcompress.graph.keras3 import tf_keras_model
    folded, _ = fold_batchnorm(require_graph(tf_keras_model(model), "range ratios"))
    out = {}
    for layer in folded.layers:
        if weight_kind(layer) is not None and layer.get_weights():
            out[layer.name] = _ratio(_ranges(kind_of(layer).filters(layer)))
    return out
