"""prune_channels: exactness against zeroed consumers, FLOP reduction, channel counts, masks in fit."""
import warnings

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras, tf
from tfcompress.analysis import flops
from tfcompress.errors import InputError
from tfcompress.models import mobilenet_v2_small
from tfcompress.pruning.channels import plan_and_prune, zeroed_reference as zero_consumer_rows
from test_pruning_graph import randomize, toy_resnet

L = keras.layers


def _x(shape, n=8, seed=1):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


@pytest.fixture(scope="module")
def toy():
    return randomize(toy_resnet())


@pytest.fixture(scope="module")
def mobilenet():
    return randomize(mobilenet_v2_small())


@pytest.mark.parametrize("round_to", [None, 8])
def test_toy_resnet_removal_equals_zeroing(toy, round_to):
    x = _x((8, 8, 3))
    r = plan_and_prune(toy, 0.5, round_to=round_to)
    expected = zero_consumer_rows(toy, r.removed)(x).numpy()
    assert np.abs(expected).max() > 0.5
    assert np.abs(r.model(x).numpy() - expected).max() <= 1e-5
    # A true check: zeroing other channels than the removed ones gives different outputs.
    other = {c + 1 for c in r.removed} - r.removed
    assert np.abs(zero_consumer_rows(toy, other)(x).numpy() - expected).max() > 1e-2
    assert flops(r.model) <= 0.55 * flops(toy)


def test_mobilenet_removal_equals_zeroing_and_halves_flops(mobilenet):
    x = _x((16, 16, 1))
    r = plan_and_prune(mobilenet, 0.5, round_to=8)
    expected = zero_consumer_rows(mobilenet, r.removed)(x).numpy()
    assert np.abs(r.model(x).numpy() - expected).max() <= 1e-5
    assert flops(r.model) <= 0.55 * flops(mobilenet)
    assert r.model.get_layer("stem").filters == 16 and r.model.get_layer("head").filters == 64
    assert r.model.get_layer("block1_expand").filters == 32  # 16 * 4 -> 32
    assert r.model.output_shape == (None, 10) and r.model.input_shape == (None, 16, 16, 1)


def test_keep_residual_prunes_inside_the_blocks_only(mobilenet):
    x = _x((16, 16, 1))
    r = plan_and_prune(mobilenet, 0.5, round_to=8, keep_residual=True)
    assert np.abs(r.model(x).numpy() - zero_consumer_rows(mobilenet, r.removed)(x).numpy()).max() <= 1e-5
    for add in ("block2_add", "block4_add"):  # the residual streams keep every channel
        assert r.model.get_layer(add).output_shape == mobilenet.get_layer(add).output_shape
    assert r.model.get_layer("block4_dw").output_shape[-1] == 64  # 128 expansion channels -> 64
    assert r.model.get_layer("block0_project").filters == 8  # a bottleneck outside any residual still prunes
    assert flops(r.model) <= 0.55 * flops(mobilenet)
    masked = tfc.prune_channels(mobilenet, tfc.ConstantSparsity(0.5, begin_step=0), keep_residual=True)
    names = {layer.name for layer in masked.layers}
    assert "block4_dw_relu6_chmask" in names and "block0_project_bn_chmask" in names
    assert "block1_project_bn_chmask" not in names and "block3_project_bn_chmask" not in names  # streams


def test_channel_counts_and_round_to(toy):
    small = tfc.prune_channels(toy, 0.5)
    assert small.get_layer("stem_conv").filters == 8 and small.get_layer("b1b_conv").filters == 8
    assert small.get_layer("b2_dw").output_shape[-1] == 12 and small.get_layer("logits").units == 10
    assert small.get_layer("flat_fc").kernel.shape == (32, 6)  # 2x2 positions x 8 kept channels
    rounded = tfc.prune_channels(toy, 0.5, round_to=8)
    assert rounded.get_layer("b2_proj").filters == 16  # 24 -> 12 -> nearest multiple of 8
    assert rounded.get_layer("cat_a").filters == 8  # never below round_to
    assert tfc.analysis.params(small) < 0.4 * tfc.analysis.params(toy)


def test_dict_ratio_and_skip(toy):
    small = tfc.prune_channels(toy, {"b2a_conv": 0.75})
    assert small.get_layer("b2a_conv").filters == 6 and small.get_layer("stem_conv").filters == 16
    small = tfc.prune_channels(toy, 0.5, skip=["b1a_conv"])
    assert small.get_layer("b1a_conv").filters == 16 and small.get_layer("stem_conv").filters == 8
    with pytest.raises(InputError, match="nope"):
        tfc.prune_channels(toy, {"nope": 0.5})


@pytest.mark.parametrize("ratio", [1.0, -0.1, "half", True])
def test_bad_ratio(toy, ratio):
    with pytest.raises(InputError, match="ratio"):
        tfc.prune_channels(toy, ratio)


def test_bad_criterion_and_missing_data(toy):
    with pytest.raises(InputError, match="unknown criterion"):
        tfc.prune_channels(toy, 0.5, criterion="l3")
    with pytest.raises(InputError, match="needs data"):
        tfc.prune_channels(toy, 0.5, criterion="taylor")


def test_unknown_layer_named_and_rest_prunes():
    class Odd(L.Layer):
        def call(self, x):
            return tf.sin(x)

    inp = keras.Input((6, 6, 2))
    a = L.Conv2D(8, 3, name="a")(inp)
    b = L.Conv2D(8, 3, name="b")(Odd(name="odd")(a))
    c = L.Conv2D(8, 1, name="c")(b)
    out = L.Dense(3, name="out")(L.GlobalAveragePooling2D()(c))
    model = keras.Model(inp, out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small = tfc.prune_channels(model, 0.5)
    messages = [str(w.message) for w in caught]
    assert any("'odd' (Odd)" in m and "group" in m for m in messages)
    assert small.get_layer("a").filters == 8
    assert small.get_layer("b").filters == 4 and small.get_layer("c").filters == 4


def test_sequential_model_prunes():
    model = keras.Sequential([keras.Input((10,)), L.Dense(16, activation="relu"), L.Dense(4)])
    small = tfc.prune_channels(model, 0.25)
    assert small.layers[-2].units == 12 and small.output_shape == (None, 4)


def test_shrunk_model_exports_to_tflite(toy):
    small = tfc.prune_channels(toy, 0.5, round_to=8)
    x = _x((8, 8, 3), n=16)
    conv = tf.lite.TFLiteConverter.from_keras_model(small)
    assert len(conv.convert()) > 1000
    conv = tf.lite.TFLiteConverter.from_keras_model(small)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    assert len(conv.convert()) > 1000


def test_masks_in_fit_then_strip(tmp_path):
    model = randomize(toy_resnet())
    masked = tfc.prune_channels(model, tfc.ConstantSparsity(0.5, begin_step=1, frequency=1))
    x, y = _x((8, 8, 3), n=16), np.arange(16) % 10
    assert np.abs(masked(x).numpy() - model(x).numpy()).max() <= 1e-5  # masks start open
    masked.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(tf.errors.InvalidArgumentError, match="CompressionCallback"):
        masked.fit(x, y, batch_size=8, epochs=1, verbose=0)
    masked.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[tfc.CompressionCallback()])
    mask = masked.get_layer("b1_out_chmask").mask.numpy()
    assert mask.sum() == 8
    path = str(tmp_path / "masked.keras")
    masked.save(path)
    from tfcompress.pruning.channels import CUSTOM_OBJECTS
    loaded = keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
    assert loaded.get_layer("b1_out_chmask").mask.numpy().sum() == 8
    assert loaded.get_layer("b1_out_chmask").spec["criterion"] == "l1"
    small = tfc.strip(masked)
    assert not any("chmask" in layer.name for layer in small.layers)
    assert np.abs(tfc.strip(loaded)(x).numpy() - small(x).numpy()).max() <= 1e-6
    assert small.get_layer("stem_conv").filters == 8 and small.get_layer("b2a_conv").filters == 12
    assert np.abs(small(x).numpy() - masked(x).numpy()).max() <= 1e-5


def test_separable_transpose_conv1d_and_squeeze_excite_remove_exactly():
    inp = keras.Input((8, 8, 3))
    x = L.SeparableConv2D(12, 3, padding="same", depth_multiplier=2, name="sep")(inp)
    x = L.BatchNormalization(name="sep_bn")(x)
    se = L.Dense(12, activation="sigmoid", name="se_fc")(L.GlobalAveragePooling2D()(x))
    x = L.Multiply(name="se")([x, L.Reshape((1, 1, 12), name="se_r")(se)])
    x = L.Conv2DTranspose(10, 2, strides=2, name="up")(x)
    x = L.Reshape((256, 10), name="seq")(L.ReLU()(x))
    x = L.Conv1D(6, 3, name="c1d")(x)
    out = L.Dense(4, name="out")(L.GlobalAveragePooling1D()(x))
    model = randomize(keras.Model(inp, out))
    xs = _x((8, 8, 3))
    r = plan_and_prune(model, 0.5)
    small = r.model
    assert small.get_layer("sep").filters == 6 and small.get_layer("se_fc").units == 6
    assert small.get_layer("up").filters == 5 and small.get_layer("c1d").filters == 3
    assert small.get_layer("seq").output_shape == (None, 256, 5)
    expected = zero_consumer_rows(model, r.removed)(xs).numpy()
    assert np.abs(small(xs).numpy() - expected).max() <= 1e-5


def test_global_ranking_takes_channels_where_scores_are_lowest():
    model = randomize(toy_resnet())
    bn = model.get_layer("b2a_bn")  # group of b2a_conv: 24 channels; make 20 of them nearly dead
    g, b, m, v = bn.get_weights()
    g[:20] = 1e-3
    bn.set_weights([g, b, m, v])
    uniform = plan_and_prune(model, 0.25, criterion="bn_gamma")
    ranked = plan_and_prune(model, 0.25, criterion="bn_gamma", global_ranking=True)
    assert len(ranked.removed) == len(uniform.removed)
    assert uniform.model.get_layer("b2a_conv").filters == 18
    assert ranked.model.get_layer("b2a_conv").filters == 3  # the 20 dead ones and more, down to the 10 % floor
