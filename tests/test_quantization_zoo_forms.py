"""The layer kinds of MobileNetV3 and EfficientNet under QAT and channel pruning: hard-swish written as
TensorFlow ops, squeeze-excite gates (Multiply), Rescaling, Normalization and fused swish."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras, tf
from tfcompress.pruning.channels import plan_and_prune, zeroed_reference
from tfcompress.quantization.op_forms import ConstantMath
from tfcompress.tflite import reader

L = keras.layers


def hard_swish(x):
    return L.Multiply()([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])   # MobileNetV3's own form


def zoo_like():
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inp)
    x = L.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0], name="norm")(x)
    x = L.BatchNormalization(name="stem_bn")(L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(x))
    x = hard_swish(x)
    se = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    se = L.Conv2D(4, 1, activation="swish", name="se_reduce")(se)
    se = L.Conv2D(16, 1, activation="sigmoid", name="se_expand")(se)
    x = L.Multiply(name="se_gate")([x, se])
    x = L.ReLU(6.0, name="r6")(L.BatchNormalization(name="bn2")(L.Conv2D(24, 3, padding="same", use_bias=False,
                                                                         name="conv2")(x)))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="zoo_like")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(64, 16, 16, 3)).astype(np.float32), rng.integers(0, 10, 64)


def test_qat_int8_integer_only_relu6_pinned(tmp_path, data):
    x, y = data
    m = zoo_like()
    qat = tfc.quantize(m)
    names = {l.name for l in qat.layers}
    assert {"quant_se_gate", "quant_rescale", "quant_norm", "quant_se_reduce_swish"} <= names
    np.testing.assert_allclose(tfc.quantization.float_model(qat)(x[:4]).numpy(), m(x[:4]).numpy(), atol=1e-4)
    qat.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "zoo.tflite"
    report = tfc.export(qat, path, layer_samples=0)
    assert report.float_ops == [] and reader.float_ops(reader.read(path)) == []
    assert len(report.relu6) == 2 and report.relu6_all_pinned   # hard-swish's ReLU6 and r6
    for r in report.relu6:
        assert r["scale"] == pytest.approx(6.0 / 255.0, rel=1e-6) and r["zero_point"] == -128


def test_scalar_ops_become_layers_with_the_same_math():
    from tfcompress.quantization.op_forms import canonicalize_ops
    m = zoo_like()
    new, added = canonicalize_ops(m)
    assert added == {"rescale_scale": "rescale", "norm_scale": "norm", "se_reduce_swish": "se_reduce",
                     "se_expand_sigmoid": "se_expand"}
    assert sum(isinstance(l, ConstantMath) for l in new.layers) == 6   # hard-swish's 2, rescale's 2, norm's 2
    assert new.get_layer("norm").get_weights()[0].shape == (3,)
    assert not any(type(l).__name__ == "TFOpLambda" for l in new.layers)
    x = np.random.default_rng(1).uniform(0, 255, size=(4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(new(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-5)


def test_channel_pruning_through_hard_swish_and_se(data):
    m = zoo_like()
    result = plan_and_prune(m, 0.5)
    small = result.model
    assert small.get_layer("stem").filters == 8 and small.get_layer("se_expand").filters == 8
    assert small.get_layer("se_reduce").filters == 2 and small.get_layer("conv2").filters == 12
    x = data[0][:8]
    ref, out = zeroed_reference(m, result.removed)(x).numpy(), small(x).numpy()
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    assert tfc.analysis.macs(small) < 0.5 * tfc.analysis.macs(m)


def test_separable_convolutions_quantize(tmp_path, data):
    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(inp)))
    x = L.BatchNormalization()(L.SeparableConv2D(16, 3, padding="same", use_bias=False, name="sep")(x))
    m = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(L.ReLU(6.0)(x))))
    report = tfc.export(tfc.quantize(m), tmp_path / "sep.tflite", layer_samples=0)
    assert report.float_ops == [] and "DEPTHWISE_CONV_2D" in report.op_counts
