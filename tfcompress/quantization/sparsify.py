"""Pruning during quantization-aware training: `tfc.quantize(tfc.prune(model, schedule))` in one `fit`.

tfmot's pruning-preserving QAT keeps the zeros a model already has; it cannot make new ones. Here a QAT
layer whose config carries a schedule (`SparsityPreservingQuantizeConfig(schedule=...)`, set by
`tfc.quantize` for layers still wrapped by `tfc.prune` short of their target) has its sparsity mask moved
by `CompressionCallback`: at each step the schedule names, the weights of smallest magnitude are zeroed,
in the float weight and in its mask, so the fake-quantized weight the forward pass sees, the Keras weight
and the int8 file's weight all hold the same zeros. Training such a model without the callback fails
with an error that names it, as a pruned model does.
"""
from tfcompress._tf import tf
from tfcompress.callbacks import iter_layers, register_driver
from tfcompress.pruning.magnitude import magnitude_mask
from tfcompress.quantization.objects import QuantizeWrapper
from tfcompress.quantization.scheme import SparsityPreservingQuantizeConfig


def _scheduled(model):
    return [layer for layer in iter_layers(model) if isinstance(layer, QuantizeWrapper)
            and isinstance(layer.quantize_config, SparsityPreservingQuantizeConfig)
            and layer.quantize_config.schedule is not None]


def _short(variable):
    return variable.name.rsplit("/", 1)[-1].split(":")[0]


def _variables(wrapper):
    """[(weight, mask, armed)] of the wrapper's masked weights (kernel, depthwise kernel, ...): the mask
    `<attr>_sparsity_mask` belongs to the inner layer's weight `<attr>`."""
    by_name = {_short(v): v for v in wrapper.weights}
    out = []
    for short, mask in by_name.items():
        if short.endswith("_sparsity_mask"):
            attr = short[:-len("_sparsity_mask")]
            weight = by_name.get(attr)   # the variable ('conv/kernel:0'); layer.kernel is its fake-quant
            if weight is not None:
                out.append((weight, mask, by_name.get(f"{attr}_pruning_armed")))
    return out


def sparsity(wrapper):
    """Fraction of zeros in a scheduled QAT layer's masked weights."""
    total = zeros = 0
    for _, mask, _ in _variables(wrapper):
        zeros += int(tf.reduce_sum(tf.cast(tf.equal(mask, 0), tf.int32)))
        total += int(tf.size(mask))
    return zeros / max(total, 1)


class _QatPruningDriver:
    """Runs the schedules of the scheduled QAT layers of one model from `CompressionCallback`."""

    def __init__(self, model, layers):
        self.model, self.layers = model, layers
        self.variables = {layer.name: _variables(layer) for layer in layers}
        self.step = 0

    def _arm(self, value):
        for triples in self.variables.values():
            for _, _, armed in triples:
                if armed is not None:
                    armed.assign(value)

    def on_train_begin(self):
        opt = getattr(self.model, "optimizer", None)
        self.step = int(opt.iterations.numpy()) if opt is not None else 0
        self._arm(1.0)

    def on_train_batch_begin(self, batch):
        step, self.step = self.step, self.step + 1
        for layer in self.layers:
            should, target = layer.quantize_config.schedule(step)
            if not should:
                continue
            for weight, mask, _ in self.variables[layer.name]:
                new, _ = magnitude_mask(weight * mask, target)
                mask.assign(new)
                weight.assign(tf.where(new > 0, weight, tf.zeros_like(weight)))

    def _apply(self):
        # the forward pass multiplies by the mask; the optimizer's momentum still moves masked weights,
        # so the Keras weights are zeroed where the mask is, as pruning's wrappers do at these points
        for triples in self.variables.values():
            for weight, mask, _ in triples:
                weight.assign(tf.where(mask > 0, weight, tf.zeros_like(weight)))

    def on_epoch_end(self, epoch):
        self._apply()

    def on_train_end(self):
        self._apply()
        self._arm(0.0)

    def summaries(self):
        return {f"sparsity/{layer.layer.name}": sparsity(layer) for layer in self.layers}


@register_driver
def _driver(model):
    found = _scheduled(model)
    return _QatPruningDriver(model, found) if found else None
