"""Which layers `tfc.low_rank` factors, and at which rank.

A layer's kernel, as the matrix its layer kind gives (`LayerKind.factor`), has singular values
s_1 >= s_2 >= ...; rank K keeps the fraction `sum(s_i², i <= K) / sum(s_i²)` of its energy and costs
`K × (MACs at rank 1)` (both factor layers are linear in K). Ranks come from one of

* `ranks={name: K}`: as given (not rounded);
* `energy=e`: per layer, the smallest rank keeping `e` of the energy, rounded up to `round_to`;
* `ratio=r`: the factored layers together keep at most `r` of their MACs;
* `target_macs=n`: the whole model has at most `n` MACs.

For `ratio` and `target_macs` every layer keeps the same energy fraction, the largest one whose ranks
(rounded up to `round_to`) fit the budget. A layer whose rank would not save MACs (K × (rows + cols)
>= rows × cols for a Dense layer) is left whole, except under `ranks=`, which always factors.
Per-layer ranks from a sensitivity search (`tfc.allocate`) can be passed as `ranks=`.
"""
import dataclasses

import numpy as np

from tfcompress.errors import InputError

METHODS = ("weight", "spatial")   # those of tfcompress.graph.factor (not imported here: it loads TensorFlow)


@dataclasses.dataclass
class Candidate:
    """A layer that can be factored: its SVD and its costs."""
    name: str
    factored: object          # graph.factor.Factored
    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray
    macs: int                 # the layer's MACs as it is (all calls)
    macs_per_rank: int        # MACs of the two factor layers at rank 1 (all calls)

    @property
    def full_rank(self):
        return int(len(self.s))

    def energy(self, rank):
        """Fraction of the squared singular values kept at `rank`."""
        total = float(np.sum(self.s ** 2))
        return float(np.sum(self.s[:rank] ** 2) / total) if total > 0 else 1.0

    def rank_for(self, energy, round_to):
        """The smallest rank keeping `energy` of the energy, rounded up to a multiple of `round_to`."""
        total = float(np.sum(self.s ** 2))
        if total <= 0:
            k = 1
        else:
            kept = np.cumsum(self.s ** 2) / total
            k = int(np.searchsorted(kept, energy - 1e-12)) + 1
        k = -(-max(k, 1) // round_to) * round_to
        return min(k, self.full_rank)

    def cost(self, rank):
        """MACs at `rank`, or the layer's own when `rank` is None (left whole)."""
        return self.macs if rank is None else rank * self.macs_per_rank

    def factored_factors(self, rank):
        """`(a, b)` with `a @ b` the rank-`rank` truncated SVD of the kernel matrix (float32)."""
        root = np.sqrt(self.s[:rank])
        return ((self.u[:, :rank] * root).astype(np.float32),
                (root[:, None] * self.vt[:rank]).astype(np.float32))


@dataclasses.dataclass(frozen=True)
class LayerRank:
    """One row of a rank plan: `rank` None means the layer is left whole."""
    name: str
    full_rank: int
    rank: object
    energy: float
    macs_before: int
    macs_after: int

    def to_dict(self):
        return dataclasses.asdict(self)


def _per_rank_macs(layer, factored, shapes):
    from tfcompress._tf import keras
    from tfcompress.analysis.cost import macs
    total = 0
    for in_shape in shapes:
        first, second = factored.layers(1)
        x = keras.Input(batch_shape=(1,) + tuple(in_shape[1:]))
        total += macs(keras.Model(x, second(first(x))))
    return total


def _chosen_names(model, layers, method, ranks):
    from tfcompress.graph import kind_of
    names = {l.name: l for l in model.layers}

    def can(layer):
        kind = kind_of(layer)
        return kind is not None and kind.factor is not None and kind.factor(layer, method) is not None

    if ranks is not None:
        if layers is not None:
            raise InputError("give ranks={layer: rank} or layers=, not both (the keys of ranks are the layers)")
        chosen, explicit = list(ranks), True
    elif layers is None:
        return [n for n, l in names.items() if can(l)]
    elif callable(layers):
        return [n for n, l in names.items() if layers(l) and can(l)]
    else:
        chosen, explicit = ([layers] if isinstance(layers, str) else list(layers)), True
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise InputError(f"no layer named {', '.join(map(repr, unknown))} in model {model.name!r}")
    bad = [n for n in chosen if not can(names[n])]
    if bad and explicit:
        what = "Dense and Conv2D" if method == "weight" else "Conv2D with both kernel sides > 1"
        raise InputError(f"low_rank(method={method!r}) factors {what} layers (channels last, groups=1); "
                         f"cannot factor {', '.join(bad)}. Got: "
                         f"{', '.join(type(names[n]).__name__ for n in bad)}")
    return chosen


def candidates(model, method="weight", layers=None, ranks=None):
    """{name: Candidate} of the layers to factor (see `plan_ranks` for the arguments)."""
    from tfcompress.analysis.cost import layer_macs
    from tfcompress.graph import kind_of, nodes
    from tfcompress.graph.walk import node_inputs
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}. Got: {method!r}")
    chosen = _chosen_names(model, layers, method, ranks)
    shapes = {}
    for node in nodes(model):
        if node.layer.name in chosen:
            shapes.setdefault(node.layer.name, []).append(node_inputs(node)[0].shape)
    per_layer = layer_macs(model)
    out = {}
    for name in chosen:
        layer = model.get_layer(name)
        factored = kind_of(layer).factor(layer, method)
        u, s, vt = np.linalg.svd(factored.matrix, full_matrices=False)
        out[name] = Candidate(name, factored, u, s, vt, int(per_layer.get(name, 0)),
                              _per_rank_macs(layer, factored, shapes.get(name, [])))
    return out


def check_budget(ranks, ratio, target_macs, energy):
    """Exactly one of the four, in range (no TensorFlow needed)."""
    given = [k for k, v in (("ranks", ranks), ("ratio", ratio), ("target_macs", target_macs),
                            ("energy", energy)) if v is not None]
    if len(given) != 1:
        raise InputError("low_rank needs exactly one of ranks={layer: rank}, ratio=, target_macs= or energy=. "
                         f"Got: {', '.join(given) or 'none'}")
    if ratio is not None and not (isinstance(ratio, (int, float)) and 0.0 < ratio <= 1.0):
        raise InputError(f"ratio (the fraction of the factored layers' MACs kept) must be in (0, 1]. Got: {ratio}")
    if energy is not None and not (isinstance(energy, (int, float)) and 0.0 < energy <= 1.0):
        raise InputError(f"energy (the fraction of squared singular values kept) must be in (0, 1]. Got: {energy}")
    if target_macs is not None and not (isinstance(target_macs, (int, np.integer)) and target_macs > 0):
        raise InputError(f"target_macs must be a positive integer. Got: {target_macs!r}")


def _budget_ranks(cands, budget, round_to):
    """{name: rank | None} at the largest common energy fraction whose cost fits `budget`."""
    def plan(e):
        out = {}
        for c in cands.values():
            k = c.rank_for(e, round_to)
            out[c.name] = k if k * c.macs_per_rank < c.macs else None
        return out

    def cost(p):
        return sum(c.cost(p[c.name]) for c in cands.values())

    levels = sorted({0.0} | {float(v) for c in cands.values() if np.sum(c.s ** 2) > 0
                             for v in np.cumsum(c.s ** 2) / np.sum(c.s ** 2)})
    if cost(plan(levels[0])) > budget:
        return None, cost(plan(levels[0]))
    lo, hi = 0, len(levels) - 1            # cost(plan(levels[lo])) fits; find the last level that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(plan(levels[mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return plan(levels[lo]), None


def plan_ranks(model, ranks=None, ratio=None, target_macs=None, energy=None, method="weight", layers=None,
               round_to=8, cands=None):
    """The rank of every layer `tfc.low_rank` would factor, and what it costs.

    Args:
      model: a functional or Sequential tf_keras model.
      ranks: `{layer name: rank}`, used as given. Defaults to `None`.
      ratio: the fraction of the chosen layers' MACs to keep, in (0, 1]. Defaults to `None`.
      target_macs: the whole model's MACs after factoring. Defaults to `None`.
      energy: the fraction of each layer's squared singular values to keep, in (0, 1]. Defaults to `None`.
      method: `"weight"` or `"spatial"` (Conv2D only; Dense layers are not chosen). Defaults to `"weight"`.
      layers: layer names or a predicate `layer -> bool` limiting the choice; `None`: every Dense and
        Conv2D layer the method can factor. Defaults to `None`.
      round_to: ranks from energy, ratio or target are rounded up to a multiple of this. Defaults to `8`.
      cands: `candidates(...)` already computed for these arguments. Defaults to `None`.

    Returns:
      A list of `LayerRank`, one per chosen layer, in model order.

    Raises:
      InputError: not exactly one of ranks / ratio / target_macs / energy, a value out of range, an unknown
        or unfactorable layer, or a budget below what rank `round_to` everywhere costs.
    """
    check_budget(ranks, ratio, target_macs, energy)
    if not isinstance(round_to, (int, np.integer)) or round_to < 1:
        raise InputError(f"round_to must be an integer >= 1. Got: {round_to!r}")
    if ranks is not None and not isinstance(ranks, dict):
        raise InputError(f"ranks must be a dict {{layer name: rank}}. Got: {type(ranks).__name__}")
    cands = cands if cands is not None else candidates(model, method, layers, ranks)
    if not cands:
        raise InputError(f"model {model.name!r} has no layer low_rank(method={method!r}) can factor")
    if ranks is not None:
        chosen = {}
        for name, k in ranks.items():
            full = cands[name].full_rank
            if not isinstance(k, (int, np.integer)) or not 1 <= k <= full:
                raise InputError(f"ranks[{name!r}] must be an integer in [1, {full}]. Got: {k!r}")
            chosen[name] = int(k)
    elif energy is not None:
        chosen = {}
        for c in cands.values():
            k = c.rank_for(float(energy), round_to)
            chosen[c.name] = k if k * c.macs_per_rank < c.macs else None
    else:
        from tfcompress.analysis.cost import macs
        own = sum(c.macs for c in cands.values())
        budget = ratio * own if ratio is not None else target_macs - (macs(model) - own)
        chosen, least = _budget_ranks(cands, budget, round_to)
        if chosen is None:
            want = f"ratio={ratio}" if ratio is not None else f"target_macs={target_macs:,}"
            raise InputError(f"{want} is below what rank {round_to} in every factored layer costs "
                             f"({least:,} MACs for those layers); lower round_to or raise the budget. "
                             f"Got: {budget:,.0f} MACs for the factored layers")
    rows = []
    for name, c in cands.items():
        k = chosen[name]
        rows.append(LayerRank(name, c.full_rank, k, c.energy(k) if k is not None else 1.0, c.macs, c.cost(k)))
    return rows


def format_plan(rows):
    """The plan as a table for people."""
    lines = [f"{'layer':<24}{'rank':>8}{'of':>6}{'energy':>9}{'MACs before':>14}{'after':>12}"]
    for r in rows:
        rank = "whole" if r.rank is None else str(r.rank)
        lines.append(f"{r.name:<24}{rank:>8}{r.full_rank:>6}{r.energy:>9.4f}{r.macs_before:>14,}{r.macs_after:>12,}")
    return "\n".join(lines)
