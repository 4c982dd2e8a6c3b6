"""Planning structured pruning: how many channels each coupled group keeps, and which ones go.

`group_ratios` turns a ratio, a schedule or `{layer: ratio}` into one per group; `choose` scores every
group with a criterion and picks the classes to remove (per group, or ranked across groups); the
results feed `shrink.rebuild` (physically smaller model) or the channel masks trained inside `fit`.
"""
import math

import numpy as np

from tfcompress.errors import InputError
from tfcompress.schedules import Schedule


def _check_ratio(r, what="ratio"):
    if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0.0 <= r < 1.0:
        raise InputError(f"{what} must be a number in [0, 1) (the fraction of channels to remove). Got: {r!r}")
    return float(r)


def group_ratios(graph, ratio, skip=None):
    """{group index: ratio or schedule} from a number / schedule or a {layer name: ratio} dict."""
    skip = set(skip or ())
    unknown = sorted(skip - set(graph.layers))
    if unknown:
        raise InputError(f"skip names layers the model does not have: {', '.join(unknown)}")
    skipped = {g.index for name in skip for g in graph.groups_of_layer(name)}
    if isinstance(ratio, dict):
        missing = sorted(set(ratio) - set(graph.layers))
        if missing:
            raise InputError(f"ratio names layers the model does not have: {', '.join(missing)}")
        out = {}
        for name, r in ratio.items():
            if not isinstance(r, Schedule):
                r = _check_ratio(r, f"ratio of {name!r}")
            for g in graph.groups_of_layer(name):
                prev = out.get(g.index)
                if prev is not None and prev != r:
                    raise InputError(f"layers coupled in group {g.index} ({', '.join(g.producers)}) got "
                                     f"different ratios ({prev!r} and {r!r}); give one of them only")
                out[g.index] = r
    else:
        if not isinstance(ratio, Schedule):
            ratio = _check_ratio(ratio)
        out = {g.index: ratio for g in graph.groups}
    return {i: r for i, r in out.items() if i not in skipped}


def kept_count(n, ratio, round_to=None):
    """Channels kept out of n at `ratio`, rounded to a multiple of `round_to` (nearest, at least one)."""
    keep = n - int(math.floor(ratio * n + 1e-9))
    if round_to:
        keep = round_to * max(1, int(math.floor(keep / round_to + 0.5)))
    return max(1, min(n, keep))


def _global_counts(graph, ratios, scored, min_keep=0.1):
    """Channels to remove per group when ranking all groups together: as many in total as the uniform
    ratios would remove, taken where the scores are lowest; every group keeps `min_keep` of its channels."""
    budget, pool, limit = 0, [], {}
    for g in graph.groups:
        if g.index not in scored:
            continue
        scores, candidates = scored[g.index]
        budget += g.size - kept_count(g.size, ratios[g.index])
        limit[g.index] = min(len(candidates), g.size - max(1, math.ceil(min_keep * g.size)))
        pool += [(scores[i], g.index, i) for i in candidates]
    counts = dict.fromkeys(limit, 0)
    for _, gi, _ in sorted(pool, key=lambda t: (t[0], t[1], t[2])):
        if budget <= 0:
            break
        if counts[gi] < limit[gi]:
            counts[gi] += 1
            budget -= 1
    return counts


def choose(graph, ratios, importance, round_to=None, already=(), global_ranking=False):
    """Class ids to remove: for each group, the lowest-scored classes down to its kept count.

    With `global_ranking`, the groups compete: the same total number of channels is removed, wherever the
    criterion scores lowest (every group keeps at least 10 %). `already` holds classes removed before (masks
    during training); they stay removed.
    """
    removed = set()
    already = set(already)
    scored = {}
    for g in graph.groups:
        if ratios.get(g.index) is None or not g.prunable:
            continue
        candidates = [i for i, c in enumerate(g.classes) if c not in g.fixed]
        scores = np.where(np.isin(np.array(g.classes), list(already)), -np.inf, importance(g))
        scored[g.index] = (scores, candidates)
    counts = _global_counts(graph, ratios, scored) if global_ranking else {}
    for g in graph.groups:
        if g.index not in scored:
            continue
        scores, candidates = scored[g.index]
        if global_ranking:
            keep = kept_count(g.size, counts[g.index] / g.size, round_to)
        else:
            keep = kept_count(g.size, ratios[g.index], round_to)
        forced = [i for i in candidates if g.classes[i] in already]
        n_remove = max(min(g.size - keep, len(candidates)), len(forced))
        if n_remove > 0:
            removed.update(g.classes[i] for i in importance.select(g, n_remove, candidates, scores))
    return removed


def blocked_notes(graph, ratios=None):
    """One line per group that pruning was asked for but cannot touch, naming the layer to blame."""
    notes = []
    for g in graph.groups:
        if g.producers and g.blocked_by and (ratios is None or g.index in ratios):
            notes.append(f"group {g.index} ({', '.join(g.producers)}) not pruned: {g.blocked_by[0]}")
    return notes


def residual_merges(graph):
    """Names of the layers that join tensors elementwise (Add, Subtract, Multiply, Average, Maximum): the
    residual streams are the groups of their outputs."""
    return [name for name in graph.order if graph.roles.get(name) == "merge"]


def skip_with_residual(graph, skip, keep_residual):
    return list(skip or ()) + (residual_merges(graph) if keep_residual else [])
