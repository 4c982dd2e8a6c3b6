"""Every export mode for a float model and a QAT model: a runnable file, its size, and agreement."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress import data, models
from tfcompress._tf import keras
from tfcompress.tflite import reader, runtime

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
IN_DTYPE = {"float32": "float32", "float16": "float32", "dynamic": "float32", "int8": "int8", "int16x8": "int16"}


@pytest.fixture(scope="module")
def digits():
    x, y = data.load("digits", "train")
    xt, yt = data.load("digits", "test")
    return x.reshape(len(x), -1), y, xt.reshape(len(xt), -1), yt


@pytest.fixture(scope="module")
def trained(digits):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = models.lenet300(input_shape=(64,))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits, trained):
    x, _, xt, yt = digits
    out = tmp_path_factory.mktemp("modes")
    return {mode: tfc.export(trained, out / f"{mode}.tflite", mode=mode, representative_data=x[:128],
                             eval_data=(xt, yt), layer_samples=0) for mode in MODES}


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_runs_and_agrees(exported, digits, mode):
    _, _, xt, yt = digits
    r = exported[mode]
    m = reader.read(r.path)
    assert r.bytes == m.file_size
    assert m.input_dtypes == [IN_DTYPE[mode]]
    out = runtime.run(r.path, xt[:32])
    assert out.shape == (32, 10) and np.isfinite(out).all()
    assert r.eval_samples == len(xt)
    assert r.agreement >= (0.999 if mode in ("float32", "float16") else 0.97)
    assert r.tflite_accuracy >= r.float_accuracy - 0.02
    assert r.float_accuracy >= 0.9


def test_size_ratios(exported):
    f32 = exported["float32"].bytes
    assert 1.85 <= f32 / exported["float16"].bytes <= 2.05      # float16 weights: ~2x
    # int8 weights, but biases and tensors under 1024 values stay float32: 3.3x here
    assert 3.2 <= f32 / exported["dynamic"].bytes <= 4.05
    assert 3.0 <= f32 / exported["int8"].bytes <= 4.05           # int32 biases
    assert exported["float16"].op_counts.get("DEQUANTIZE", 0) >= 3    # float16 weights widened at load


def test_qat_model_exports_in_every_mode(tmp_path, digits, trained):
    x, y, xt, yt = digits
    qat = tfc.quantize(trained)
    qat.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=1, batch_size=32, verbose=0)
    sizes = {}
    for mode in MODES:
        r = tfc.export(qat, tmp_path / f"{mode}.tflite", mode=mode, representative_data=x[:128],
                       eval_data=(xt, yt), layer_samples=0)
        sizes[mode] = r.bytes
        assert reader.read(r.path).input_dtypes == [IN_DTYPE[mode]]
        assert r.agreement >= 0.97, mode
        assert r.tflite_accuracy >= 0.9, mode
        if mode != "int8":
            assert any("float weights" in n for n in r.notes)
    assert 3.0 <= sizes["float32"] / sizes["int8"] <= 4.05
    assert 1.85 <= sizes["float32"] / sizes["float16"] <= 2.05
