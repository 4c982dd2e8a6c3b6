"""`tfc.low_rank`: Dense and Conv2D layers replaced by two thinner layers from the truncated SVD of the kernel.

A Dense layer (in → out) becomes Dense(K, no bias) then Dense(out) with the original's bias and activation.
A Conv2D kh×kw becomes, with `method="weight"`, a kh×kw conv to K filters then a 1×1 conv (the kernel read
as a (kh·kw·in, out) matrix), or with `method="spatial"` a kh×1 conv to K filters then a 1×kw conv (the
kernel read as a (kh·in, kw·out) matrix; AIMET's spatial SVD). The factors are `U_K √S_K` and `√S_K V_Kᵀ`,
so at full rank the new model computes what the old one did, and at rank K it is the best rank-K
approximation of each kernel in the least-squares sense. Fine-tune afterwards (plain `fit`, or a
`tfc.Distiller` with the original as teacher).

The layer after the factorisation keeps the original's name (it outputs the same tensor); the new one is
`<name>_lr`. Ranks: see `tfcompress.architecture.ranks` (`plan_ranks`, which `low_rank` calls).
"""
from tfcompress.architecture.ranks import candidates, plan_ranks
from tfcompress.errors import InputError


def low_rank(model, ranks=None, ratio=None, target_macs=None, energy=None, method="weight", layers=None,
             round_to=8):
    """Factors Dense and Conv2D layers into two layers each, initialised from the truncated SVD.

    Exactly one of `ranks`, `ratio`, `target_macs`, `energy` says how small.

    Example:

    >>> from tfcompress._tf import keras
    >>> x = keras.Input((64,))
    >>> m = keras.Model(x, keras.layers.Dense(10, name="fc2")(keras.layers.Dense(32, name="fc1")(x)))
    >>> small = low_rank(m, ranks={"fc1": 8})
    >>> [(l.name, l.units, l.use_bias) for l in small.layers[1:3]]
    [('fc1_lr', 8, False), ('fc1', 32, True)]

    Args:
      model: a functional or Sequential tf_keras model, or a Keras 3 one (translated first). It is not
        changed.
      ranks: `{layer name: rank}`, used as given (not rounded); always factors. Defaults to `None`.
      ratio: the fraction of the chosen layers' MACs kept, in (0, 1]; every layer keeps the same fraction
        of its singular-value energy, the largest that fits. Defaults to `None`.
      target_macs: the whole model's MACs after factoring, allocated as for `ratio`. Defaults to `None`.
      energy: per layer, the smallest rank keeping this fraction of the squared singular values.
        Defaults to `None`.
      method: `"weight"` (Dense; Conv2D kh×kw then 1×1) or `"spatial"` (Conv2D kh×1 then 1×kw; Dense layers
        are left alone). Defaults to `"weight"`.
      layers: names or a predicate `layer -> bool` limiting which layers may be factored; `None`: every
        Dense and Conv2D layer the method can factor. Defaults to `None`.
      round_to: ranks chosen from energy, ratio or target are multiples of this (8 suits XNNPACK);
        a layer whose rounded rank would not save MACs is left whole. Defaults to `8`.

    Returns:
      A new functional tf_keras model (uncompiled).

    Raises:
      InputError: see `plan_ranks`.
      UnsupportedModelError: a subclassed model.
    """
    from tfcompress.graph import Rewrite, require_graph
    from tfcompress.graph.keras3 import tf_keras_model
    model = require_graph(tf_keras_model(model), "tfc.low_rank")
    cands = candidates(model, method, layers, ranks)
    if not cands:
        raise InputError(f"model {model.name!r} has no layer low_rank(method={method!r}) can factor")
    plan = plan_ranks(model, ranks, ratio, target_macs, energy, method, layers, round_to, cands=cands)
    rewrite = Rewrite(model)
    for row in plan:
        if row.rank is not None:
            rewrite.replace(row.name, _builder(cands[row.name], row.rank))
    return rewrite.apply()


def _builder(cand, rank):
    a, b = cand.factored_factors(rank)
    first_w, second_w = cand.factored.weights(a, b)
    made = []   # one pair of layers, shared by every call of the original layer

    def build(layer, x):
        first_call = not made
        if first_call:
            made.extend(cand.factored.layers(rank))
        first, second = made
        y = second(first(x))
        if first_call:
            first.set_weights(first_w)
            second.set_weights(second_w)
        return y
    return build
