"""tfc.quantize: ReLU6 forms pinned to [0, 6], Conv+BN+ReLU6 fold, residual Add / Concatenate, skip,
custom layers, sparsity preserved through QAT into the int8 file, QAT vs PTQ accuracy.

Small models and short trainings; the full reference-model acceptance (MobileNetV2-style at 16x16)
runs with TFCOMPRESS_SLOW_TESTS=1.
"""
import os

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress import data, models
from tfcompress._tf import keras, tf
from tfcompress.quantization import QuantizeWrapper, float_model, register_quantize_config
from tfcompress.tflite import reader

L = keras.layers
SCALE = 6.0 / 255.0
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def digits(side=8):
    x, y = data.load("digits", "train")
    xt, yt = data.load("digits", "test")
    if side != 8:
        x, _ = data.fit_to_input(x, (None, side, side, 1))
        xt, _ = data.fit_to_input(xt, (None, side, side, 1))
    return x, y, xt, yt


def fit(model, x, y, epochs, lr):
    model.compile(keras.optimizers.Adam(lr), LOSS, metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def fast_bn(model):
    # digits has ~40 steps an epoch: a 0.99 moving average would still be far from the data's statistics
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.momentum = 0.9
    return model


def all_forms():
    """Every ReLU6 form, fused into Conv+BN or not, before and after residual adds, into a concat."""
    inp = keras.Input((8, 8, 1))
    a = L.Conv2D(8, 3, padding="same", activation="relu6", name="c1")(inp)
    b = L.Conv2D(8, 1, use_bias=False, name="c2")(a)
    b = L.BatchNormalization(name="bn2")(b)
    b = L.Activation("relu6", name="a2")(b)
    r3 = L.ReLU(max_value=6, name="r3")(L.Add(name="add1")([a, b]))
    d = L.DepthwiseConv2D(3, padding="same", activation=tf.nn.relu6, name="dw")(r3)
    e = L.Conv2D(8, 1, use_bias=False, name="c3")(d)
    e = L.BatchNormalization(name="bn3")(e)
    e = L.ReLU(6.0, name="r4")(e)
    f = tf.nn.relu6(L.Add(name="add2")([r3, e]))
    g = L.Concatenate(name="cat")([f, r3])
    g = L.GlobalAveragePooling2D(name="pool")(g)
    g = L.Dense(16, activation="relu6", name="d1")(g)
    g = L.Dense(16, name="d2")(g)
    g = L.Activation(tf.nn.relu6, name="a3")(g)
    return keras.Model(inp, L.Dense(10, name="out")(g), name="forms")


def sequential_forms():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(8, 3, padding="same", use_bias=False, name="c1"),
        L.BatchNormalization(name="bn1"),
        L.ReLU(6.0, name="r1"),
        L.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw"),
        L.Conv2D(8, 1, activation=tf.nn.relu6, name="c2"),
        L.Flatten(name="flat"),
        L.Dense(16, name="d1"),
        L.Activation("relu6", name="a1"),
        L.Dense(10, name="out")], name="seq_forms")


def qat_kernel(qat, name):
    """The float kernel variable under a QAT wrapper (the wrapper owns it; `layer.kernel` is the
    fake-quantized tensor)."""
    found = [v.numpy() for v in qat.weights if v.name == f"{name}/kernel:0"]
    assert len(found) == 1, name
    return found[0]


def assert_pinned(report, expected):
    assert len(report.relu6) == expected, [r["tensor"] for r in report.relu6]
    for r in report.relu6:
        assert r["scale"] == pytest.approx(SCALE, rel=1e-6), r["tensor"]
        assert r["zero_point"] == -128, r["tensor"]


@pytest.fixture(scope="module")
def train8():
    return digits(8)


@pytest.mark.parametrize("build,relu6_count", [(all_forms, 8), (sequential_forms, 4)])
def test_every_relu6_form_is_exported_at_scale_6_over_255(tmp_path, train8, build, relu6_count):
    x, y, xt, yt = train8
    keras.utils.set_random_seed(1)
    qat = fit(tfc.quantize(build()), x[:256], y[:256], 1, 1e-3)
    report = tfc.export(qat, tmp_path / "m.tflite", eval_data=(xt[:64], yt[:64]), layer_samples=0)
    assert_pinned(report, relu6_count)
    # Conv+BN+ReLU6 and Add+ReLU6 fold into one op each: no standalone RELU6, no BN arithmetic left
    assert not {"RELU6", "MUL", "QUANTIZE", "DEQUANTIZE"} & set(report.op_counts)
    assert report.float_ops == []
    assert report.input_dtype == "int8" and report.output_dtype == "int8"
    assert report.max_abs_diff <= 0.1            # QAT model vs its int8 file: about one output step
    # every ReLU6 form became a ReLU(6) wrapped with the fixed [0, 6] quantizer
    relu6_wrappers = [l for l in qat.layers if isinstance(l, QuantizeWrapper)
                      and type(l.quantize_config).__name__ == "ReLU6QuantizeConfig"]
    assert len(relu6_wrappers) >= relu6_count


def test_strip_keeps_quantize_wrappers_and_outputs(train8):
    x = train8[0][:16]
    qat = tfc.quantize(sequential_forms())
    stripped = tfc.strip(qat)
    assert sum(isinstance(l, QuantizeWrapper) for l in stripped.layers) == \
        sum(isinstance(l, QuantizeWrapper) for l in qat.layers) > 0
    np.testing.assert_allclose(stripped.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)


def test_float_model_has_the_trained_weights(train8):
    x = train8[0][:16]
    keras.utils.set_random_seed(2)
    qat = fit(tfc.quantize(all_forms()), train8[0][:128], train8[1][:128], 1, 1e-3)
    plain = float_model(qat)
    assert not any(isinstance(l, QuantizeWrapper) for l in plain.layers)
    np.testing.assert_array_equal(plain.get_layer("c2").kernel.numpy(), qat_kernel(qat, "c2"))
    # fake quantization is the only difference: outputs agree to a few int8 steps
    diff = np.abs(plain.predict(x, verbose=0) - qat.predict(x, verbose=0)).max()
    assert diff < 0.5


def test_skip_keeps_named_layers_float(tmp_path, train8):
    x, y, xt, yt = train8
    keras.utils.set_random_seed(3)
    qat = fit(tfc.quantize(sequential_forms(), skip=["out"]), x[:256], y[:256], 1, 1e-3)
    assert not isinstance(qat.get_layer("out"), QuantizeWrapper)
    report = tfc.export(qat, tmp_path / "skip.tflite", eval_data=(xt[:64], yt[:64]), layer_samples=0)
    m = reader.read(tmp_path / "skip.tflite")
    fcs = [op for op in m.operators() if op.op == "FULLY_CONNECTED"]
    dtypes = sorted(m.main.tensors[op.outputs[0]].dtype for op in fcs)
    assert dtypes == ["float32", "int8"]        # d1 int8, out float
    assert any("kept float" in n and "out" in n for n in report.notes)
    assert report.max_abs_diff <= 0.1


def test_unknown_names_and_unsupported_layers_are_named():
    with pytest.raises(tfc.InputError, match="no layer named 'nope'"):
        tfc.quantize(sequential_forms(), skip=["nope"])

    class Scale(L.Layer):
        def call(self, x):
            return x * 2.0

    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2, name="d")(Scale(name="twice")(L.Dense(4, name="d0")(inp))))
    with pytest.raises(tfc.UnsupportedModelError, match=r"twice \(Scale\).*register_quantize_config.*skip=\['twice'\]"):
        tfc.quantize(model)
    # registering an (output-only) config makes it quantizable
    register_quantize_config(Scale, lambda layer: tfc.quantization.OutputQuantizeConfig())
    qat = tfc.quantize(model)
    assert isinstance(qat.get_layer("quant_twice"), QuantizeWrapper)
    # skipped, it computes in float; tfmot still learns its output range for the quantized layer after it
    skipped = tfc.quantize(model, skip=["twice"]).get_layer("quant_twice")
    assert type(skipped.quantize_config).__name__ == "OutputOnlyConfig"


# -- pruning-preserving QAT -----------------------------------------------------------------------------

def pqat_model():
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(6.0, name="relu")(x)
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu6", name="conv2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(64, activation="relu6", name="fc")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="pqat")


PRUNED = ("conv", "conv2", "fc", "logits")


def tflite_kernel(m, layer, keras_shape):
    """The int8 weights of `layer` in TFLite layout, back in Keras layout."""
    n = int(np.prod(keras_shape))
    found = [t for t in m.main.tensors if t.is_constant and t.dtype == "int8" and t.size == n and len(t.shape) >= 2
             and any(p in (f"quant_{layer}", layer) for part in t.name.split(";") for p in part.split("/"))]
    assert len(found) == 1, (layer, [t.name for t in m.main.tensors if t.is_constant])
    t = found[0]
    q = t.data().astype(np.int32) - t._broadcast(t.zero_point).astype(np.int32)
    if len(keras_shape) == 4:       # TFLite OHWI -> Keras HWIO
        return q.transpose(1, 2, 3, 0)
    return q.T                      # TFLite (out, in) -> Keras (in, out)


@pytest.fixture(scope="module")
def pruned(train8):
    x, y, _, _ = train8
    keras.utils.set_random_seed(4)
    base = fast_bn(fit(pqat_model(), x, y, 3, 2e-3))
    wrapped = tfc.prune(base, tfc.ConstantSparsity(0.6, begin_step=0, frequency=10))
    wrapped.compile(keras.optimizers.Adam(1e-3), LOSS)
    wrapped.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[tfc.CompressionCallback()])
    return wrapped


def test_pruned_zeros_survive_qat_strip_and_int8(tmp_path, train8, pruned):
    x, y, xt, yt = train8
    stripped = tfc.strip(pruned)
    before = {n: stripped.get_layer(n).kernel.numpy() == 0 for n in PRUNED}
    for n in PRUNED:
        assert before[n].mean() == pytest.approx(0.6, abs=0.01)
    qat = tfc.quantize(stripped)
    fit(qat, x, y, 2, 1e-3)       # a high rate: unprotected zeros would drift
    after = float_model(qat)
    kept = tfc.strip(qat)
    assert any(isinstance(l, QuantizeWrapper) for l in kept.layers)
    path = tmp_path / "pqat.tflite"
    report = tfc.export(kept, path, eval_data=(xt, yt), layer_samples=0)
    m = reader.read(path)
    for n in PRUNED:
        np.testing.assert_array_equal(after.get_layer(n).kernel.numpy() == 0, before[n], err_msg=n)
        assert int(np.sum(qat_kernel(kept, n) == 0)) == int(before[n].sum())
        q = tflite_kernel(m, n, before[n].shape)
        np.testing.assert_array_equal(q == 0, before[n], err_msg=f"{n} in the int8 file")
    assert report.tflite_accuracy >= 0.85


def test_quantize_accepts_the_still_wrapped_pruned_model(pruned):
    stripped = tfc.strip(pruned)
    qat = tfc.quantize(pruned)          # strips the pruning wrappers itself, preserving sparsity
    for n in PRUNED:
        w = qat.get_layer(f"quant_{n}")
        masks = [v for v in w.weights if "sparsity_mask" in v.name]
        assert len(masks) == 1, n
        np.testing.assert_array_equal(masks[0].numpy() == 0, stripped.get_layer(n).kernel.numpy() == 0)


def test_prune_and_qat_in_one_fit(tmp_path, train8):
    from tfcompress.errors import InputError
    from tfcompress.quantization.sparsify import sparsity as qat_sparsity
    x, y, xt, yt = train8
    keras.utils.set_random_seed(5)
    pruning = tfc.prune(pqat_model(), tfc.PolynomialDecay(0.5, end_step=20, frequency=5))
    with pytest.raises(InputError, match="preserve_sparsity"):
        tfc.quantize(pruning, preserve_sparsity=False)
    qat = tfc.quantize(pruning)        # the schedule goes on under the QAT wrappers
    qat.compile(keras.optimizers.Adam(1e-3), LOSS)
    with pytest.raises(tf.errors.InvalidArgumentError, match="CompressionCallback"):
        qat.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)
    qat.fit(x[:960], y[:960], epochs=1, batch_size=32, verbose=0, callbacks=[tfc.CompressionCallback()])
    path = tmp_path / "pruned_qat.tflite"
    tfc.export(tfc.strip(qat), path, layer_samples=0)
    m = reader.read(path)
    plain = float_model(qat)
    for n in PRUNED:
        keras_zeros = plain.get_layer(n).kernel.numpy() == 0
        assert qat_sparsity(qat.get_layer(f"quant_{n}")) == pytest.approx(0.5, abs=0.01), n
        assert keras_zeros.mean() == pytest.approx(0.5, abs=0.01), n
        q = tflite_kernel(m, n, keras_zeros.shape)
        assert (q == 0).mean() == pytest.approx(0.5, abs=0.01), f"{n} in the int8 file"
        np.testing.assert_array_equal(q == 0, keras_zeros, err_msg=n)


def test_saved_qat_model_keeps_its_masks(tmp_path, pruned):
    qat = tfc.quantize(pruned)
    qat.save(tmp_path / "qat.h5")   # tfmot QAT models do not round-trip through .keras
    loaded = tfc.load_model(tmp_path / "qat.h5")
    for n in PRUNED:
        a = [v.numpy() for v in qat.get_layer(f"quant_{n}").weights if "sparsity_mask" in v.name][0]
        b = [v.numpy() for v in loaded.get_layer(f"quant_{n}").weights if "sparsity_mask" in v.name][0]
        np.testing.assert_array_equal(a, b)
    # the float counterpart finds the weights of a reloaded model too (its variables are named differently)
    for n in PRUNED:
        np.testing.assert_array_equal(float_model(loaded).get_layer(n).kernel.numpy(),
                                      float_model(qat).get_layer(n).kernel.numpy())


# -- accuracy: QAT vs PTQ vs float --------------------------------------------------------------------

def _qat_vs_ptq(tmp_path, build, side, epochs, qat_epochs):
    x, y, xt, yt = digits(side)
    keras.utils.set_random_seed(0)
    model = fit(fast_bn(build()), x, y, epochs, 2e-3)
    float_acc = float(np.mean(model.predict(xt, verbose=0).argmax(1) == yt))
    ptq = tfc.export(model, tmp_path / "ptq.tflite", representative_data=x[:256], eval_data=(xt, yt),
                     layer_samples=0)
    qat = fit(tfc.quantize(model), x, y, qat_epochs, 1e-4)
    report = tfc.export(qat, tmp_path / "qat.tflite", eval_data=(xt, yt), layer_samples=0)
    print(f"\n{build.__name__}: float {float_acc:.4f}, PTQ int8 {ptq.tflite_accuracy:.4f}, "
          f"QAT int8 {report.tflite_accuracy:.4f}, ReLU6 pinned {sum(r['pinned'] for r in report.relu6)}/"
          f"{len(report.relu6)}")
    return float_acc, ptq, report


def test_qat_int8_matches_float_and_beats_ptq_small_reference(tmp_path):
    small = lambda: models.mobilenet_v2_small(input_shape=(8, 8, 1), width=16, head=64,  # noqa: E731
                                              blocks=((1, 16, 1), (4, 24, 2), (4, 24, 1)))
    float_acc, ptq, qat = _qat_vs_ptq(tmp_path, small, 8, 8, 2)
    assert qat.tflite_accuracy >= ptq.tflite_accuracy
    assert qat.tflite_accuracy >= float_acc - 0.005
    assert_pinned(qat, 7)


@pytest.mark.skipif(os.environ.get("TFCOMPRESS_SLOW_TESTS") != "1", reason="minutes: TFCOMPRESS_SLOW_TESTS=1")
def test_qat_int8_matches_float_and_beats_ptq_reference(tmp_path):
    float_acc, ptq, qat = _qat_vs_ptq(tmp_path, models.mobilenet_v2_small, 16, 8, 2)
    assert qat.tflite_accuracy >= ptq.tflite_accuracy
    assert qat.tflite_accuracy >= float_acc - 0.005
    assert_pinned(qat, 13)
