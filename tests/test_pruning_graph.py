"""Channel dependency graph: groups, couplings, fixed and blocked channels on tiny models."""
import numpy as np
import pytest

from tfcompress._tf import keras
from tfcompress.pruning import cutters
from tfcompress.pruning.graph import ChannelGraph

L = keras.layers


def _cbr(x, f, k=3, s=1, name=None):
    x = L.Conv2D(f, k, strides=s, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def toy_resnet(input_shape=(8, 8, 3), classes=10, w=16):
    """Conv-BN-ReLU, identity and projection residuals, DepthwiseConv, Concatenate, Flatten->Dense, GAP."""
    inp = keras.Input(input_shape)
    x = _cbr(inp, w, name="stem")
    y = _cbr(x, w, name="b1a")
    y = L.Conv2D(w, 3, padding="same", name="b1b_conv")(y)
    y = L.BatchNormalization(name="b1b_bn")(y)
    x = L.ReLU(name="b1_out")(L.Add(name="b1_add")([x, y]))
    y = _cbr(x, w + 8, k=1, s=2, name="b2a")
    y = L.DepthwiseConv2D(3, padding="same", name="b2_dw")(y)
    y = L.BatchNormalization(name="b2_dw_bn")(y)
    y = L.ReLU(name="b2_dw_relu")(y)
    y = L.Conv2D(w + 8, 1, use_bias=False, name="b2b_conv")(y)
    y = L.BatchNormalization(name="b2b_bn")(y)
    s = L.Conv2D(w + 8, 1, strides=2, use_bias=False, name="b2_proj")(x)
    s = L.BatchNormalization(name="b2_proj_bn")(s)
    x = L.ReLU(name="b2_out")(L.Add(name="b2_add")([s, y]))
    a = L.Conv2D(8, 1, name="cat_a")(x)
    b = L.Conv2D(8, 3, padding="same", name="cat_b")(L.ZeroPadding2D(0, name="pad")(x))
    c = L.Concatenate(name="cat")([a, b, x])
    c = _cbr(c, w, k=1, name="mix")
    g = L.Dense(12, activation="relu", name="gap_fc")(L.GlobalAveragePooling2D(name="gap")(c))
    f = L.Flatten(name="flat")(L.MaxPooling2D(2, name="pool")(c))
    f = L.Dropout(0.1, name="drop")(L.Dense(12, activation="relu", name="flat_fc")(f))
    out = L.Dense(classes, name="logits")(L.Concatenate(name="heads")([g, f]))
    return keras.Model(inp, out, name="toy_resnet")


def randomize(model, seed=0):
    """Random BN statistics and biases, so that BN shifts and biases are not zero in equivalence checks."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.5, b.shape),
                               rng.normal(0, 0.5, m.shape), rng.uniform(0.5, 2, v.shape)])
        elif layer.weights:
            layer.set_weights([rng.normal(0, 0.3, w.shape) if w.ndim == 1 else w for w in layer.get_weights()])
    return model


def _group(graph, producer):
    return next(g for g in graph.groups if producer in g.producers)


@pytest.fixture(scope="module")
def graph():
    return ChannelGraph(toy_resnet())


def test_identity_residual_couples_stem_and_block_output(graph):
    g = _group(graph, "stem_conv")
    assert set(g.producers) == {"stem_conv", "b1b_conv"}
    assert g.size == 16 and g.prunable
    consumers = {name for name, how, _ in g.members() if how == "consume"}
    assert consumers == {"b1a_conv", "b2a_conv", "b2_proj"}


def test_projection_shortcut_and_concat_offsets(graph):
    g = _group(graph, "b2_proj")
    assert set(g.producers) == {"b2_proj", "b2b_conv"} and g.size == 24
    members = {name: (how, pos) for name, how, pos in g.members()}
    assert members["mix_conv"] == ("consume", list(range(16, 40)))  # after cat_a (8) and cat_b (8)
    assert members["cat_b"][0] == "consume" and members["pad"][0] == "pass"
    assert _group(graph, "cat_b").members()[-1] == ("mix_conv", "consume", list(range(8, 16)))


def test_depthwise_passes_channels_of_expand_conv(graph):
    g = _group(graph, "b2a_conv")
    hows = {name: how for name, how, _ in g.members()}
    assert hows["b2_dw"] == "pass" and hows["b2b_conv"] == "consume" and g.size == 24


def test_flatten_maps_channel_to_spatial_rows(graph):
    g = _group(graph, "mix_conv")
    members = {name: pos for name, _, pos in g.members()}
    assert members["flat_fc"] == list(range(64))  # 2x2 positions x 16 channels
    roots = graph.roots(graph.inputs["flat_fc"][0])
    assert roots[0] == roots[16] == roots[32] == roots[48] and roots[0] != roots[1]
    assert members["gap_fc"] == list(range(16))


def test_model_input_and_output_channels_are_fixed(graph):
    assert not _group(graph, "logits").prunable
    inp = graph.groups[0]
    assert inp.producers == [] and len(inp.fixed) == 3
    assert "output channels of 'logits'" in _group(graph, "logits").details()


def test_unknown_layer_blocks_only_its_group():
    class Odd(L.Layer):
        def call(self, x):
            return x * 2.0

    inp = keras.Input((6, 6, 2))
    a = L.Conv2D(8, 3, name="a")(inp)
    b = L.Conv2D(8, 3, name="b")(Odd(name="odd")(a))
    out = L.Dense(3, name="out")(L.GlobalAveragePooling2D()(b))
    graph = ChannelGraph(keras.Model(inp, out))
    ga, gb = _group(graph, "a"), _group(graph, "b")
    assert not ga.prunable and "'odd' (Odd)" in ga.blocked_by[0] and "register_layer" in ga.blocked_by[0]
    assert gb.prunable
    cutters.register_layer(Odd, "pass")
    try:
        assert _group(ChannelGraph(keras.Model(inp, out)), "a").prunable
    finally:
        del cutters.CUTTERS[Odd]


def test_merges_subtract_multiply_average_maximum_couple_inputs():
    inp = keras.Input((4, 4, 2))
    convs = [L.Conv2D(6, 1, name=f"c{i}")(inp) for i in range(5)]
    m = L.Subtract()([convs[0], convs[1]])
    m = L.Multiply()([m, convs[2]])
    m = L.Average()([m, convs[3]])
    m = L.Maximum()([m, convs[4]])
    out = L.Dense(2, name="out")(L.Flatten()(m))
    graph = ChannelGraph(keras.Model(inp, out))
    g = _group(graph, "c0")
    assert set(g.producers) == {f"c{i}" for i in range(5)} and g.size == 6


def test_reshape_keeps_channel_axis_or_blocks():
    inp = keras.Input((4, 4, 3))
    a = L.Conv2D(8, 1, name="a")(inp)
    r = L.Reshape((16, 8), name="keep")(a)
    b = L.Conv1D(5, 1, name="b")(r)
    r2 = L.Reshape((5, 16), name="mangle")(b)
    out = L.Dense(2, name="out")(L.Flatten()(r2))
    graph = ChannelGraph(keras.Model(inp, out))
    assert _group(graph, "a").prunable
    assert not _group(graph, "b").prunable and "'mangle'" in _group(graph, "b").blocked_by[0]


def test_softmax_output_fixes_its_channels_without_blocking_inputs():
    inp = keras.Input((6, 6, 2))
    a = L.Conv2D(8, 3, name="a")(inp)
    h = L.Dense(6, activation="softmax", name="h")(L.GlobalAveragePooling2D()(a))
    out = L.Activation("relu", name="act")(L.Dense(3, name="out")(h))
    graph = ChannelGraph(keras.Model(inp, out))
    assert _group(graph, "a").prunable
    assert not _group(graph, "h").prunable and "softmax" in _group(graph, "h").details()
