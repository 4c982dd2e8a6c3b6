"""What to cut: importance of each channel class of a coupled group.

An importance is built once per model (`get(name, model, graph, data, seed)`) and then called per group:
`importance(group) -> scores` (one score per class in `group.classes`, higher = more important).
Scores of the group's layers are averaged per class; for `l1`, `l2` and `apoz` each layer's vector is first
normalised by its mean, so coupled layers of different fan-in count alike (Torch-Pruning's default),
while `bn_gamma` and `taylor` keep raw values, which compare across groups for global ranking.

* `l1`, `l2`: norm of each producer filter (Li et al., 2017) and, as in DepGraph's group magnitude, of the
  weight rows that read the channel in every consumer (so a channel normalised by BN but little used
  downstream scores low).
* `bn_gamma`: |gamma| of the BatchNormalization layers of the group (network slimming, Liu et al., 2017).
* `apoz`: 1 - average percentage of zeros after ReLU-like activations on `data` (Hu et al., 2016).
* `taylor`: |sum of w * dL/dw| over each channel's producer and BN weights on `data`, averaged over
  batches (Molchanov et al., 2017/2019); labels from `data` or, without labels, the model's own argmax.
* `random`: the baseline (seeded).
* `merge`: data-free neuron merging for Dense groups (Srinivas & Babu, 2015): neuron j is merged into its
  most similar neuron i and j's outgoing weights are added to i's; groups where merging does not apply
  (convolutions, BN between the layers) use `l2`.

Groups without the source a criterion needs (no BN for `bn_gamma`, no ReLU for `apoz`) use `l1`.
"""
import numpy as np

from tfcompress._tf import keras, tf
from tfcompress.errors import InputError
from tfcompress.graph import kind_of

NAMES = ("l1", "l2", "bn_gamma", "apoz", "taylor", "random", "merge")
NEEDS_DATA = ("apoz", "taylor")
_RELU_NAMES = ("relu", "relu6", "elu", "selu", "gelu", "swish", "silu", "leaky_relu")


def split_data(data):
    """`x` or `(x, y)` -> (x, y or None) as numpy arrays."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        x, y = data, None
    return np.asarray(x, np.float32), (None if y is None else np.asarray(y))


class Importance:
    """Base: per-tensor score vectors aggregated over a group's classes."""

    # Per-layer mean normalisation makes layers of different fan-in comparable; criteria whose raw values
    # already compare across layers (BN gammas, loss sensitivity) keep them, which global ranking needs.
    normalize = True

    def __init__(self, model, graph, data=None, seed=0):
        self.model, self.graph, self.data, self.seed = model, graph, data, seed
        self.merges = []
        self._vectors = None

    def vectors(self):
        """{tensor key: score per position of its last axis}; computed once."""
        raise NotImplementedError

    def __call__(self, group):
        if self._vectors is None:
            self._vectors = self.vectors()
        scores = _aggregate(self.graph, group, self._vectors, self.normalize)
        if scores is None:
            scores = _aggregate(self.graph, group, _filter_norms(self.graph, 1))
        return scores

    def select(self, group, n_remove, candidates, scores):
        """Indices (into group.classes) to remove: the lowest scores among `candidates`."""
        return sorted(candidates, key=lambda i: (scores[i], i))[:n_remove]


def _aggregate(graph, group, vectors, normalize=True):
    """Mean over the group's layers of each layer's mean-normalised score vector, per class.

    `vectors` is a dict or a list of (tensor key, score per position of that tensor's last axis)."""
    classes = {c: i for i, c in enumerate(group.classes)}
    total = np.zeros(len(classes))
    count = np.zeros(len(classes))
    for key, vec in (vectors.items() if isinstance(vectors, dict) else vectors):
        if key not in graph.tensors:
            continue
        roots = graph.roots(key)
        pos = [p for p, r in enumerate(roots) if r in classes]
        if not pos:
            continue
        v = np.abs(np.asarray(vec, np.float64)[pos])
        if normalize:
            v = v / (v.mean() + 1e-12)
        idx = [classes[roots[p]] for p in pos]
        np.add.at(total, idx, v)
        np.add.at(count, idx, 1)
    if not count.any():
        return None
    return total / np.maximum(count, 1)


def _producers(graph):
    return [n for n in graph.order if graph.roles[n] == "produce"]


def _input_rows(layer):
    """The weights that read each input channel, input channel last; None for layers not known here."""
    kind = kind_of(layer)
    return kind.reads(layer) if kind is not None and kind.reads is not None else None


def _norm(w, p):
    w = w.reshape(-1, w.shape[-1])
    return np.abs(w).sum(0) if p == 1 else np.sqrt((w ** 2).sum(0))


def _filter_norms(graph, p):
    """Group magnitude (as in Torch-Pruning's DepGraph): the norms of the filters that make each channel
    and of the weight rows that read it in every consumer, as [(tensor key, vector)]."""
    out = []
    for name in _producers(graph):
        layer = graph.layers[name]
        out.append((graph.output[name], _norm(kind_of(layer).filters(layer), p)))
        rows = _input_rows(layer)
        if rows is not None and graph.inputs[name]:
            out.append((graph.inputs[name][0], _norm(rows, p)))
    return out


class L1(Importance):
    def vectors(self):
        return _filter_norms(self.graph, 1)


class L2(Importance):
    def vectors(self):
        return _filter_norms(self.graph, 2)


class BNGamma(Importance):
    normalize = False

    def vectors(self):
        out = {}
        for name in self.graph.order:
            layer = self.graph.layers[name]
            kind = kind_of(layer)
            if kind is not None and kind.gamma is not None and self.graph.roles[name] == "pass":
                out[self.graph.output[name]] = kind.gamma(layer)
        return out


class Random(Importance):
    def __call__(self, group):
        return np.random.default_rng([self.seed, group.index]).random(group.size)


def _relu_like(layer):
    kind = kind_of(layer)
    if kind is not None and kind.rectifier:
        return True
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) in _RELU_NAMES


def _batches(x, y=None, size=64):
    for i in range(0, len(x), size):
        yield x[i:i + size], (None if y is None else y[i:i + size])


class APoZ(Importance):
    def vectors(self):
        x, _ = split_data(self.data)
        names = [n for n in self.graph.order if self.graph.roles[n] in ("pass", "produce")
                 and _relu_like(self.graph.layers[n])]
        if not names:
            return {}
        probe = keras.Model(self.model.inputs, [self.graph.layers[n].output for n in names])
        zeros = [0.0] * len(names)
        seen = [0] * len(names)
        for xb, _ in _batches(x):
            outs = probe(xb, training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for i, o in enumerate(outs):
                o = o.numpy().reshape(-1, o.shape[-1])
                zeros[i] = zeros[i] + (o <= 0).sum(0)
                seen[i] += o.shape[0]
        return {self.graph.output[n]: 1.0 - z / max(s, 1) + 1e-6 for n, z, s in zip(names, zeros, seen)}




class Taylor(Importance):
    normalize = False

    def vectors(self):
        x, y = split_data(self.data)
        model, graph = self.model, self.graph
        tracked = []  # (tensor key, variable, axis of its output channels)
        for name in graph.order:
            layer = graph.layers[name]
            role = graph.roles[name]
            kind = kind_of(layer)
            if kind is None or kind.out_axes is None or role not in ("produce", "pass"):
                continue
            trainable = {id(v) for v in layer.trainable_weights}
            for index, axis in kind.out_axes(layer).items():
                v = layer.weights[index]
                if id(v) in trainable:
                    tracked.append((graph.output[name], v, axis % v.shape.rank))
        if not tracked:
            return {}
        last = model.layers[-1]
        from_logits = getattr(getattr(last, "activation", None), "__name__", "") != "softmax"
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        sums = {}
        n = 0
        for xb, yb in _batches(x, y):
            with tf.GradientTape() as tape:
                out = model(xb, training=False)
                labels = tf.argmax(out, -1) if yb is None else yb
                loss = loss_fn(labels, out)
            grads = tape.gradient(loss, [v for _, v, _ in tracked])
            per = {}
            for (key, v, axis), g in zip(tracked, grads):
                if g is None:
                    continue
                wg = np.moveaxis((v * g).numpy(), axis, -1).reshape(-1, v.shape[axis]).sum(0)
                per[key] = per.get(key, 0.0) + wg
            for key, wg in per.items():
                sums[key] = sums.get(key, 0.0) + np.abs(wg)
            n += 1
        return {k: s / max(n, 1) + 1e-12 for k, s in sums.items()}


class Merge(Importance):
    """Srinivas & Babu's data-free merging for Dense groups; `l2` elsewhere."""

    def __call__(self, group):
        return _aggregate(self.graph, group, _filter_norms(self.graph, 2))

    def _eligible(self, group):
        members = group.members()
        if len(group.producers) != 1 or not isinstance(self.graph.layers[group.producers[0]],
                                                        keras.layers.Dense):
            return None
        consumers = []
        for name, how, _ in members:
            layer = self.graph.layers[name]
            if how == "consume" and isinstance(layer, keras.layers.Dense):
                consumers.append(name)
            elif how == "pass" and getattr(kind_of(layer), "elementwise", False):
                continue
            elif name != group.producers[0]:
                return None
        return consumers or None

    def select(self, group, n_remove, candidates, scores):
        consumers = self._eligible(group)
        if consumers is None:
            return super().select(group, n_remove, candidates, scores)
        prod = self.graph.layers[group.producers[0]]
        ws = prod.get_weights()
        w_in = np.concatenate([ws[0]] + [b[None] for b in ws[1:]], 0).T  # (units, fan_in + bias)
        rows = []
        for name in consumers:
            layer = self.graph.layers[name]
            roots = self.graph.roots(self.graph.inputs[name][0])
            k = layer.get_weights()[0]
            rows.append(np.stack([k[list(roots).index(c)] for c in group.classes]))
        a = np.concatenate(rows, 1)  # outgoing weights per neuron
        d = ((w_in[:, None, :] - w_in[None, :, :]) ** 2).sum(-1)
        alive = np.ones(group.size, bool)
        cand = np.zeros(group.size, bool)
        cand[list(candidates)] = True
        removed = []
        for _ in range(n_remove):
            s = (a ** 2).sum(1)[None, :] * d  # s[i, j]: cost of merging j into i
            s[~alive, :] = np.inf
            s[:, ~(alive & cand)] = np.inf
            np.fill_diagonal(s, np.inf)
            i, j = np.unravel_index(np.argmin(s), s.shape)
            if not np.isfinite(s[i, j]):
                break
            a[i] += a[j]
            alive[j] = False
            removed.append(j)
            self.merges.append((group.classes[j], group.classes[i]))
        return removed


CRITERIA = {"l1": L1, "l2": L2, "bn_gamma": BNGamma, "apoz": APoZ, "taylor": Taylor, "random": Random,
            "merge": Merge}


def get(name, model, graph, data=None, seed=0):
    """Builds the importance `name` for a model and its channel graph.

    Raises:
      InputError: unknown name, or a data-driven criterion without data.
    """
    if name not in CRITERIA:
        raise InputError(f"unknown criterion {name!r}; choose one of {', '.join(NAMES)}")
    if name in NEEDS_DATA and data is None:
        raise InputError(f"criterion {name!r} needs data (x or (x, y)); pass data=... (CLI: --data SPEC)")
    return CRITERIA[name](model, graph, data, seed)
