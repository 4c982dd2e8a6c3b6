"""`tfc.sensitivity_scan`: prune one layer (or one channel group) at a time, at several levels, and measure.

Weight granularity: each prunable layer's prunable weights (tfmot's registry: the kernels) are zeroed
by magnitude alone (`pruning.magnitude.magnitude_mask`: exactly round(s * n) of the smallest) on a copy
of the model, the metric is measured, and the weights are put back before the next level. Channel
granularity: each prunable group of the channel graph is cut alone by the criterion (`channel_plan.choose`)
and the smaller model is built through the shrink path (`pruning.shrink.rebuild`), the model that
`tfc.prune_channels` would return for that group alone. With `finetune_steps` each candidate is trained
that many steps before it is measured (weight: under `tfc.prune` with the mask held; channel: the
smaller model itself). The model passed in is never modified: every change happens on copies.

With `path`, the report is written there (atomically) after every unit, and a scan given the path of an
unfinished report of the same settings goes on where it stopped.
"""
import numpy as np

from tfcompress._tf import keras
from tfcompress.choose import costs
from tfcompress.choose.report import GRANULARITIES, SensitivityReport
from tfcompress.errors import InputError
from tfcompress.evaluation import is_classifier, top1
from tfcompress.graph import copy_model, functional
from tfcompress.graph.keras3 import tf_keras_model

DEFAULT_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _prunable_weights(layer):
    from tfcompress.pruning.magnitude import _registry
    if hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    return [getattr(layer, n) for n in _registry.PruneRegistry._weight_names(layer)]


def _metric_fn(metric, data, batch_size):
    if callable(metric):
        return lambda m: float(metric(m, data))
    if metric != "accuracy":
        raise InputError(f"metric must be 'accuracy' or a function (model, data) -> float. Got: {metric!r}")
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and data[1] is not None):
        raise InputError("metric 'accuracy' needs data=(x, y) with labels")
    x, y = np.asarray(data[0], np.float32), np.asarray(data[1])

    def accuracy(m):  # direct calls: `predict` builds a dataset pipeline per call, 10x the cost here
        out = np.concatenate([m(x[i:i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)])
        if not is_classifier(out):
            raise InputError(f"accuracy needs a classifier output (samples, classes). Got: shape {out.shape}")
        return top1(out, y)
    return accuracy


def _check_sparsities(sparsities):
    out = [float(s) for s in sparsities]
    if not out or any(not 0.0 < s < 1.0 for s in out) or out != sorted(set(out)):
        raise InputError(f"sparsities must be increasing numbers in (0, 1). Got: {list(sparsities)!r}")
    return out


def _resume(path, settings, sparsities, granularity, metric_name):
    import os
    if not path or not os.path.exists(path):
        return None
    old = SensitivityReport.load(path)
    same = (old.granularity == granularity and old.sparsities == sparsities and old.metric == metric_name
            and old.settings == settings)
    if not same:
        raise InputError(f"{path} holds a scan with other settings ({old.granularity}, {old.settings}); "
                         "give another path or remove it")
    return old


def _finetune(model, data, steps, loss, batch_size, callbacks=()):
    x, y = np.asarray(data[0], np.float32), np.asarray(data[1])
    model.compile(keras.optimizers.Adam(1e-3), loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    per_epoch = int(np.ceil(len(x) / batch_size))
    model.fit(x, y, batch_size=batch_size, epochs=int(np.ceil(steps / per_epoch)), steps_per_epoch=None
              if steps >= per_epoch else steps, verbose=0, callbacks=list(callbacks))
    return model


def sensitivity_scan(model, data, sparsities=DEFAULT_SPARSITIES, granularity="weight", metric="accuracy",
                     finetune_steps=0, layers=None, criterion="l1", round_to=None, repair=None, path=None,
                     loss=None, batch_size=256, seed=0, verbose=1):
    """Prunes each layer (or channel group) alone at each level and measures the metric.

    Example:

    ```python
    report = tfc.sensitivity_scan(model, (x_val, y_val), granularity="channel", path="scan.json")
    print(report.table()); report.plot("scan.png")
    ratios = tfc.allocate(report, 0.25, metric="macs")
    small = tfc.prune_channels(model, ratios)
    ```

    Args:
      model: a tf_keras or Keras 3 model (Sequential or functional); it is not modified.
      data: `(x, y)` for `metric="accuracy"` (held-out data: the curves choose the ratios); for a callable
        metric, whatever it takes.
      sparsities: increasing levels in (0, 1): the fraction of the unit's weights (or channels) removed.
        Defaults to `0.1, 0.2, ..., 0.9`.
      granularity: `"weight"` (magnitude pruning per layer) or `"channel"` (per coupled channel group).
        Defaults to `"weight"`.
      metric: `"accuracy"` or `metric(model, data) -> float`, higher is better. Defaults to `"accuracy"`.
      finetune_steps: optimizer steps of training (Adam 1e-3, on `data`, which then needs labels) on each
        candidate before measuring. Defaults to `0`.
      layers: names of the layers to scan (channel: the groups of those layers). Defaults to `None`
        (every prunable layer or group).
      criterion: channel granularity: the criterion choosing the channels (see `tfc.prune_channels`).
        Defaults to `"l1"`.
      round_to: channel granularity: kept channels a multiple of this. Defaults to `None`.
      repair: channel granularity: `x` (a few hundred training samples): each candidate is built with
        `compensate=repair` and its BatchNormalization statistics re-estimated on `repair`
        (`tfc.recalibrate_batchnorm`) before it is measured, the state it would be fine-tuned from. Without
        it, BN models fall to chance after a few channels and the curves saturate. Defaults to `None`.
      path: a JSON file written after every unit; an unfinished scan there is resumed. Defaults to `None`.
      loss: the loss of fine-tuning. Defaults to `None` (sparse categorical cross-entropy on logits).
      batch_size: rows per evaluation (and fine-tuning) batch. Defaults to `256`.
      seed: seed of the `random` criterion. Defaults to `0`.
      verbose: 1 shows a Keras progress bar. Defaults to `1`.

    Returns:
      A `SensitivityReport`.

    Raises:
      InputError: bad sparsities, granularity, metric, data, layer names, or a `path` holding another scan.
    """
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity must be 'weight' or 'channel'. Got: {granularity!r}")
    sparsities = _check_sparsities(sparsities)
    if not isinstance(finetune_steps, int) or finetune_steps < 0:
        raise InputError(f"finetune_steps must be a non-negative integer. Got: {finetune_steps!r}")
    model = tf_keras_model(model)
    evaluate = _metric_fn(metric, data, batch_size)
    if finetune_steps and not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise InputError("finetune_steps needs data=(x, y) to train on")
    metric_name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
    settings = {"model": model.name, "criterion": criterion if granularity == "channel" else None,
                "round_to": round_to if granularity == "channel" else None, "finetune_steps": finetune_steps,
                "layers": sorted(layers) if layers else None, "repair": repair is not None}
    if repair is not None and granularity != "channel":
        raise InputError("repair applies to channel granularity (it re-estimates BN after removing channels)")
    report = _resume(path, settings, sparsities, granularity, metric_name)
    work = copy_model(functional(model))
    scanner = (_WeightScan if granularity == "weight" else _ChannelScan)(work, layers, criterion, round_to,
                                                                         data, seed)
    scanner.repair = None if repair is None else np.asarray(repair, np.float32)
    if report is None:
        report = SensitivityReport(granularity, evaluate(work), sparsities, scanner.units(), metric_name,
                                   scanner.cost(), settings)
    todo = [k for k in report.units if not report.done(k)]
    bar = keras.utils.Progbar(len(report.units) * len(sparsities), unit_name="candidate") if verbose else None
    if bar:
        bar.update(len(sparsities) * (len(report.units) - len(todo)))
    for key in todo:
        unit = report.units[key]
        unit["ratios"], unit["scores"] = [], []
        for s in sparsities:
            ratio, score = scanner.measure(key, s, evaluate, finetune_steps, loss, batch_size)
            unit["ratios"].append(ratio)
            unit["scores"].append(score)
            if bar:
                bar.add(1)
        if path:
            report.save(path)
    if path and not todo:
        report.save(path)
    return report


class _WeightScan:
    def __init__(self, model, layers, criterion, round_to, data, seed):
        from tfcompress.pruning.magnitude import _prunable
        self.model, self.data = model, data
        names = [l.name for l in model.layers if _prunable(l)]
        if layers:
            unknown = sorted(set(layers) - set(names))
            if unknown:
                raise InputError(f"layers names no prunable layer of the model: {', '.join(unknown)}")
            names = [n for n in names if n in set(layers)]
        if not names:
            raise InputError(f"model {model.name!r} has no prunable layer")
        self.names = names

    def units(self):
        return costs.weight_units(self.model, self.names, _prunable_weights)

    def cost(self):
        return None

    def measure(self, key, sparsity, evaluate, finetune_steps, loss, batch_size):
        from tfcompress.pruning.magnitude import magnitude_mask
        weights = _prunable_weights(self.model.get_layer(key))
        saved = [w.numpy() for w in weights]
        try:
            for w in weights:
                mask, _ = magnitude_mask(w, sparsity)
                w.assign(w * mask)
            if finetune_steps:
                from tfcompress import CompressionCallback, ConstantSparsity, prune
                wrapped = prune(self.model, layers={key: ConstantSparsity(sparsity, 0, frequency=1)})
                _finetune(wrapped, self.data, finetune_steps, loss, batch_size, [CompressionCallback()])
                score = evaluate(wrapped)
            else:
                score = evaluate(self.model)
        finally:
            for w, v in zip(weights, saved):
                w.assign(v)
        n = sum(v.size for v in saved)
        return (round(sum(int(round(sparsity * v.size)) for v in saved) / n, 6) if n else 0.0), score


class _ChannelScan:
    def __init__(self, model, layers, criterion, round_to, data, seed):
        from tfcompress.pruning import criteria
        from tfcompress.pruning.graph import ChannelGraph
        self.model, self.data, self.round_to = model, data, round_to
        self.criterion, self.seed = criterion, seed
        self.graph = ChannelGraph(model)
        groups = [g for g in self.graph.groups if g.prunable]
        if layers:
            unknown = sorted(set(layers) - set(self.graph.layers))
            if unknown:
                raise InputError(f"layers names layers the model does not have: {', '.join(unknown)}")
            wanted = {g.index for n in layers for g in self.graph.groups_of_layer(n)}
            groups = [g for g in groups if g.index in wanted]
        if not groups:
            raise InputError(f"model {model.name!r} has no prunable channel group")
        self.groups = {g.producers[0]: g for g in groups}
        self.importance = criteria.get(criterion, model, self.graph, data, seed)

    def units(self):
        return {k: {"size": g.size, "fixed": len(g.fixed), "producers": list(g.producers)}
                for k, g in self.groups.items()}

    def cost(self):
        return costs.channel_polynomial(self.model, self.graph, self.groups)

    def measure(self, key, sparsity, evaluate, finetune_steps, loss, batch_size):
        from tfcompress.pruning.channel_plan import choose
        from tfcompress.pruning.shrink import rebuild, zero_in_place
        g = self.groups[key]
        if self.repair is not None:
            small, ratio = self._repaired(key, sparsity, batch_size)
        else:
            removed = choose(self.graph, {g.index: sparsity}, self.importance, self.round_to)
            ratio = round(len(removed) / g.size, 6)
            if not finetune_steps and not self.importance.merges:
                # the model with the removed channels zeroed computes what the smaller one does (shrink.py)
                saved = zero_in_place(self.model, self.graph, removed)
                try:
                    return ratio, evaluate(self.model)
                finally:
                    for name, weights in saved.items():
                        self.model.get_layer(name).set_weights(weights)
            small = rebuild(self.graph, removed, self.importance.merges)
        if finetune_steps:
            _finetune(small, self.data, finetune_steps, loss, batch_size)
        return ratio, evaluate(small)

    def _repaired(self, key, sparsity, batch_size):
        import warnings

        from tfcompress.pruning.batchnorm import recalibrate_batchnorm
        from tfcompress.pruning.channels import plan_and_prune
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = plan_and_prune(self.model, {key: sparsity}, self.criterion, self.data, self.round_to,
                                    seed=self.seed, compensate=self.repair)
        recalibrate_batchnorm(result.model, self.repair, batch_size=min(64, batch_size))
        return result.model, round(len(result.removed) / self.groups[key].size, 6)
