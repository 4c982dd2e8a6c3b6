"""recalibrate_batchnorm: moving statistics from data, nothing else touched."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.errors import InputError

L = keras.layers


def _model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 5, 2))
    x = L.Conv2D(4, 3, padding="same", name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(3, 3, padding="same", use_bias=False, name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    model = keras.Model(inp, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))
    rng = np.random.default_rng(0)
    for name in ("bn1", "bn2"):  # stale statistics, far from the data's
        bn = model.get_layer(name)
        n = bn.gamma.shape[0]
        bn.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.5, n), rng.normal(0, 3, n), rng.uniform(5, 9, n)])
    return model


def _x(n=128, seed=1):
    return np.random.default_rng(seed).normal(1.0, 2.0, size=(n, 5, 5, 2)).astype(np.float32)


def test_one_batch_makes_inference_match_training_mode():
    model, x = _model(), _x()
    train_out = model(x, training=True).numpy()
    assert np.abs(model(x, training=False).numpy() - train_out).max() > 0.1
    assert tfc.recalibrate_batchnorm(model, x, batch_size=len(x)) is model
    # Only the unbiased variance estimate (n / (n - 1), n = 3200) separates the two.
    np.testing.assert_allclose(model(x, training=False).numpy(), train_out, atol=2e-3)


def test_statistics_are_the_mean_over_batches_and_nothing_else_changes():
    model, x = _model(), _x()
    before = {w.name: w.numpy().copy() for w in model.weights}
    tfc.recalibrate_batchnorm(model, (x, np.zeros(len(x))), batch_size=32)
    c1 = keras.Model(model.inputs, model.get_layer("c1").output)(x).numpy().reshape(-1, 4)
    bn1 = model.get_layer("bn1")
    np.testing.assert_allclose(bn1.moving_mean.numpy(), c1.mean(0), rtol=1e-4, atol=1e-5)
    batch_vars = np.mean([c1.reshape(4, -1, 4)[i].var(0) for i in range(4)], 0)
    np.testing.assert_allclose(bn1.moving_variance.numpy(), batch_vars, rtol=2e-3)
    assert bn1.momentum == 0.99 and model.get_layer("bn2").momentum == 0.99
    for w in model.weights:
        if "moving" not in w.name:
            np.testing.assert_array_equal(w.numpy(), before[w.name])
        else:
            assert np.abs(w.numpy() - before[w.name]).max() > 0.1


def test_steps_limits_the_batches():
    model, x = _model(), _x()
    tfc.recalibrate_batchnorm(model, x, batch_size=16, steps=1)
    c1 = keras.Model(model.inputs, model.get_layer("c1").output)(x[:16]).numpy().reshape(-1, 4)
    np.testing.assert_allclose(model.get_layer("bn1").moving_mean.numpy(), c1.mean(0), rtol=1e-4, atol=1e-5)


def test_frozen_batchnorm_keeps_its_statistics():
    model, x = _model(), _x()
    model.get_layer("bn2").trainable = False
    stats = model.get_layer("bn2").moving_mean.numpy().copy()
    tfc.recalibrate_batchnorm(model, x)
    np.testing.assert_array_equal(model.get_layer("bn2").moving_mean.numpy(), stats)
    # the stale ones (~N(0, 3)) are replaced by the mean of what bn1 reads on the data
    c1 = keras.Model(model.inputs, model.get_layer("c1").output)(x).numpy().reshape(-1, 4).mean(0)
    np.testing.assert_allclose(model.get_layer("bn1").moving_mean.numpy(), c1, rtol=1e-4, atol=1e-4)


def test_recovers_accuracy_of_a_pruned_model():
    # Downstream BN statistics go stale when channels go; re-estimating them restores inference outputs
    # to what the pruned network computes with batch statistics.
    model, x = _model(), _x()
    small = tfc.prune_channels(model, 0.5)
    tfc.recalibrate_batchnorm(small, x, batch_size=len(x))
    np.testing.assert_allclose(small(x, training=False).numpy(), small(x, training=True).numpy(), atol=2e-3)


@pytest.mark.parametrize("kw", [{"batch_size": 0}, {"batch_size": 2.5}, {"steps": 0}, {"steps": True}])
def test_bad_arguments(kw):
    with pytest.raises(InputError):
        tfc.recalibrate_batchnorm(_model(), _x(8), **kw)


def test_empty_data():
    with pytest.raises(InputError, match="empty"):
        tfc.recalibrate_batchnorm(_model(), np.zeros((0, 5, 5, 2), np.float32))
