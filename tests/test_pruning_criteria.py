"""Criteria: each picks the channels it should on models built so the answer is known."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.pruning import criteria
from tfcompress.pruning.channels import plan_and_prune
from tfcompress.pruning.graph import ChannelGraph

L = keras.layers


def _conv_model(bias=None, gamma=None, kernel_scale=None):
    inp = keras.Input((5, 5, 2))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    out = L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    k = rng.normal(0, 1, (3, 3, 2, 8)).astype(np.float32)
    if kernel_scale is not None:
        k = np.sign(k) * np.asarray(kernel_scale, np.float32)
    model.get_layer("conv").set_weights([k, np.zeros(8) if bias is None else np.asarray(bias, np.float32)])
    model.get_layer("out").set_weights([np.ones((8, 3), np.float32), np.zeros(3, np.float32)])
    bn = model.get_layer("bn")
    g = np.ones(8) if gamma is None else np.asarray(gamma)
    bn.set_weights([g, np.zeros(8), np.zeros(8), np.ones(8)])
    return model


def _kept(model, **kw):
    return sorted(set(range(8)) - {ChannelGraph(model).atoms[c][1] for c in plan_and_prune(model, 0.5, **kw).removed})


def test_l1_and_l2_keep_largest_filters():
    model = _conv_model(kernel_scale=np.array([1, 8, 2, 7, 3, 6, 4, 5], np.float32))
    assert _kept(model, criterion="l1") == [1, 3, 5, 7]
    assert _kept(model, criterion="l2") == [1, 3, 5, 7]


def test_bn_gamma_keeps_largest_gammas():
    model = _conv_model(gamma=[0.1, -2.0, 0.2, 1.5, 0.05, 3.0, 0.3, 0.01])
    assert _kept(model, criterion="bn_gamma") == [1, 3, 5, 6]


def test_apoz_removes_dead_channels():
    x = np.random.default_rng(2).normal(size=(32, 5, 5, 2)).astype(np.float32)
    model = _conv_model(bias=[-50, 0, -50, 0, -50, 0, -50, 0])  # even channels never fire after ReLU
    assert _kept(model, criterion="apoz", data=x) == [1, 3, 5, 7]


def test_taylor_removes_channels_without_effect_on_loss():
    x = np.random.default_rng(2).normal(size=(32, 5, 5, 2)).astype(np.float32)
    model = _conv_model(bias=[-50, 0, -50, 0, -50, 0, -50, 0])
    assert _kept(model, criterion="taylor", data=(x, np.arange(32) % 3)) == [1, 3, 5, 7]
    assert _kept(model, criterion="taylor", data=x) == [1, 3, 5, 7]  # labels from the model's argmax


def test_random_is_seeded():
    model = _conv_model()
    a, b = _kept(model, criterion="random", seed=1), _kept(model, criterion="random", seed=1)
    others = {tuple(_kept(model, criterion="random", seed=s)) for s in range(2, 8)}
    assert a == b and len(a) == 4 and len(others) > 1


def test_coupled_group_scores_both_producers():
    inp = keras.Input((4, 4, 2))
    a = L.Conv2D(4, 1, use_bias=False, name="a")(inp)
    b = L.Conv2D(4, 1, use_bias=False, name="b")(inp)
    out = L.Dense(2, name="out")(L.GlobalAveragePooling2D()(L.Add()([a, b])))
    model = keras.Model(inp, out)
    model.get_layer("a").set_weights([np.array([[[[1, 1, 9, 9], [1, 1, 9, 9]]]], np.float32)])
    model.get_layer("b").set_weights([np.array([[[[9, 1, 1, 9], [9, 1, 1, 9]]]], np.float32)])
    model.get_layer("out").set_weights([np.ones((4, 2), np.float32), np.zeros(2, np.float32)])
    graph = ChannelGraph(model)
    group = next(g for g in graph.groups if "a" in g.producers)
    scores = criteria.get("l1", model, graph)(group)
    assert np.argmin(scores) == 1 and np.argmax(scores) == 3
    np.testing.assert_allclose(scores[0], scores[2], rtol=1e-6)


def test_merge_folds_duplicate_neurons_exactly():
    inp = keras.Input((6,))
    h = L.Dense(6, activation="relu", name="h")(inp)
    out = L.Dense(3, name="out")(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    k = rng.normal(size=(6, 6)).astype(np.float32)
    k[:, 3:] = k[:, :3]  # neurons 3-5 duplicate 0-2
    model.get_layer("h").set_weights([k, np.tile(rng.normal(size=3), 2).astype(np.float32)])
    x = rng.normal(size=(16, 6)).astype(np.float32)
    small = tfc.prune_channels(model, 0.5, criterion="merge")
    assert small.get_layer("h").units == 3
    assert np.abs(small(x).numpy() - model(x).numpy()).max() <= 1e-5
    # l2 removes the same number but cannot compensate
    assert np.abs(tfc.prune_channels(model, 0.5, criterion="l2")(x).numpy() - model(x).numpy()).max() > 1e-2


def test_criterion_fallback_without_source_uses_l1():
    inp = keras.Input((6,))
    out = L.Dense(2)(L.Dense(8, name="h")(inp))
    model = keras.Model(inp, out)
    assert _kept_dense(model, "bn_gamma") == _kept_dense(model, "l1")


def _kept_dense(model, crit):
    return sorted(plan_and_prune(model, 0.5, criterion=crit).removed)


def test_unknown_criterion():
    with pytest.raises(tfc.InputError, match="unknown criterion"):
        criteria.get("nope", None, None)


def test_regularizers_attach_and_push_channels_down():
    model = _conv_model()
    slim = tfc.regularizers.attach(model, tfc.regularizers.bn_l1(0.5))
    assert isinstance(slim.get_layer("bn").gamma_regularizer, tfc.regularizers.BNL1)
    assert slim.get_layer("out").kernel_regularizer is None
    np.testing.assert_allclose(float(sum(slim.losses)), 0.5 * 8, rtol=1e-6)  # gamma = 1 on 8 channels
    lasso = tfc.regularizers.attach(model, tfc.regularizers.group_lasso(0.1))
    k = model.get_layer("conv").get_weights()[0]
    expected = 0.1 * np.sqrt((k ** 2).reshape(-1, 8).sum(0)).sum()
    np.testing.assert_allclose(float(sum(lasso.losses)), expected, rtol=1e-5)
    assert lasso.get_layer("out").kernel_regularizer is None
    x = np.random.default_rng(0).normal(size=(8, 5, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(lasso(x).numpy(), model(x).numpy(), atol=1e-6)
    with pytest.raises(tfc.InputError, match="non-negative"):
        tfc.regularizers.bn_l1(-1)
