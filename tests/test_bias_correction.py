"""Per-tensor weights in the int8 file, the simulated weight quantization equal to the file's, and bias
correction removing the mean output shift of a model built to have one."""
import numpy as np
import pytest

from tests.conftest import assert_one_line_error, call_cli
from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.exporting import export
from tfcompress.quantization.bias_correction import correct_biases, quantize_kernel
from tfcompress.quantization.equalize import fold_batchnorm
from tfcompress.tflite import reader
from tfcompress.tflite.runtime import run

L = keras.layers
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@pytest.fixture(scope="module")
def conv_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 1))
    y = L.ReLU()(L.BatchNormalization(name="bn1")(L.Conv2D(6, 3, use_bias=False, name="conv")(x)))
    y = L.ReLU()(L.BatchNormalization(name="bn2")(L.DepthwiseConv2D(3, name="dw")(y)))
    m = keras.Model(x, L.Dense(4, name="fc")(L.GlobalAveragePooling2D()(y)))
    rs = np.random.RandomState(1)
    for name in ("bn1", "bn2"):
        n = m.get_layer(name).gamma.shape[0]
        m.get_layer(name).set_weights([10 ** rs.uniform(-1, 1, n), rs.randn(n), rs.randn(n), rs.uniform(.5, 2, n)])
    return m


def _file_kernels(path):
    m = reader.read(path)
    return [(op.op, reader.op_inputs(m, op)[1]) for op in m.subgraphs[0].operators if op.op in WEIGHT_OPS]


def _as_file_layout(op, kernel):
    if op == "CONV_2D":
        return kernel.transpose(3, 0, 1, 2)
    if op == "DEPTHWISE_CONV_2D":
        return kernel.reshape(1, *kernel.shape[:2], -1)
    return kernel.T


@pytest.mark.parametrize("per_channel", [False, True])
def test_file_scales_and_simulated_quantization(tmp_path, conv_model, per_channel):
    x = np.random.RandomState(2).rand(32, 8, 8, 1).astype("float32")
    folded, _ = fold_batchnorm(conv_model)
    path = tmp_path / "m.tflite"
    export(folded, path, representative_data=x, per_channel=per_channel)
    kernels = _file_kernels(path)
    assert [op for op, _ in kernels] == list(WEIGHT_OPS)
    for (op, t), name in zip(kernels, ("conv", "dw", "fc")):
        assert len(t.scale) == (t.shape[0] if op != "DEPTHWISE_CONV_2D" else t.shape[-1]) if per_channel else 1
        q = _as_file_layout(op, quantize_kernel(folded.get_layer(name), per_channel))
        np.testing.assert_allclose(t.dequantized(), q, atol=1e-6)


def _needs_correction():
    """Dense layers whose weights lie 0.4 of a per-tensor quantization step off the grid, all the same
    way, reading positive inputs: per-tensor int8 moves every output mean by about -0.4 step * sum(x)."""
    rs = np.random.RandomState(0)
    x = keras.Input((32,))
    m = keras.Model(x, L.Dense(4, name="fc2")(L.Dense(16, activation="relu", name="fc1")(x)))
    k = 0.4 * (10.0 / 127) + 0.002 * rs.randn(32, 16)
    k[0, 0] = 10.0                                   # one large weight sets the tensor's scale
    m.get_layer("fc1").set_weights([k, np.zeros(16)])
    m.get_layer("fc2").set_weights([rs.randn(16, 4) * 0.3, np.zeros(4)])
    return m, rs.rand(256, 32).astype("float32")


def test_bias_correction_reduces_output_mean_error(tmp_path):
    m, x = _needs_correction()
    want = m.predict(x, verbose=0)
    errors = {}
    for bc in (False, True):
        path = tmp_path / f"bc{bc}.tflite"
        report = export(m, path, representative_data=x, per_channel=False, bias_correction=bc)
        errors[bc] = float(np.abs((run(str(path), x) - want).mean(0)).mean())
    assert errors[False] > 0.2 and errors[True] < errors[False] / 5, errors
    assert any("bias correction: 2 layers on 256 samples for per-tensor weights" in n for n in report.notes)


def test_correct_biases_keeps_kernels_and_reference(conv_model):
    x = np.random.RandomState(3).rand(64, 8, 8, 1).astype("float32")
    before = [w.copy() for w in conv_model.get_weights()]
    out, info = correct_biases(conv_model, x, per_channel=False)
    assert set(info.layers) == {"conv", "dw", "fc"} and info.samples == 64 and not info.per_channel
    folded, _ = fold_batchnorm(conv_model)
    for name in ("conv", "dw", "fc"):
        np.testing.assert_array_equal(out.get_layer(name).get_weights()[0], folded.get_layer(name).get_weights()[0])
    assert all(np.array_equal(a, b) for a, b in zip(before, conv_model.get_weights()))


def test_bad_options(conv_model, tmp_path):
    with pytest.raises(InputError, match="int8 and int16x8"):
        export(conv_model, tmp_path / "f.tflite", mode="float16", per_channel=False)
    with pytest.raises(InputError, match="needs representative_data"):
        export(conv_model, tmp_path / "f.tflite", bias_correction=True)
    assert not (tmp_path / "f.tflite").exists()


def test_cli_per_tensor(capsys, tmp_path, conv_model):
    path = tmp_path / "m.keras"
    conv_model.save(path)
    err = assert_one_line_error(call_cli(capsys, "export", path, "-o", tmp_path / "o.tflite", "--mode", "float32",
                                         "--per-tensor"))
    assert "--per-tensor applies to int8 and int16x8" in err
    proc = call_cli(capsys, "export", path, "-o", tmp_path / "o.tflite", "--per-tensor", "--bias-correction",
                    "--samples", "32", "--no-eval")
    assert proc.returncode == 0, proc.stderr
    assert all(len(t.scale) == 1 for _, t in _file_kernels(tmp_path / "o.tflite"))
    assert "bias correction: 3 layers on 32 samples for per-tensor weights" in proc.stdout
