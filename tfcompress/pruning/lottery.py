"""Lottery tickets: train, prune a fraction of what remains, rewind the survivors, retrain, repeat.

The procedure of Frankle & Carbin (2019) and, with `rewind=k`, of Frankle et al. (2020), as open_lth runs
it: round 0 trains the dense network from its initial weights and stores the weights of optimizer step
`k` (step 0: the initial weights); each later round removes `prune_fraction` of the weights still alive
(ranked by magnitude across all pruned layers, or within each layer), sets every weight back to the
stored one (pruned ones to zero) and trains again. The controls are branches of a round that leave the
ticket's chain alone: `"reinit"` keeps the round's mask and draws fresh weights from each layer's
initializer; `"random_mask"` keeps the stored weights and shuffles the mask within each layer (same
count per layer).

The masks live in tfc.prune's `PruneWrapper` under a schedule that never fires, so the mask is only
ever set here: the forward pass multiplies each kernel by its mask (pruned weights get no gradient, and
a fresh optimizer per round carries no momentum into them) and the callback writes the zeros back at
every epoch end, so the zero count of each round is the same at every step of its training.
"""
import dataclasses
import math

import numpy as np

from tfcompress._tf import keras
from tfcompress.callbacks import CompressionCallback, iter_layers
from tfcompress.errors import InputError, UnsupportedModelError
from tfcompress.evaluation import keras_accuracy
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.graph.walk import output_keys
from tfcompress.pruning.magnitude import PruneWrapper, prune, wrappers
from tfcompress.schedules import ConstantSparsity
from tfcompress.stripping import strip

__all__ = ["lottery_ticket", "LotteryHistory", "reinitialize", "split_data", "SCOPES", "CONTROLS"]

SCOPES = ("global", "layer")
CONTROLS = ("reinit", "random_mask")
NEVER = 2 ** 62   # a begin_step no training reaches: the wrapper's schedule never recomputes a mask


@dataclasses.dataclass
class LotteryHistory:
    """What `lottery_ticket` measured, one row per round (round 0 is the dense network).

    Attributes:
      rounds: dicts with `round`, `kept` (fraction of the pruned layers' weights alive), `sparsity`,
        `zeros` (exact zeros in those weights after training), `accuracy` (test top-1) and, on rounds
        with a control, `<control>_accuracy`.
      rewind_step: the optimizer step the weights are rewound to (0: the initial weights).
      rewind_weights: {variable name: array} the weights stored at `rewind_step`.
      masks: {variable name: 0/1 array} the final round's masks.
    """
    rounds: list
    rewind_step: int
    rewind_weights: dict
    masks: dict

    def format(self):
        """The rounds as a text table."""
        controls = [c for c in CONTROLS if any(f"{c}_accuracy" in r for r in self.rounds)]
        head = f"{'round':>5} {'kept %':>7} {'accuracy':>9}" + "".join(f" {c:>12}" for c in controls)
        lines = [head]
        for r in self.rounds:
            cells = "".join(f" {r[f'{c}_accuracy']:>12.4f}" if f"{c}_accuracy" in r else f" {'':>12}"
                            for c in controls)
            lines.append(f"{r['round']:>5} {100 * r['kept']:>7.2f} {r['accuracy']:>9.4f}{cells}")
        return "\n".join(lines)

    def to_dict(self):
        """The rounds and the rewind step (no arrays)."""
        return {"rounds": [dict(r) for r in self.rounds], "rewind_step": self.rewind_step}


def split_data(data, model):
    """`((x, y), (x_test, y_test))` from a pair of pairs or a data spec (`"digits"`), fitted to the model.

    Raises:
      InputError: anything else.
    """
    from tfcompress.data import fit_to_input, load
    if isinstance(data, str):
        data = (load(data, "train"), load(data, "test"))
    try:
        (x, y), (xt, yt) = data
    except (TypeError, ValueError):
        raise InputError("data must be ((x_train, y_train), (x_test, y_test)) or a data spec such as "
                         f"'digits'. Got: {type(data).__name__}") from None
    x, _ = fit_to_input(np.asarray(x, np.float32), model.input_shape)
    xt, _ = fit_to_input(np.asarray(xt, np.float32), model.input_shape)
    return (x, np.asarray(y)), (xt, np.asarray(yt))


def reinitialize(model, seed=0):
    """Draws every weight of `model` afresh from its layer's initializer (PruneWrapper masks excepted).

    A weight whose layer names no initializer for it keeps its value. Model structure is untouched.

    Args:
      model: a tf_keras model (plain or wrapped by `tfc.prune`).
      seed: seeds the draws (one seed per weight, derived from it). Defaults to `0`.

    Returns:
      The number of weights redrawn.
    """
    count = 0
    for layer in iter_layers(model):
        inner = layer.layer if isinstance(layer, PruneWrapper) else layer
        owned = {id(w) for w in inner.weights}
        for attr, value in list(vars(inner).items()):
            init = getattr(inner, f"{attr}_initializer", None)
            if id(value) not in owned or init is None:
                continue
            init = keras.initializers.get(init)
            config = init.get_config()
            if "seed" in config:
                init = type(init).from_config(dict(config, seed=seed * 100003 + count))
            value.assign(init(value.shape, value.dtype))
            count += 1
    return count


def _check(rounds, prune_fraction, scope, rewind, control, epochs, batch_size):
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 0:
        raise InputError(f"rounds must be a non-negative integer. Got: {rounds!r}")
    if not isinstance(prune_fraction, (int, float)) or not 0.0 < prune_fraction < 1.0:
        raise InputError(f"prune_fraction must be a number in (0, 1). Got: {prune_fraction!r}")
    if scope not in SCOPES:
        raise InputError(f"scope must be global or layer. Got: {scope!r}")
    if rewind != "init" and (not isinstance(rewind, int) or isinstance(rewind, bool) or rewind < 0):
        raise InputError(f"rewind must be 'init' or a non-negative optimizer step. Got: {rewind!r}")
    controls = () if control is None else (control,) if isinstance(control, str) else tuple(control)
    bad = [c for c in controls if c not in CONTROLS]
    if bad:
        raise InputError(f"control must be None, 'reinit' or 'random_mask' (or a list of them). Got: {control!r}")
    if not isinstance(epochs, int) or epochs < 1 or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"epochs and batch_size must be positive integers. Got: {epochs!r}, {batch_size!r}")
    return controls


class _StoreAt(keras.callbacks.Callback):
    """Keeps the values of `variables` right after optimizer step `step`."""

    def __init__(self, variables, step):
        super().__init__()
        self.variables, self.step, self.values = variables, step, None

    def on_train_batch_end(self, batch, logs=None):
        if self.values is None and int(self.model.optimizer.iterations.numpy()) == self.step:
            self.values = [v.numpy().copy() for v in self.variables]


def _new_masks(pruned, fraction, scope):
    """Removes `fraction` of the alive weights with the smallest magnitude, globally or per weight."""
    values = [np.abs((w * m).numpy()).ravel() for w, m, _ in pruned]
    masks = [m.numpy().ravel().copy() for _, m, _ in pruned]
    groups = [list(range(len(pruned)))] if scope == "global" else [[i] for i in range(len(pruned))]
    for group in groups:
        scores = np.concatenate([np.where(masks[i] > 0, values[i], np.inf) for i in group])
        alive = int(sum((masks[i] > 0).sum() for i in group))
        k = int(round(fraction * alive))
        if k <= 0:
            continue
        drop = np.argsort(scores, kind="stable")[:k]
        flat = np.concatenate([masks[i] for i in group])
        flat[drop] = 0.0
        offsets = np.cumsum([0] + [masks[i].size for i in group])
        for j, i in enumerate(group):
            masks[i] = flat[offsets[j]:offsets[j + 1]]
    return [mk.reshape(m.shape) for mk, (_, m, _) in zip(masks, pruned)]


def _set_masks(pruned, masks):
    for (w, m, _), mask in zip(pruned, masks):
        m.assign(mask.astype(m.dtype.as_numpy_dtype))
        w.assign(np.where(mask > 0, w.numpy(), 0.0).astype(w.dtype.as_numpy_dtype))


def _kept(pruned):
    alive = sum(int((m.numpy() > 0).sum()) for _, m, _ in pruned)
    return alive / sum(int(np.prod(m.shape)) for _, m, _ in pruned)


def _zeros(pruned):
    return sum(int(((w * m).numpy() == 0).sum()) for w, m, _ in pruned)


def lottery_ticket(model, data, rounds, prune_fraction=0.2, scope="global", rewind="init", control=None,
                   epochs=10, batch_size=64, learning_rate=1e-3, optimizer="adam", layers=None,
                   control_rounds=None, seed=0, callbacks=None, verbose=1):
    """Finds a lottery ticket by iterative magnitude pruning with rewinding (open_lth's procedure).

    The model's current weights are the initial weights (give it untrained). The loss is sparse
    categorical cross-entropy on logits; a fresh optimizer trains every round. After `rounds` rounds,
    `(1 - prune_fraction) ** rounds` of the pruned layers' weights are left.

    Example:

    ```python
    ticket, history = tfc.lottery_ticket(tfc.models.lenet300((8, 8, 1)), "digits", rounds=10,
                                         control="reinit", epochs=20)
    print(history.format())
    ```

    Args:
      model: an untrained Sequential or functional tf_keras (or Keras 3) classifier with logits out.
      data: `((x_train, y_train), (x_test, y_test))` or a data spec such as `"digits"`.
      rounds: pruning rounds after the dense round 0.
      prune_fraction: fraction of the remaining weights removed per round. Defaults to `0.2`.
      scope: `"global"` ranks the weights of all pruned layers together, `"layer"` each layer on its own.
        Defaults to `"global"`.
      rewind: `"init"` (the initial weights) or an optimizer step `k` of round 0's training whose
        weights every round restarts from. Defaults to `"init"`.
      control: None, `"reinit"`, `"random_mask"`, or a list of both: controls trained beside the
        ticket on `control_rounds`. Defaults to `None`.
      epochs: training epochs per round. Defaults to `10`.
      batch_size: batch size. Defaults to `64`.
      learning_rate: the optimizer's learning rate. Defaults to `1e-3`.
      optimizer: `"adam"` or `"sgd"`. Defaults to `"adam"`.
      layers: the layers to prune, as `tfc.prune` takes them (names or a predicate), or None for every
        prunable layer except the output layer (open_lth's choice for LeNet). Defaults to `None`.
      control_rounds: the rounds the controls are trained on, or None for every round >= 1.
        Defaults to `None`.
      seed: seeds the controls' fresh weights and random masks. Defaults to `0`.
      callbacks: extra Keras callbacks for every training run. Defaults to `None`.
      verbose: 0 silent; 1 Keras progress bars and a line per round; 2 a line per epoch. Defaults to `1`.

    Returns:
      `(ticket, history)`: the last round's trained sparse model, stripped (a plain tf_keras model with
      the pruned weights at exactly zero), and a `LotteryHistory`.

    Raises:
      InputError: a bad argument, or a rewind step beyond round 0's training.
      UnsupportedModelError: a subclassed model.
    """
    from tfcompress.recipe.state import optimizer as make_optimizer
    controls = _check(rounds, prune_fraction, scope, rewind, control, epochs, batch_size)
    model = tf_keras_model(model)
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise UnsupportedModelError(f"{type(model).__name__} is a subclassed model; lottery_ticket needs a "
                                    "Sequential or functional model")
    (x, y), (xt, yt) = split_data(data, model)
    step = 0 if rewind == "init" else rewind
    steps = math.ceil(len(x) / batch_size) * epochs
    if step > steps:
        raise InputError(f"rewind step must be within round 0's {steps} steps. Got: {step}")
    if layers is None:
        outputs = {key[0] for key in output_keys(model)}
        layers = [l.name for l in model.layers if l.name not in outputs]
        layers = [n for n in layers if _prunable_name(model, n)]
        if not layers:
            raise InputError(f"model {model.name!r} has no prunable layer besides its output layer")
    net = prune(model, ConstantSparsity(0.0, begin_step=NEVER), layers=layers)
    pruned = [v for wrapper in wrappers(net) for v in wrapper.pruning_vars]
    aux = {id(v) for w in wrappers(net) for v in [w.pruning_step] + [t for _, m, t in w.pruning_vars] +
           [m for _, m, _ in w.pruning_vars]}
    params = [v for v in net.weights if id(v) not in aux]
    extra = list(callbacks or [])

    def train(label, store=None):
        net.compile(make_optimizer(optimizer, learning_rate),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        cbs = [CompressionCallback()] + ([store] if store is not None else []) + extra
        if verbose:
            print(f"lottery {label}: {100 * _kept(pruned):.2f} % of weights kept")
        net.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose, callbacks=cbs)
        return keras_accuracy(net, xt, yt)

    stored = [v.numpy().copy() for v in params] if step == 0 else None
    store = _StoreAt(params, step) if step > 0 else None
    history = []
    acc = train("round 0", store)
    if store is not None:
        stored = store.values
    history.append({"round": 0, "kept": 1.0, "sparsity": 0.0, "zeros": _zeros(pruned), "accuracy": acc})
    rng = np.random.default_rng(seed)
    for r in range(1, rounds + 1):
        masks = _new_masks(pruned, prune_fraction, scope)
        _rewind(params, stored, pruned, masks)
        acc = train(f"round {r}/{rounds}")
        row = {"round": r, "kept": _kept(pruned), "sparsity": 1.0 - _kept(pruned), "zeros": _zeros(pruned),
               "accuracy": acc}
        if controls and (control_rounds is None or r in control_rounds):
            trained = [v.numpy().copy() for v in params]
            for name in controls:
                if name == "reinit":
                    _rewind(params, stored, pruned, masks)
                    reinitialize(net, seed=seed * 1000 + r)
                    _set_masks(pruned, masks)
                else:
                    shuffled = [rng.permutation(mk.ravel()).reshape(mk.shape) for mk in masks]
                    _rewind(params, stored, pruned, shuffled)
                row[f"{name}_accuracy"] = train(f"round {r}/{rounds} control {name}")
            for v, value in zip(params, trained):
                v.assign(value)
            _set_masks(pruned, masks)
        history.append(row)
        if verbose:
            print(f"lottery round {r}/{rounds}: kept {100 * row['kept']:.2f} %, accuracy {acc:.4f}" +
                  "".join(f", {c} {row[c + '_accuracy']:.4f}" for c in controls if c + "_accuracy" in row))
    masks_out = {w.name: m.numpy().copy() for w, m, _ in pruned}
    result = LotteryHistory(history, step, {v.name: a for v, a in zip(params, stored)}, masks_out)
    return strip(net), result


def _rewind(params, stored, pruned, masks):
    """Every weight := its stored value; the pruned ones := 0 under `masks`."""
    for v, value in zip(params, stored):
        v.assign(value)
    _set_masks(pruned, masks)


def _prunable_name(model, name):
    from tfcompress.pruning.magnitude import _prunable
    return _prunable(model.get_layer(name))
