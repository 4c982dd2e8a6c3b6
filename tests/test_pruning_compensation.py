"""Mean compensation: consumers keep the average contribution of the channels removed before them."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.pruning.channels import plan_and_prune, zeroed_reference

L = keras.layers


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            # Small gammas with large betas: nearly constant channels that magnitude criteria drop.
            layer.set_weights([rng.uniform(0.05, 1.5, n), rng.normal(1.0, 1.0, n), rng.normal(0, 0.5, n),
                               rng.uniform(0.5, 2, n)])
        elif layer.weights and not isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


def _x(shape, n=64, seed=1):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


def _cbr(x, name, filters=8, use_bias=False, k=3):
    x = L.Conv2D(filters, k, padding="same", use_bias=use_bias, name=f"{name}_conv")(x)
    return L.ReLU(name=f"{name}_relu")(L.BatchNormalization(name=f"{name}_bn")(x))


def test_dense_after_pooling_keeps_the_mean_output():
    inp = keras.Input((6, 6, 2))
    x = _cbr(inp, "a")
    model = _randomize(keras.Model(inp, L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x))))
    x = _x((6, 6, 2))
    plain = plan_and_prune(model, 0.5, criterion="bn_gamma")
    comp = plan_and_prune(model, 0.5, criterion="bn_gamma", compensate=x)
    assert comp.removed == plain.removed
    ref = model(x).numpy().mean(0)
    assert np.abs(plain.model(x).numpy().mean(0) - ref).max() > 0.1
    np.testing.assert_allclose(comp.model(x).numpy().mean(0), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_bias", [False, True])
def test_pointwise_consumer_keeps_its_mean(use_bias):
    # A 1x1 consumer sees each removed channel at one tap, so its mean output is kept exactly: through its
    # bias, or through the moving mean of the BN that follows a bias-free consumer. The pruned group also
    # feeds a pooled Dense head: consumers of different spatial sizes each get their own mean.
    inp = keras.Input((6, 6, 2))
    a = _cbr(inp, "a")
    x = _cbr(a, "b", filters=4, use_bias=use_bias, k=1)
    head = L.Dense(3, name="head")(L.GlobalAveragePooling2D()(a))
    model = _randomize(keras.Model(inp, [L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x)), head]))
    x = _x((6, 6, 2))
    comp = plan_and_prune(model, {"a_conv": 0.5}, criterion="l1", compensate=x)
    plain = plan_and_prune(model, {"a_conv": 0.5}, criterion="l1")

    def means(m):
        return [keras.Model(m.inputs, m.get_layer(n).output)(x).numpy().mean((0, 1, 2)) for n in ("b_bn",)] + \
            [m(x)[1].numpy().mean(0)]

    for got, bad, ref in zip(means(comp.model), means(plain.model), means(model)):
        assert np.abs(bad - ref).max() > 0.05
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    if use_bias:  # the shift went into the bias, the BN is copied unchanged
        np.testing.assert_array_equal(comp.model.get_layer("b_bn").get_weights()[2],
                                      model.get_layer("b_bn").get_weights()[2])


def test_default_stays_exact_and_compensation_changes_only_consumers():
    inp = keras.Input((6, 6, 2))
    x = _cbr(_cbr(inp, "a"), "b")
    model = _randomize(keras.Model(inp, L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x))))
    x = _x((6, 6, 2))
    plain = plan_and_prune(model, 0.5)
    np.testing.assert_allclose(plain.model(x).numpy(), zeroed_reference(model, plain.removed)(x).numpy(),
                               atol=1e-5)
    comp = plan_and_prune(model, 0.5, compensate=x)
    changed = {lay.name for lay in comp.model.layers
               if any(not np.array_equal(a, b) for a, b in zip(lay.get_weights(),
                                                               plain.model.get_layer(lay.name).get_weights()))}
    assert changed == {"b_bn", "out"}  # the BN after the bias-free consumer, and the Dense's bias


def test_merged_neurons_are_not_compensated_twice():
    inp = keras.Input((4,))
    h = L.Dense(6, activation="relu", name="h")(inp)
    model = _randomize(keras.Model(inp, L.Dense(2, name="out")(h)))
    w, b = model.get_layer("h").get_weights()
    w[:, 3:] = w[:, :3]
    b[3:] = b[:3]  # neurons 3-5 duplicate 0-2: merging them is exact
    model.get_layer("h").set_weights([w, b])
    x = np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)
    comp = plan_and_prune(model, 0.5, criterion="merge", compensate=x)
    np.testing.assert_allclose(comp.model(x).numpy(), model(x).numpy(), atol=1e-5)


def test_compensate_with_a_schedule_is_refused():
    inp = keras.Input((6, 6, 2))
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(_cbr(inp, "a"))))
    with pytest.raises(InputError, match="schedule"):
        tfc.prune_channels(model, tfc.PolynomialDecay(0.5, end_step=10), compensate=_x((6, 6, 2)))
