"""tfcompress.tflite.reader: facts of float32, dynamic-range, float16 and int8 files made here."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfcompress.errors import InputError
from tfcompress.tflite import reader

PRUNED = 0.8
DENSE_SHAPE = (32, 144)        # TFLite stores a Dense kernel as (units, inputs)
_BUILT = {}


def build_models(folder):
    """Writes tiny .tflite files (one Keras model, 80 % of its first Dense kernel zero) once per run.

    Returns {mode: path} for float32, dynamic, float16, int8 and "fixed1" (float32, batch fixed at 1),
    plus "keras" (the model) and "x" (sample data).
    """
    if _BUILT:
        return _BUILT
    from tfcompress._tf import keras, tf

    keras.utils.set_random_seed(1)
    x = np.random.RandomState(0).rand(64, 8, 8, 1).astype(np.float32)

    def make(batch_size=None):
        inp = keras.Input((8, 8, 1), batch_size=batch_size)
        h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dense(32, activation="relu", name="dense")(h)
        return keras.Model(inp, keras.layers.Dense(10, name="logits")(h))

    model = make()
    kernel = model.get_layer("dense").kernel.numpy()
    flat = kernel.reshape(-1)
    flat[np.random.RandomState(2).permutation(flat.size)[:int(PRUNED * flat.size)]] = 0.0
    model.get_layer("dense").kernel.assign(kernel)

    def convert(m, mode):
        c = tf.lite.TFLiteConverter.from_keras_model(m)
        if mode != "float32":
            c.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            c.target_spec.supported_types = [tf.float16]
        if mode == "int8":
            c.representative_dataset = lambda: ([x[i:i + 1]] for i in range(32))
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = tf.int8
            c.inference_output_type = tf.int8
        path = os.path.join(folder, f"{mode if m is model else 'fixed1'}.tflite")
        with open(path, "wb") as f:
            f.write(c.convert())
        return path

    for mode in ("float32", "dynamic", "float16", "int8"):
        _BUILT[mode] = convert(model, mode)
    fixed = make(batch_size=1)
    fixed.set_weights(model.get_weights())
    _BUILT["fixed1"] = convert(fixed, "float32")
    _BUILT["keras"], _BUILT["x"] = model, x
    return _BUILT


def external_copy(path, folder):
    """Rewrites `path` with its largest buffer stored after the flatbuffer (Buffer.offset/size), the
    layout of files over 2 GB, using the schema's object API (a writer other than the converter)."""
    import flatbuffers

    schema = reader.schema
    data = open(path, "rb").read()
    m = reader.read(data)
    big = max(m.buffers, key=lambda b: b.size)
    payload = data[big.offset:big.offset + big.size]
    obj = schema.ModelT.InitFromPackedBuf(data, 0)

    def build(offset):
        obj.buffers[big.index].data = None
        obj.buffers[big.index].offset = offset
        obj.buffers[big.index].size = len(payload)
        b = flatbuffers.Builder(1024)
        b.Finish(obj.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    head = build(1 << 40)               # same length whatever the offset: measure, then place
    offset = (len(head) + 63) // 64 * 64
    head = build(offset)
    out = os.path.join(folder, "external_" + os.path.basename(path))
    with open(out, "wb") as f:
        f.write(head + b"\0" * (offset - len(head)) + payload)
    return out, big.index


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return build_models(str(tmp_path_factory.mktemp("tflite")))


def _dense(model):
    return next(t for t in reader.weight_tensors(model) if t.shape == DENSE_SHAPE)


def test_op_counts_and_io_dtypes(models):
    f32, i8, f16 = (reader.read(models[m]) for m in ("float32", "int8", "float16"))
    assert reader.op_counts(f32) == {"CONV_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 2}
    assert reader.op_counts(i8) == {"CONV_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 2}
    assert reader.op_counts(f16)["DEQUANTIZE"] >= 2
    assert f32.input_dtypes == ["float32"] and f32.output_dtypes == ["float32"]
    assert i8.input_dtypes == ["int8"] and i8.output_dtypes == ["int8"]
    assert i8.inputs[0].shape == (1, 8, 8, 1) and i8.inputs[0].shape_signature == (-1, 8, 8, 1)
    assert f32.version == 3 and f32.file_size == os.path.getsize(models["float32"])


def test_float_ops(models):
    assert reader.float_ops(reader.read(models["int8"])) == []
    assert {op.op for op in reader.float_ops(reader.read(models["float32"]))} == \
        {"CONV_2D", "RESHAPE", "FULLY_CONNECTED"}
    dyn = reader.read(models["dynamic"])
    assert "FULLY_CONNECTED" in {op.op for op in reader.float_ops(dyn)}


@pytest.mark.parametrize("mode", ["int8", "dynamic", "float32", "float16"])
def test_tensors_match_interpreter(models, mode):
    from tfcompress.tflite.runtime import Interpreter

    model = reader.read(models[mode])
    it = Interpreter(models[mode], use_xnnpack=False)
    details = {d["index"]: d for d in it.tensor_details()}
    checked = 0
    for t in model.main.tensors:
        d = details.get(t.index)
        if d is None:
            continue
        assert t.name == d["name"]
        assert np.dtype(reader.numpy_dtype(t.dtype)) == np.dtype(d["dtype"]) if reader.numpy_dtype(t.dtype) else True
        qp = d["quantization_parameters"]
        if t.is_quantized:
            np.testing.assert_allclose(t.scale, qp["scales"], rtol=0, atol=1e-9)
            np.testing.assert_array_equal(t.zero_point, qp["zero_points"])
            assert t.quantized_dimension == qp["quantized_dimension"]
        else:
            assert len(qp["scales"]) == 0
        if t.is_constant and t.data() is not None:
            np.testing.assert_array_equal(t.data(), it.interpreter.get_tensor(t.index))
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("mode", ["float32", "int8", "float16", "dynamic"])
def test_pruned_zero_fraction(models, mode):
    dense = _dense(reader.read(models[mode]))
    assert dense.zero_fraction == pytest.approx(PRUNED, abs=0.01)
    assert dense.dtype == {"float32": "float32", "int8": "int8", "float16": "float16", "dynamic": "int8"}[mode]


def test_int8_weights_dequantize_to_keras(models):
    dense = _dense(reader.read(models["int8"]))
    kernel = models["keras"].get_layer("dense").kernel.numpy().T
    assert dense.quantized_dimension == 0 and len(dense.scale) == 32
    np.testing.assert_allclose(dense.dequantized(), kernel, atol=float(dense.scale.max()) / 2 + 1e-7)


def test_helpers(models):
    model = reader.read(models["int8"])
    dense = _dense(model)
    assert reader.tensor_by_name(model, dense.name) is dense
    with pytest.raises(KeyError):
        reader.tensor_by_name(model, "no such tensor")
    pairs = reader.op_outputs(model)
    assert [op.op for op, _ in pairs] == [op.op for op in model.main.operators]
    assert pairs[-1][1][0].index == model.main.outputs[0]
    conv = next(op for op, _ in pairs if op.op == "CONV_2D")
    assert [t.dtype for t in reader.op_inputs(model, conv)] == ["int8", "int8", "int32"]


def test_inspect_dict_and_table(models):
    info = reader.inspect(models["int8"])
    json.dumps(info)
    assert info["op_counts"]["FULLY_CONNECTED"] == 2
    assert info["inputs"][0]["dtype"] == "int8" and "scale" in info["inputs"][0]
    assert info["file_bytes"] == os.path.getsize(models["int8"])
    w = next(w for w in info["weights"] if tuple(w["shape"]) == DENSE_SHAPE)
    assert w["bytes"] == 32 * 144 and w["zero_fraction"] == pytest.approx(PRUNED, abs=0.01)
    assert len(info["tensors"]) == len(reader.read(models["int8"]).main.tensors)
    text = reader.format_table(info)
    assert "FULLY_CONNECTED" in text and "ops computing in float: none" in text


def test_buffers_outside_the_flatbuffer(models, tmp_path):
    path, index = external_copy(models["float32"], str(tmp_path))
    inner, outer = reader.read(models["float32"]), reader.read(path)
    assert outer.buffers[index].external and not inner.buffers[index].external
    a, b = _dense(inner), _dense(outer)
    assert b.data_offset > len(open(path, "rb").read()) - b.nbytes - 1
    np.testing.assert_array_equal(a.data(), b.data())
    assert b.zero_fraction == a.zero_fraction


@pytest.mark.parametrize("content", [None, b"", os.urandom(4096), b"hello, this is a text file\n" * 40, "dir"],
                         ids=["missing", "empty", "random", "text", "folder"])
def test_bad_input(tmp_path, content):
    path = tmp_path / "bad.tflite"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as e:
        reader.read(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_truncated(models, tmp_path):
    data = open(models["int8"], "rb").read()
    for cut in (8, 100, len(data) // 2, len(data) - 1000):
        path = tmp_path / f"cut{cut}.tflite"
        path.write_bytes(data[:cut])
        with pytest.raises(InputError):
            reader.read(str(path))


def test_corrupt_bytes_never_crash(models):
    data = open(models["int8"], "rb").read()
    rng = np.random.RandomState(3)
    for _ in range(200):
        b = np.frombuffer(data, np.uint8).copy()
        b[rng.randint(8, len(b), size=8)] = rng.randint(0, 256, size=8)
        try:
            reader.inspect(reader.read(b.tobytes()))
        except InputError:
            pass


def test_no_tensorflow_import(models):
    code = ("import sys; from tfcompress.tflite import reader, size, runtime; import numpy as np; "
            f"reader.inspect({models['int8']!r}); size.size_report({models['int8']!r}); "
            f"runtime.run({models['int8']!r}, np.zeros((2, 8, 8, 1), np.float32)); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
