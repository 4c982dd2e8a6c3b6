"""tfc.lottery_ticket: zero counts constant through every round's training, rewound weights equal to the
stored ones bit for bit, global vs layer ranking, the controls, and the errors."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.pruning.lottery import _new_masks, reinitialize
from tfcompress.pruning.magnitude import wrappers


def tiny(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((64,))
    x = keras.layers.Dense(24, activation="relu", name="h1")(inp)
    x = keras.layers.Dense(16, activation="relu", name="h2")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="out")(x))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 64)).astype(np.float32)
    w = rng.normal(size=(64, 10))
    y = np.argmax(x @ w, axis=1)
    return (x[:128], y[:128]), (x[128:], y[128:])


class Watch(keras.callbacks.Callback):
    """Per training run: the weights at its start and the zero counts after every batch."""

    def __init__(self):
        super().__init__()
        self.starts, self.zeros, self.masks = [], [], []

    def _pruned(self):
        return [v for w in wrappers(self.model) for v in w.pruning_vars]

    def on_train_begin(self, logs=None):
        self.starts.append({v.name: v.numpy().copy() for v in self.model.weights})
        self.masks.append({w.name: m.numpy().copy() for w, m, _ in self._pruned()})
        self.zeros.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.zeros[-1].append(sum(int((w.numpy() == 0).sum()) for w, _, _ in self._pruned()))


def test_zero_count_constant_through_each_round_and_rewound_weights_exact(data):
    model = tiny()
    initial = {v.name: v.numpy().copy() for v in model.weights}
    watch = Watch()
    ticket, history = tfc.lottery_ticket(model, data, rounds=3, epochs=2, batch_size=32, callbacks=[watch],
                                         verbose=0)
    size = 64 * 24 + 24 * 16                        # h1 and h2 kernels; the output layer is not pruned
    alive, expected = size, []
    for _ in range(3):
        alive -= int(round(0.2 * alive))
        expected.append(size - alive)
    assert [len(set(z)) for z in watch.zeros] == [1, 1, 1, 1]      # 4 steps per run, one count each
    assert [z[0] for z in watch.zeros] == [0] + expected
    assert [r["zeros"] for r in history.rounds] == [0] + expected
    assert [round(r["kept"], 4) for r in history.rounds] == [1.0] + [round(1 - e / size, 4) for e in expected]
    # rewind="init": the stored weights are the input model's, and every round starts from them exactly
    assert history.rewind_step == 0
    assert set(history.rewind_weights) == set(initial)
    for name, value in initial.items():
        assert np.array_equal(history.rewind_weights[name], value)
    for start, masks in zip(watch.starts[1:], watch.masks[1:]):
        for name, stored in history.rewind_weights.items():
            mask = masks.get(name, np.ones_like(stored))
            assert np.array_equal(start[name], np.where(mask > 0, stored, 0.0))
    # the ticket is a plain model with the last round's zeros and accuracy
    assert not wrappers(ticket)
    zeros = sum(int((ticket.get_layer(n).kernel.numpy() == 0).sum()) for n in ("h1", "h2"))
    assert zeros == expected[-1]
    assert (ticket.get_layer("out").kernel.numpy() != 0).all()
    acc = float(np.mean(np.argmax(ticket.predict(data[1][0], verbose=0), 1) == data[1][1]))
    assert acc == pytest.approx(history.rounds[-1]["accuracy"], abs=1e-9)


def test_rewind_to_step_k_stores_the_weights_after_k_steps(data):
    class AtStep(keras.callbacks.Callback):
        values = None

        def on_train_batch_end(self, batch, logs=None):
            if self.values is None and int(self.model.optimizer.iterations.numpy()) == 3:
                self.values = {v.name: v.numpy().copy() for v in self.model.weights}

    at, watch = AtStep(), Watch()
    model = tiny(1)
    initial = {v.name: v.numpy().copy() for v in model.weights}
    _, history = tfc.lottery_ticket(model, data, rounds=1, epochs=2, batch_size=32, rewind=3,
                                    callbacks=[at, watch], verbose=0)
    assert history.rewind_step == 3
    for name, stored in history.rewind_weights.items():
        assert np.array_equal(stored, at.values[name])
    assert not np.array_equal(history.rewind_weights["h1/kernel:0"], initial["h1/kernel:0"])
    mask = watch.masks[1]["h1/kernel:0"]
    assert np.array_equal(watch.starts[1]["h1/kernel:0"], np.where(mask > 0, at.values["h1/kernel:0"], 0.0))


def test_global_and_layer_ranking():
    model = tiny()
    net = tfc.prune(model, tfc.ConstantSparsity(0.0, begin_step=2 ** 62), layers=["h1", "h2"])
    pruned = [v for w in wrappers(net) for v in w.pruning_vars]
    pruned[0][0].assign(pruned[0][0] * 10.0)               # h1 holds the large weights
    per_layer = _new_masks(pruned, 0.5, "layer")
    assert [int(m.sum()) for m in per_layer] == [768, 192]
    joint = _new_masks(pruned, 0.5, "global")
    assert int(sum(m.sum() for m in joint)) == 960
    assert int(joint[0].sum()) == 960 and int(joint[1].sum()) == 0   # 10x larger: all of h1 survives
    smallest = np.sort(np.abs(pruned[1][0].numpy()).ravel())
    kept = np.abs(pruned[1][0].numpy())[per_layer[1] > 0]
    assert kept.min() >= smallest[191]


def test_layer_scope_prunes_each_layer_by_the_fraction(data):
    _, history = tfc.lottery_ticket(tiny(), data, rounds=2, epochs=1, scope="layer", verbose=0)
    masks = history.masks
    assert int(masks["h1/kernel:0"].sum()) == 1536 - 307 - 246       # 1536 -> 1229 -> 983
    assert int(masks["h2/kernel:0"].sum()) == 384 - 77 - 61           # 384 -> 307 -> 246


def test_controls_keep_the_count_and_change_what_they_should(data):
    watch = Watch()
    _, history = tfc.lottery_ticket(tiny(), data, rounds=1, epochs=1, control=["reinit", "random_mask"],
                                    callbacks=[watch], verbose=0, seed=5)
    assert len(watch.starts) == 4                          # round 0, round 1, reinit, random mask
    ticket_mask, reinit_mask, random_mask = (watch.masks[i]["h1/kernel:0"] for i in (1, 2, 3))
    assert np.array_equal(reinit_mask, ticket_mask)
    assert random_mask.sum() == ticket_mask.sum() and not np.array_equal(random_mask, ticket_mask)
    stored = history.rewind_weights["h1/kernel:0"]
    reinit_start = watch.starts[2]["h1/kernel:0"]
    assert not np.allclose(reinit_start[ticket_mask > 0], stored[ticket_mask > 0])
    assert np.array_equal(watch.starts[3]["h1/kernel:0"], np.where(random_mask > 0, stored, 0.0))
    row = history.rounds[1]
    assert 0.0 <= row["reinit_accuracy"] <= 1.0 and 0.0 <= row["random_mask_accuracy"] <= 1.0
    assert "reinit" in history.format() and history.to_dict()["rounds"][1]["round"] == 1


def test_reinitialize_draws_from_each_initializer():
    model = tiny()
    before = model.get_layer("h1").kernel.numpy().copy()
    assert reinitialize(model, seed=2) == 6                # 3 kernels, 3 biases
    after = model.get_layer("h1").kernel.numpy()
    limit = np.sqrt(6 / (64 + 24))                          # Glorot uniform
    assert np.abs(after).max() <= limit and abs(after.std() - before.std()) < 0.2 * before.std()
    assert abs(np.corrcoef(after.ravel(), before.ravel())[0, 1]) < 0.1


@pytest.mark.parametrize("kwargs, message", [
    ({"scope": "net"}, "scope must be global or layer. Got: 'net'"),
    ({"control": "shuffle"}, "control must be None"),
    ({"prune_fraction": 1.0}, "prune_fraction must be a number in"),
    ({"rewind": 999}, "rewind step must be within round 0's 2 steps. Got: 999"),
    ({"rounds": -1}, "rounds must be a non-negative integer. Got: -1"),
])
def test_bad_arguments(data, kwargs, message):
    args = dict(rounds=1, epochs=1, verbose=0)
    args.update(kwargs)
    rounds = args.pop("rounds")
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        tfc.lottery_ticket(tiny(), data, rounds, **args)
