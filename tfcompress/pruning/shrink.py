"""Physically removing channel classes: the smaller model, and the zeroed model it must equal.

`rebuild` asks the layer-kind table how to slice each layer's weights and config for the kept channels
and hands the changes to `tfcompress.graph.Rewrite`, which builds the new model from the one in memory
(so Lambda functions and custom layers come along). `zeroed_reference` is the check: the original with
the removed channels' weights zeroed computes the same outputs.
"""
from tfcompress.graph import Rewrite, copy_model, functional, kind_of
from tfcompress.pruning.compensation import apply_shifts
from tfcompress.pruning.graph import ChannelGraph


def _merged(w, graph, name, merges):
    """Consumer rows of merged classes summed into the kept class they merge into."""
    w = [w[0].copy()] + w[1:]
    roots = list(graph.roots(graph.inputs[name][0]))
    for j, i in merges:
        if j in roots and i in roots:
            w[0][..., roots.index(i), :] += w[0][..., roots.index(j), :]
    return w


def rebuild(graph, removed, merges=(), drop=(), custom_objects=None, shifts=None):
    """A new model without the `removed` classes; kept weights copied, merged rows and shifts added first.

    Args:
      graph: the `ChannelGraph` of the model.
      removed: class ids to remove.
      merges: (removed class, kept class) pairs whose consumer rows are summed before the cut.
      drop: names of one-input pass-through layers to leave out of the new model (channel masks).
      custom_objects: extra classes for `from_config`. Defaults to `None`.
      shifts: `{layer name: (weight index, delta)}` added to the original weights
        (`compensation.mean_shifts`). Defaults to `None`.
    """
    keeps = graph.keep_masks(removed)
    rewrite = Rewrite(graph.model, custom_objects)
    for name in graph.order:
        role = graph.roles[name]
        if role == "input":
            continue
        if name in drop:
            rewrite.remove(name)
            continue
        layer = graph.layers[name]
        w = apply_shifts(layer.get_weights(), shifts or {}, name)
        if role is None:
            if shifts and name in shifts:
                rewrite.set_weights(name, w)
            continue
        out_keep = keeps[graph.output[name]]
        in_keeps = [keeps[k] for k in graph.inputs[name]]
        if merges and role == "produce" and w and w[0].ndim >= 2:
            w = _merged(w, graph, name, merges)
        if out_keep.all() and all(k.all() for k in in_keeps):
            if (shifts and name in shifts) or (merges and role == "produce"):
                rewrite.set_weights(name, w)
            continue
        kind = kind_of(layer)
        config = layer.get_config()
        if kind.config:
            config = kind.config(config, out_keep)
        rewrite.set_config(name, config, kind.cut_weights(layer, w, in_keeps, out_keep))
    return rewrite.apply()


def zeroed_reference(model, removed):
    """The original model with each consumer's input rows and each producer's filters of the `removed`
    classes set to zero: what removing them implies, without removing anything. Its outputs must equal
    the pruned model's; BN shifts and biases of removed channels cannot hide in it, because no consumer
    reads those channels any more. For checks and benchmarks."""
    model = functional(model)
    graph = ChannelGraph(model)
    out = copy_model(model)
    zero_in_place(out, graph, removed)
    return out


def zero_in_place(model, graph, removed):
    """Zeroes the `removed` classes' filters and reading rows in `model` (the graph's model or a copy of
    it) as `zeroed_reference` does; returns `{layer name: previous weights}` to put them back."""
    keeps = graph.keep_masks(removed)
    saved = {}
    for name in graph.order:
        layer = model.get_layer(name)
        kind = kind_of(layer)
        if graph.roles[name] != "produce" or kind is None or kind.zero is None:
            continue
        k_in, k_out = keeps[graph.inputs[name][0]], keeps[graph.output[name]]
        if k_in.all() and k_out.all():
            continue
        saved[name] = layer.get_weights()
        layer.set_weights(kind.zero(layer, saved[name], k_in, k_out))
    return saved
