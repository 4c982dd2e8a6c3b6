"""tfcompress.tflite.runtime: float in / float out over float32, int8, fixed-batch and external files."""
import numpy as np
import pytest

from test_tflite_reader import build_models, external_copy
from tfcompress.errors import InputError
from tfcompress.tflite import reader, runtime


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return build_models(str(tmp_path_factory.mktemp("tflite")))


@pytest.fixture(scope="session")
def expected(models):
    return models["keras"].predict(models["x"], verbose=0)


def test_runtime_name():
    assert runtime.runtime_name() == "ai_edge_litert"


def test_float32_matches_keras(models, expected):
    y = runtime.run(models["float32"], models["x"], batch=16)
    assert y.shape == (64, 10) and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, atol=1e-4)


@pytest.mark.parametrize("mode,tol", [("int8", 0.1), ("dynamic", 0.05), ("float16", 0.01)])
def test_quantized_files_close_to_keras(models, expected, mode, tol):
    y = runtime.run(models[mode], models["x"])
    assert y.dtype == np.float32
    assert np.abs(y - expected).max() < tol * max(1.0, np.abs(expected).max())
    assert (y.argmax(1) == expected.argmax(1)).mean() > 0.9


def test_fixed_batch_runs_sample_by_sample(models, expected):
    model = reader.read(models["fixed1"])
    assert model.inputs[0].shape_signature[0] == 1
    it = runtime.Interpreter(models["fixed1"])
    assert not it.resize(8)
    y = runtime.run(it, models["x"][:7], batch=4)
    np.testing.assert_allclose(y, expected[:7], atol=1e-4)


def test_uneven_tail_and_bytes_input(models, expected):
    data = open(models["float32"], "rb").read()
    y = runtime.run(data, models["x"][:13], batch=5)
    np.testing.assert_allclose(y, expected[:13], atol=1e-4)


def test_external_buffers_run(models, expected, tmp_path):
    path, _ = external_copy(models["float32"], str(tmp_path))
    np.testing.assert_allclose(runtime.run(path, models["x"][:4]), expected[:4], atol=1e-4)


def test_intermediates_dequantized(models):
    x = models["x"][:1]
    f32 = runtime.Interpreter(models["float32"], preserve_all_tensors=True)
    i8 = runtime.Interpreter(models["int8"], preserve_all_tensors=True)
    f32.invoke_float([x])
    i8.invoke_float([x])
    mf, mi = reader.read(models["float32"]), reader.read(models["int8"])
    # the Dense(32) + ReLU output: the output of the first FULLY_CONNECTED in both files
    tf_ = next(outs[0] for op, outs in reader.op_outputs(mf) if op.op == "FULLY_CONNECTED")
    ti = next(outs[0] for op, outs in reader.op_outputs(mi) if op.op == "FULLY_CONNECTED")
    a, b = f32.get_tensor(tf_.index), i8.get_tensor(ti.index)
    assert a.shape == b.shape == (1, 32) and b.dtype == np.float32
    assert np.abs(a - b).max() < 4 * ti.scale[0] + 0.02 * np.abs(a).max()
    assert i8.get_tensor(ti.index, dequantize_=False).dtype == np.int8


def test_quantize_dequantize_units():
    d8 = {"dtype": np.uint8, "quantization": (0.5, 10)}
    np.testing.assert_array_equal(runtime.quantize([0.0, 1.0, 200.0, -9.0], d8), [10, 12, 255, 0])
    d16 = {"dtype": np.int16, "quantization": (0.001, 0)}
    np.testing.assert_array_equal(runtime.quantize([0.5, -40.0], d16), [500, -32768])
    per_channel = {"quantization": (0.0, 0), "quantization_parameters": {
        "scales": np.array([0.1, 1.0]), "zero_points": np.array([0, 1]), "quantized_dimension": 1}}
    np.testing.assert_allclose(runtime.dequantize(np.array([[10, 3]], np.int8), per_channel), [[1.0, 2.0]])
    assert runtime.dequantize(np.array([1.5], np.float32), {"quantization": (0.0, 0)}).dtype == np.float32


def test_missing_file(tmp_path):
    with pytest.raises(InputError):
        runtime.Interpreter(str(tmp_path / "nope.tflite"))
    (tmp_path / "junk.tflite").write_bytes(b"0123456789abcdef" * 8)
    with pytest.raises(InputError):
        runtime.Interpreter(str(tmp_path / "junk.tflite"))
