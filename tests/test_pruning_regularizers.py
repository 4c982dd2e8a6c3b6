"""tfc.regularizers.l1 / l2 / lp: the penalty's value, no gradient at exact zeros, attach on every prunable
kernel, save/load, and use during pruning with masks kept exact."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras, tf
from tfcompress.errors import InputError
from tfcompress.pruning.magnitude import wrappers


def test_values_of_the_penalties():
    w = tf.constant([[0.5, -2.0], [0.0, 3.0]])
    assert float(tfc.regularizers.l1(0.1)(w)) == pytest.approx(0.1 * 5.5, rel=1e-6)
    assert float(tfc.regularizers.l2(0.1)(w)) == pytest.approx(0.1 * (0.25 + 4 + 9), rel=1e-6)
    assert float(tfc.regularizers.lp(0.1, 0.5)(w)) == pytest.approx(0.1 * (0.5 ** 0.5 + 2 ** 0.5 + 3 ** 0.5),
                                                                    rel=1e-6)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0])
def test_exact_zeros_get_no_gradient(p):
    w = tf.Variable([[0.0, -2.0], [0.0, 0.5]])
    with tf.GradientTape() as tape:
        loss = tfc.regularizers.lp(1.0, p)(w)
    g = tape.gradient(loss, w).numpy()
    assert np.isfinite(g).all() and g[0, 0] == 0 and g[1, 0] == 0
    assert g[0, 1] == pytest.approx(-p * 2.0 ** (p - 1), rel=1e-6)


def test_bad_arguments():
    with pytest.raises(InputError, match="p must be a positive number. Got: 0"):
        tfc.regularizers.lp(1e-4, 0)
    with pytest.raises(InputError, match="lambda must be a non-negative number. Got: -1"):
        tfc.regularizers.l1(-1)


def test_attach_on_every_kernel_and_round_trip(tmp_path):
    model = tfc.models.lenet300((8, 8, 1))
    reg = tfc.regularizers.attach(model, tfc.regularizers.l1(1e-4))
    for name in ("fc1", "fc2", "fc3"):                          # the output layer too: tfc.prune prunes it
        assert isinstance(reg.get_layer(name).kernel_regularizer, tfc.regularizers.Lp)
    expected = 1e-4 * sum(np.abs(reg.get_layer(n).kernel.numpy()).sum() for n in ("fc1", "fc2", "fc3"))
    assert float(tf.add_n(reg.losses)) == pytest.approx(expected, rel=1e-5)
    only = tfc.regularizers.attach(model, tfc.regularizers.l2(1e-4), layers=["fc2"])
    assert only.get_layer("fc1").kernel_regularizer is None
    assert only.get_layer("fc2").kernel_regularizer.p == 2.0
    path = str(tmp_path / "m.keras")
    reg.save(path)
    back = tfc.load_model(path)
    assert back.get_layer("fc1").kernel_regularizer.get_config() == {"lam": 1e-4, "p": 1.0}


def test_during_pruning_the_zeros_stay_exact():
    keras.utils.set_random_seed(0)
    model = tfc.regularizers.attach(tfc.models.lenet300((8, 8, 1)), tfc.regularizers.lp(1e-3, 0.5))
    pruned = tfc.prune(model, tfc.ConstantSparsity(0.7, frequency=10 ** 6))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = np.arange(64) % 10
    hist = pruned.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tfc.CompressionCallback()])
    assert np.isfinite(hist.history["loss"]).all()
    for w in wrappers(pruned):
        kernel = w.pruning_vars[0][0].numpy()
        assert (kernel == 0).sum() == round(0.7 * kernel.size)
    plain = tfc.strip(pruned)
    assert isinstance(plain.get_layer("fc1").kernel_regularizer, tfc.regularizers.Lp)
