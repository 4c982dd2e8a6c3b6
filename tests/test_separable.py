"""tfc.separable (tfcompress/architecture/separate.py), the Conv2D `separate` fact (graph/factor.py) and
the separable recipe stage."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.analysis.cost import layer_macs
from tfcompress.architecture.separate import hint_pairs, separable_errors

L = keras.layers


def conv_model(seed=0):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((10, 9, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)               # 10x9x16
    x = L.Conv2D(24, 3, strides=2, padding="same", use_bias=False, name="c2")(x)       # 5x5x24
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(8, 1, name="pw")(x)
    x = L.Conv2D(12, (3, 2), dilation_rate=(1, 2), padding="valid", name="c3")(x)     # 3x3x12
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(4, name="fc")(x), name="convs")


def _x(n=4):
    return np.random.default_rng(3).normal(size=(n, 10, 9, 3)).astype(np.float32)


def _rank_one_slices(model):
    """Gives every k×k kernel rank-1 slices W[:, :, c, :] = d_c p_cᵀ, which a separable pair computes exactly."""
    rng = np.random.default_rng(0)
    for name in ("c1", "c2", "c3"):
        layer = model.get_layer(name)
        kh, kw, cin, cout = layer.kernel.shape
        w = np.einsum("ijc,co->ijco", rng.normal(size=(kh, kw, cin)), rng.normal(size=(cin, cout)) / cin)
        layer.set_weights([w.astype(np.float32)] + layer.get_weights()[1:])
    return model


def test_exact_when_each_input_channel_slice_has_rank_one():
    model = _rank_one_slices(conv_model())
    new = tfc.separable(model)
    x = _x()
    assert np.abs(new(x).numpy() - model(x).numpy()).max() < 1e-5
    assert max(separable_errors(model).values()) < 1e-6
    kinds = [(l.name, type(l).__name__) for l in new.layers if l.name.startswith(("c", "pw"))]
    assert kinds == [("c1_dw", "DepthwiseConv2D"), ("c1", "Conv2D"), ("c2_dw", "DepthwiseConv2D"), ("c2", "Conv2D"),
                     ("pw", "Conv2D"), ("c3_dw", "DepthwiseConv2D"), ("c3", "Conv2D")]
    assert new.get_layer("c3_dw").dilation_rate == (1, 2) and new.get_layer("c2_dw").strides == (2, 2)
    assert new.get_layer("c1").activation.__name__ == "relu" and not new.get_layer("c2").use_bias


def test_the_pair_is_the_least_squares_best_and_its_error_is_reported():
    model = conv_model()
    new = tfc.separable(model, layers=["c1"])
    w = model.get_layer("c1").get_weights()[0].astype(np.float64)                      # (3, 3, 3, 16)
    d = new.get_layer("c1_dw").get_weights()[0][:, :, :, 0]
    p = new.get_layer("c1").get_weights()[0][0, 0]
    approx = np.einsum("ijc,co->ijco", d, p)
    # Eckart-Young per input channel: what is left is every singular value but the first
    rest = sum(np.sum(np.linalg.svd(w[:, :, c, :].reshape(9, 16), compute_uv=False)[1:] ** 2) for c in range(3))
    assert np.sum((w - approx) ** 2) == pytest.approx(rest, rel=1e-4)
    assert separable_errors(model, ["c1"])["c1"] == pytest.approx(np.sqrt(rest) / np.linalg.norm(w), rel=1e-4)
    assert [type(l).__name__ for l in new.layers].count("DepthwiseConv2D") == 1


def test_macs_of_the_replaced_layers():
    model = conv_model()
    old, new = layer_macs(model), layer_macs(tfc.separable(model))
    assert old["c2"] == 25 * 9 * 16 * 24
    assert (new["c2_dw"], new["c2"]) == (25 * 9 * 16, 25 * 16 * 24)
    assert (new["c3_dw"], new["c3"]) == (9 * 6 * 8, 9 * 8 * 12)
    assert new["pw"] == old["pw"] and new["fc"] == old["fc"]
    assert old["c2"] / (new["c2_dw"] + new["c2"]) == pytest.approx(9 * 24 / (9 + 24))


@pytest.mark.parametrize("layers, message", [
    (["nope"], "no layer named 'nope'"),
    (["pw"], "cannot replace pw"),
    (["fc"], "cannot replace fc"),
])
def test_bad_layers_are_refused(layers, message):
    with pytest.raises(tfc.InputError) as e:
        tfc.separable(conv_model(), layers=layers)
    assert message in str(e.value)


def test_a_model_without_kxk_convs_is_refused():
    x = keras.Input((6,))
    with pytest.raises(tfc.InputError, match="no Conv2D layer"):
        tfc.separable(keras.Model(x, L.Dense(2)(x)))


def test_int8_file_has_depthwise_convs(tmp_path):
    from tfcompress.tflite.reader import inspect
    path = str(tmp_path / "sep.tflite")
    tfc.export(tfc.separable(conv_model(), layers=lambda l: l.name in ("c1", "c2")), path, mode="int8",
               representative_data=_x(32))
    ops = inspect(path)["op_counts"]
    assert ops["DEPTHWISE_CONV_2D"] == 2 and ops["CONV_2D"] == 4


def test_hints_and_the_stage_distil_back():
    from tfcompress.recipe.state import RunState
    from tfcompress.stages.architecture import SeparableConfig, separable as stage
    model = conv_model()
    assert hint_pairs(model) == [("c1", "c1"), ("c2", "c2"), ("c3", "c3")]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10, 9, 3)).astype(np.float32)
    y = rng.integers(0, 4, 64)
    state = RunState(recipe=None, out="unused", echo=lambda s: None, model=model, train=(x, y), test=(x, y))
    stage(state, SeparableConfig(epochs=1, batch_size=32))
    row = state.rows[-1]
    assert row["layers_macs_before"] == 90 * 27 * 16 + 25 * 144 * 24 + 9 * 48 * 12
    assert row["layers_macs"] == 90 * (27 + 3 * 16) + 25 * (144 + 16 * 24) + 9 * (48 + 8 * 12)
    assert state.teacher is model and "c1_dw" in [l.name for l in state.model.layers]
    with pytest.raises(tfc.InputError, match="alpha"):
        SeparableConfig(alpha=2.0)


def test_keras3_model_is_accepted():
    import keras as k3
    m = k3.Sequential([k3.Input((6, 6, 2)), k3.layers.Conv2D(8, 3, name="c")])
    new = tfc.separable(m)
    assert [type(l).__name__ for l in new.layers[1:]] == ["DepthwiseConv2D", "Conv2D"]
