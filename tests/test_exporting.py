"""Post-training int8 export: every ReLU6 form pinned, integer-only, I/O types, accuracy on digits."""
import os

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras, tf
from tfcompress.errors import ConversionError, InputError
from tfcompress.tflite import reader, runtime

L = keras.layers
SCALE = 6.0 / 255.0


def sequential_forms():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(8, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(6.0),   # after BN, fused
        L.Conv2D(8, 3, padding="same"), L.ReLU(max_value=6),
        L.Conv2D(8, 1, activation="relu6"),
        L.DepthwiseConv2D(3, padding="same", activation=tf.nn.relu6),
        L.Conv2D(8, 1), L.Activation("relu6"),
        L.Conv2D(8, 1), L.BatchNormalization(), L.Activation(tf.nn.relu6),
        L.MaxPooling2D(), L.ReLU(6.0),                                                          # not fusable
        L.Flatten(), L.Dense(16, activation="relu6"), L.Dense(10)])


def residual_forms():
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    y = L.Conv2D(8, 1, activation="relu6")(x)                       # ReLU6 before the add
    y = L.DepthwiseConv2D(3, padding="same", activation=tf.nn.relu6)(y)
    x = L.Add()([x, y])
    x = L.Activation("relu6")(x)                                    # ReLU6 after the add
    z = L.Conv2D(8, 1)(x)
    z = L.BatchNormalization()(z)
    z = L.ReLU(max_value=6)(z)
    x = L.Add()([x, z])
    x = L.Conv2D(16, 1, activation=tf.nn.relu6)(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10)(x))


EXPECTED = {"sequential": (sequential_forms, 8), "residual": (residual_forms, 6)}


def rep(n=64, seed=0):
    return np.random.RandomState(seed).rand(n, 8, 8, 1).astype(np.float32)


def randomize_bn(model, seed=0):
    """Non-trivial BatchNorm statistics, so each ReLU6 sees a different calibrated range."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.2, 3, g.shape), rng.normal(0, 1, b.shape),
                               rng.normal(0, 0.3, m.shape), rng.uniform(0.1, 2, v.shape)])
    return model


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_every_relu6_form_is_pinned(kind, tmp_path):
    build, count = EXPECTED[kind]
    keras.utils.set_random_seed(1)
    model = randomize_bn(build())
    path = tmp_path / "m.tflite"
    report = tfc.export(model, path, representative_data=rep())
    assert len(report.relu6) == count, report.relu6
    assert report.relu6_all_pinned
    assert report.float_ops == [] and report.input_dtype == "int8" and report.output_dtype == "int8"
    # read the file back independently
    m = reader.read(str(path))
    for entry in report.relu6:
        t = reader.tensor_by_name(m, entry["tensor"])
        assert t.dtype == "int8"
        assert abs(float(t.scale[0]) - SCALE) <= 1e-6 * SCALE and int(t.zero_point[0]) == -128
    # the file runs
    assert runtime.run(str(path), rep(4)).shape == (4, 10)


def test_unpinned_relu6_ranges_come_from_calibration(tmp_path):
    keras.utils.set_random_seed(1)
    model = randomize_bn(residual_forms())
    report = tfc.export(model, tmp_path / "m.tflite", representative_data=rep(), relu6_fixed_range=False)
    assert len(report.relu6) == 6 and not report.relu6_fixed_range
    assert sum(r["pinned"] for r in report.relu6) < len(report.relu6)


@pytest.mark.parametrize("io,dtype", [("uint8", "uint8"), ("float32", "float32")])
def test_input_output_types(io, dtype, tmp_path):
    report = tfc.export(residual_forms(), tmp_path / "m.tflite", representative_data=rep(), input_type=io,
                        output_type=io)
    assert report.input_dtype == dtype and report.output_dtype == dtype and report.relu6_all_pinned
    assert report.float_ops == []


def test_op_without_int8_kernel_names_layer_and_op(tmp_path):
    inp = keras.Input((8,))
    x = L.Dense(8, name="dense_in")(inp)
    x = L.Lambda(tf.math.floor, name="floor_layer")(x)
    model = keras.Model(inp, L.Dense(3)(x))
    out = tmp_path / "m.tflite"
    with pytest.raises(ConversionError, match=r"floor_layer.*FLOOR"):
        tfc.export(model, out, representative_data=np.random.rand(16, 8).astype(np.float32))
    assert not out.exists() and os.listdir(tmp_path) == []


def test_bad_arguments(tmp_path):
    model = residual_forms()
    with pytest.raises(InputError, match="mode"):
        tfc.export(model, tmp_path / "m.tflite", mode="int4", representative_data=rep())
    with pytest.raises(InputError, match="representative_data"):
        tfc.export(model, tmp_path / "m.tflite")
    with pytest.raises(InputError, match="folder"):
        tfc.export(model, tmp_path / "missing" / "m.tflite", representative_data=rep())
    with pytest.raises(InputError, match="input type"):
        tfc.export(model, tmp_path / "m.tflite", representative_data=rep(), input_type="int16")
    assert os.listdir(tmp_path) == []


def test_broken_converter_internals_give_a_clear_error(monkeypatch, tmp_path):
    import importlib
    convert = importlib.import_module("tensorflow.lite.python.convert")
    monkeypatch.delattr(convert, "mlir_quantize")
    with pytest.raises(ConversionError, match="relu6_fixed_range=False"):
        tfc.export(residual_forms(), tmp_path / "m.tflite", representative_data=rep())


def test_int8_accuracy_on_digits(digits, tmp_path):
    (x, y), (xt, yt) = digits
    keras.utils.set_random_seed(0)
    model = tfc.models.mobilenet_v2_small(input_shape=(8, 8, 1))
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=12, batch_size=32, verbose=0)
    report = tfc.export(model, tmp_path / "m.tflite", representative_data=x[:256], eval_data=(xt, yt))
    assert report.float_accuracy > 0.9
    assert abs(report.tflite_accuracy - report.float_accuracy) <= 0.01
    assert report.agreement >= 0.98
    assert report.relu6_all_pinned and len(report.relu6) == 13
