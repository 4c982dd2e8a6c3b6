"""`tfc.separable`: Conv2D k×k layers replaced by a DepthwiseConv2D k×k and a Conv2D 1×1.

A k×k conv over C inputs to N outputs costs k²·C·N MACs per output pixel; the separable pair costs
k²·C + C·N, about k² times less when N is large. The pair is initialised as the best such approximation
of the original kernel W (kh, kw, C, N): for each input channel c, the rank-1 truncated SVD of
W[:, :, c, :] read as a (kh·kw, N) matrix gives that channel's depthwise filter (√σ₁ u₁) and its row of
the pointwise kernel (√σ₁ v₁). The pair computes W exactly only when every such slice has rank 1, so
train it back afterwards, best with the original as teacher and hints on the replaced layers
(`tfc.Distiller(student, original, features=hint_pairs(student))`, or the `separable` recipe stage).

The 1×1 conv keeps the original's name, bias and activation (it outputs the tensor the original did);
the depthwise conv is `<name>_dw`, without bias.
"""
from tfcompress.errors import InputError


def _choose(model, layers):
    from tfcompress.graph import kind_of
    names = {l.name: l for l in model.layers}

    def can(layer):
        kind = kind_of(layer)
        return kind is not None and kind.separate is not None and kind.separate(layer) is not None

    if layers is None:
        return [n for n, l in names.items() if can(l)]
    if callable(layers):
        return [n for n, l in names.items() if layers(l) and can(l)]
    chosen = [layers] if isinstance(layers, str) else list(layers)
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise InputError(f"no layer named {', '.join(map(repr, unknown))} in model {model.name!r}")
    bad = [n for n in chosen if not can(names[n])]
    if bad:
        raise InputError("separable replaces Conv2D layers with a kernel larger than 1×1 (channels last, "
                         f"groups=1); cannot replace {', '.join(bad)}. Got: "
                         f"{', '.join(type(names[n]).__name__ + str(getattr(names[n], 'kernel_size', '')) for n in bad)}")
    return chosen


def separable_errors(model, layers=None):
    """{layer name: ||W - W_separable||_F / ||W||_F} of the layers `separable(model, layers)` replaces:
    how far the initial pair is from the original kernel (0 when it is exact)."""
    from tfcompress.graph import kind_of, require_graph
    from tfcompress.graph.keras3 import tf_keras_model
    model = require_graph(tf_keras_model(model), "separable_errors")
    return {n: kind_of(model.get_layer(n)).separate(model.get_layer(n)).relative_error
            for n in _choose(model, layers)}


def separable(model, layers=None):
    """Replaces Conv2D k×k layers by DepthwiseConv2D k×k + Conv2D 1×1, initialised as the best such
    approximation of each kernel.

    Example:

    >>> from tfcompress._tf import keras
    >>> x = keras.Input((8, 8, 4))
    >>> m = keras.Model(x, keras.layers.Conv2D(16, 3, padding="same", name="conv")(x))
    >>> [type(l).__name__ for l in separable(m).layers[1:]]
    ['DepthwiseConv2D', 'Conv2D']

    Args:
      model: a functional or Sequential tf_keras model, or a Keras 3 one (translated first). It is not
        changed.
      layers: layer names, or a predicate `layer -> bool`; `None`: every Conv2D with a kernel larger than
        1×1. Defaults to `None`.

    Returns:
      A new functional tf_keras model (uncompiled).

    Raises:
      InputError: an unknown layer name, a named layer that is not a Conv2D k×k, or no layer to replace.
      UnsupportedModelError: a subclassed model.
    """
    from tfcompress.graph import Rewrite, kind_of, require_graph
    from tfcompress.graph.keras3 import tf_keras_model
    model = require_graph(tf_keras_model(model), "tfc.separable")
    chosen = _choose(model, layers)
    if not chosen:
        raise InputError(f"model {model.name!r} has no Conv2D layer with a kernel larger than 1×1 to replace")
    rewrite = Rewrite(model)
    for name in chosen:
        rewrite.replace(name, _builder(kind_of(model.get_layer(name)).separate))
    return rewrite.apply()


def hint_pairs(original, layers=None):
    """`[(name, name), ...]` for `tfc.Distiller(features=...)`: the output of each layer that
    `separable(original, layers)` replaces, in the original (the teacher) against the same name in the
    separable student (the 1×1 conv keeps the name)."""
    from tfcompress.graph import require_graph
    from tfcompress.graph.keras3 import tf_keras_model
    return [(n, n) for n in _choose(require_graph(tf_keras_model(original), "hint_pairs"), layers)]


def _builder(separate):
    made = []   # one pair, shared by every call of the original layer

    def build(layer, x):
        first_call = not made
        if first_call:
            made.append(separate(layer))
        pair = made[0]
        depthwise, pointwise = pair.layers
        y = pointwise(depthwise(x))
        if first_call:
            depthwise.set_weights(pair.weights[0])
            pointwise.set_weights(pair.weights[1])
        return y
    return build
