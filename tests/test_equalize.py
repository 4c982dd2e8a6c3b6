"""Cross-layer equalization: the function is unchanged, the per-channel ranges are balanced, BatchNorm is
folded, ReLU6 pairs are skipped (or turned into ReLU when asked) and reported, Keras 3 comes back Keras 3."""
import numpy as np
import pytest

from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.graph import kind_of
from tfcompress.quantization.equalize import channel_range_ratios, equalize, find_pairs, fold_batchnorm

L = keras.layers


def _spread(layer, rs, decades=2.0):
    """Multiplies output channel c of `layer` by a random power of ten in [-decades, decades]."""
    w = layer.get_weights()
    s = 10 ** rs.uniform(-decades, decades, w[0].shape[-1])
    layer.set_weights([w[0] * s] + [b * s for b in w[1:]])


def _conv_relu_conv(act=None):
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(8, 3, padding="same", name="c1")(x)
    y = (act or L.ReLU(name="act"))(y)
    y = L.MaxPooling2D(name="pool")(y)
    out = L.Conv2D(4, 3, name="c2")(y)
    m = keras.Model(x, out)
    _spread(m.get_layer("c1"), np.random.RandomState(1))
    return m


def _depthwise():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 4))
    y = L.Conv2D(12, 1, use_bias=False, name="expand")(x)
    y = L.BatchNormalization(name="expand_bn")(y)
    y = L.ReLU(name="expand_relu")(y)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(y)
    y = L.BatchNormalization(name="dw_bn")(y)
    y = L.ReLU(name="dw_relu")(y)
    y = L.Conv2D(6, 1, name="project")(y)
    y = L.GlobalAveragePooling2D(name="gap")(L.ReLU(name="project_relu")(y))
    m = keras.Model(x, L.Dense(3, name="fc")(y))
    rs = np.random.RandomState(2)
    for name in ("expand_bn", "dw_bn"):
        bn = m.get_layer(name)
        n = bn.gamma.shape[0]
        bn.set_weights([10 ** rs.uniform(-2, 2, n), rs.randn(n), rs.randn(n), rs.uniform(0.5, 2, n)])
    return m


def _x(shape, n=16):
    return np.random.RandomState(3).randn(n, *shape).astype("float32")


def test_conv_relu_conv_same_output_balanced_ranges():
    m = _conv_relu_conv()
    x = _x((8, 8, 3))
    before = channel_range_ratios(m)["c1"]
    eq, rep = equalize(m, report=True)
    np.testing.assert_allclose(eq.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-4, rtol=1e-4)
    assert [p["pair"] for p in rep.pairs] == [("c1", "c2")] and rep.pairs[0]["via"] == ["act", "pool"]
    assert before > 100 and channel_range_ratios(eq)["c1"] < before / 20
    # after equalization each channel's range is the same in both layers: sqrt(r1 * r2)
    r1 = np.abs(eq.get_layer("c1").get_weights()[0]).reshape(-1, 8).max(0)
    r2 = np.abs(np.moveaxis(eq.get_layer("c2").get_weights()[0], 2, -1)).reshape(-1, 8).max(0)
    np.testing.assert_allclose(r1, r2, rtol=1e-3)
    assert m.get_layer("c1").get_weights()[0].std() != pytest.approx(eq.get_layer("c1").get_weights()[0].std())


def test_depthwise_triplet_batchnorm_folded():
    m = _depthwise()
    x = _x((8, 8, 4))
    eq, rep = equalize(m, report=True)
    np.testing.assert_allclose(eq.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-4, rtol=1e-4)
    assert rep.folded == [("expand", "expand_bn"), ("dw", "dw_bn")]
    assert not any(isinstance(l, L.BatchNormalization) for l in eq.layers)
    assert [p["pair"] for p in rep.pairs] == [("expand", "dw"), ("dw", "project"), ("project", "fc")]
    before, after = channel_range_ratios(m), channel_range_ratios(eq)
    assert before["expand"] > 100 and before["dw"] > 100
    assert after["expand"] < before["expand"] / 4 and after["dw"] < before["dw"] / 4
    # the fixed point of the iteration: in every pair, channel c's range is the same in both layers
    for a, b in [p["pair"] for p in rep.pairs]:
        la, lb = eq.get_layer(a), eq.get_layer(b)
        r1 = np.abs(kind_of(la).filters(la)).reshape(-1, la.output.shape[-1]).max(0)
        r2 = np.abs(kind_of(lb).reads(lb)).reshape(-1, la.output.shape[-1]).max(0)
        np.testing.assert_allclose(r1, r2, rtol=1e-3)


def test_relu6_pairs_skipped_and_reported_or_turned_into_relu():
    m = _conv_relu_conv(L.ReLU(6.0, name="act"))
    x = _x((8, 8, 3))
    eq, rep = equalize(m, report=True)
    assert rep.pairs == [] and rep.converted == []
    assert rep.skipped == [("c1", "c2", "act is ReLU6: its clip at 6 does not commute with scaling")]
    assert eq.get_layer("act").get_config()["max_value"] == 6.0
    for a, b in zip(eq.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    relu, rep = equalize(m, relu6="relu", report=True)
    assert rep.converted == ["act"] and [p["pair"] for p in rep.pairs] == [("c1", "c2")]
    assert relu.get_layer("act").get_config()["max_value"] is None
    # equal to the model with ReLU in place of ReLU6 (not to the original, which clips at 6)
    plain = keras.Model(m.input, m.get_layer("c2")(m.get_layer("pool")(L.ReLU()(m.get_layer("c1").output))))
    np.testing.assert_allclose(relu.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-4, rtol=1e-4)


def test_fused_relu6_and_branches_are_not_paired():
    x = keras.Input((6,))
    a = L.Dense(4, activation="relu6", name="a")(x)
    b = L.Dense(4, activation="relu", name="b")(a)
    c1, c2 = L.Dense(2, name="c1")(b), L.Dense(2, name="c2")(b)     # b's output has two readers
    m = keras.Model(x, L.Add()([c1, c2]))
    pairs, skipped = find_pairs(m)
    assert pairs == [] and [(s[0], s[1], s[3]) for s in skipped] == [("a", "b", ["a"])]
    assert "activation relu6" in skipped[0][2]


def test_fold_batchnorm_alone_keeps_outputs():
    m = _depthwise()
    folded, pairs = fold_batchnorm(m)
    x = _x((8, 8, 4))
    np.testing.assert_allclose(folded.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-4, rtol=1e-4)
    assert pairs == [("expand", "expand_bn"), ("dw", "dw_bn")] and folded.get_layer("dw").use_bias


def test_keras3_in_keras3_out_and_bad_mode():
    import keras as k3
    x = k3.Input((6,))
    m = k3.Model(x, k3.layers.Dense(3)(k3.layers.Dense(5, activation="relu")(x)))
    eq = equalize(m)
    assert type(eq).__module__.split(".")[0] == "keras"
    xs = _x((6,))
    np.testing.assert_allclose(eq.predict(xs, verbose=0), m.predict(xs, verbose=0), atol=1e-4, rtol=1e-4)
    with pytest.raises(InputError, match="relu6 must be one of"):
        equalize(m, relu6="clip")


def test_recipe_equalize_then_per_tensor_export(tmp_path):
    from tfcompress import recipes
    from tfcompress.tflite import reader
    keras.utils.set_random_seed(0)
    path = tmp_path / "r.yaml"
    path.write_text("name: r\ndata: digits\nmodel: {build: lenet300, args: {input_shape: [8, 8, 1]}}\nsteps:\n"
                    "  - train: {epochs: 1}\n  - equalize: {relu6: skip}\n"
                    "  - export: {per_channel: false, bias_correction: true, samples: 64}\n")
    state = recipes.run(str(path), out=str(tmp_path / "out"), echo=lambda line: None)
    eq = state.rows[1]
    assert eq["stage"] == "equalize" and eq["pairs"] == 2 and eq["skipped"] == 0
    assert eq["accuracy"] == pytest.approx(state.rows[0]["accuracy"], abs=1e-9)
    m = reader.read(state.files["int8"])
    fc = [reader.op_inputs(m, op)[1] for op in m.subgraphs[0].operators if op.op == "FULLY_CONNECTED"]
    assert len(fc) == 3 and all(len(t.scale) == 1 for t in fc)
    with pytest.raises(InputError, match="relu6 must be one of skip, relu. Got: 'keep'"):
        path.write_text("name: r\ndata: digits\nmodel: {build: lenet300}\nsteps:\n  - equalize: {relu6: keep}\n")
        recipes.run(str(path), out=str(tmp_path / "out2"), echo=lambda line: None)
