"""Weights below 8 bits: the grids of `tfc.quantize(..., weights=...)`, their straight-through estimator,
and the exported files: INT4 kernels through ai-edge-quantizer, ternary / binary / pow2 kernels as int8
tensors holding exactly the trained grid, ReLU6 pinned, ops by precision, bits per weight.

One tiny conv + dense model (8x8 digits), one QAT epoch per grid.
"""
import numpy as np
import pytest

import tfcompress as tfc
from conftest import call_cli
from tfcompress import data
from tfcompress._tf import keras, tf
from tfcompress.errors import InputError
from tfcompress.quantization import grids
from tfcompress.tflite import low_bit, reader

L = keras.layers
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
SCALE = 6.0 / 255.0


def _tiny():
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, activation="relu", name="c1")(inp)
    h = L.ReLU(6.0, name="r6")(L.Conv2D(16, 3, name="c2")(h))
    h = L.Flatten(name="flat")(h)
    h = L.Dense(16, activation="relu", name="d1")(h)
    return keras.Model(inp, L.Dense(10, name="d2")(h))


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = data.load("digits", "train"), data.load("digits", "test")
    return x, y, xt, yt


@pytest.fixture(scope="module")
def base(digits):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = _tiny()
    model.compile(keras.optimizers.Adam(3e-3), LOSS, metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model


def _qat(base, digits, weights, samples=640, **kw):
    x, y, _, _ = digits
    keras.utils.set_random_seed(1)
    qat = tfc.quantize(base, weights=weights, **kw)
    qat.compile(keras.optimizers.Adam(1e-3), LOSS, metrics=["accuracy"])
    qat.fit(x[:samples], y[:samples], epochs=1, batch_size=32, verbose=0)
    return qat


def _kernels(path):
    """{layer name: the file's kernel tensor} of the CONV_2D / FULLY_CONNECTED ops."""
    m = reader.read(path)
    out = {}
    for op in m.main.operators:
        if op.op in ("CONV_2D", "FULLY_CONNECTED"):
            t = m.main.tensors[op.inputs[1]]
            out[low_bit._layer_of(t.name, ("c1", "c2", "d1", "d2"))] = t
    return out


def test_snap_grids_and_straight_through():
    w = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 4, 6)).astype(np.float32))
    a = np.abs(w.numpy())
    for weights, limit in (("int4", 15), ("ternary", 3), ("binary", 2), ("pow2", 9)):
        values, step = grids.snap(w, weights, exponents=4)
        values, step = values.numpy(), step.numpy()
        ints = values / step
        assert np.allclose(ints, np.rint(ints), atol=1e-4), weights
        for c in range(6):
            assert len(np.unique(values[..., c])) <= limit, weights
    v, _ = grids.snap(w, "ternary")
    for c in range(6):   # TWN: threshold 0.7 mean|w|, a the mean of the kept magnitudes
        kept = a[..., c] > 0.7 * a[..., c].mean()
        np.testing.assert_allclose(np.abs(v.numpy()[..., c][kept]), a[..., c][kept].mean(), rtol=1e-5)
        assert not v.numpy()[..., c][~kept].any()
    v, _ = grids.snap(w, "binary")
    np.testing.assert_allclose(np.abs(v.numpy()), np.broadcast_to(a.mean(axis=(0, 1, 2)), a.shape), rtol=1e-5)
    v, _ = grids.snap(w, "int4")
    levels = v.numpy() / (a.max(axis=(0, 1, 2)) / 7)
    assert np.abs(np.rint(levels)).max() == 7 and np.allclose(levels, np.rint(levels), atol=1e-4)
    nz = np.abs(grids.snap(w, "pow2", exponents=3)[0].numpy())
    exps = np.log2(nz[nz > 0])
    assert np.array_equal(exps, np.rint(exps)) and len(np.unique(exps)) <= 3
    v, _ = grids.snap(w, "ternary", per_channel=False)
    assert len(np.unique(v.numpy())) == 3
    q = grids.GridWeightsQuantizer("binary")
    with tf.GradientTape() as tape:
        tape.watch(w)
        out = q(w, True, {})
        loss = tf.reduce_sum(out * tf.range(w.shape[-1], dtype=tf.float32))
    grad = tape.gradient(loss, w).numpy()   # the straight-through estimator: d out / d w = 1
    np.testing.assert_allclose(grad, np.broadcast_to(np.arange(6, dtype=np.float32), w.shape))


def test_int4_file_holds_int4_kernels_on_the_trained_grid(base, digits, tmp_path, capsys):
    x, _, xt, yt = digits
    qat = _qat(base, digits, "int4")
    path = tmp_path / "int4.tflite"
    report = tfc.export(qat, path, representative_data=x[:128], eval_data=(xt, yt), eval_samples=200,
                            layer_samples=0)
    kernels = _kernels(path)
    assert sorted(kernels) == ["c1", "c2", "d1", "d2"]
    assert {t.dtype for t in kernels.values()} == {"int4"}
    for t in kernels.values():
        lv = low_bit.levels(t)
        assert lv.min() >= -7 and lv.max() <= 7 and (np.abs(lv) == 7).any()
        assert len(t.scale) == t.shape[0] and not np.any(t.zero_point)
    rows = low_bit.grid_check(qat, path)
    assert [r["layer"] for r in rows] == ["c1", "c2", "d1", "d2"]
    assert all(r["on_grid"] and r["levels_equal"] and r["step_equal"] for r in rows), rows
    assert max(r["max_abs_diff"] for r in rows) < 1e-6
    assert {p["precision"] for p in report.precision if p["op"] in ("CONV_2D", "FULLY_CONNECTED")} == {"int4"}
    assert report.float_ops == [] and report.input_dtype == "int8"
    assert report.relu6 and report.relu6_all_pinned
    assert any("4/4 kernels hold exactly the trained grid" in n for n in report.notes), report.notes
    assert report.agreement >= 0.9 and abs(report.tflite_accuracy - report.float_accuracy) <= 0.03
    assert "int4: CONV_2D×2, FULLY_CONNECTED×2" in report.format()
    rows, total = low_bit.weight_bits(path)
    int4 = [r for r in rows if r["dtype"] == "int4"]
    assert len(int4) == 4 and all(3.9 < r["stored_bits"] <= 4.0 for r in int4)
    assert total["coded_bits"] <= 4.6
    out = call_cli(capsys, "size", path)
    assert out.returncode == 0 and f"after coding {total['coded_bits']:.2f}" in out.stdout
    assert "int4 5,480 weights 4.00" in out.stdout, out.stdout
    out = call_cli(capsys, "inspect", path)
    assert "int4 weights: 4 tensors, 5,480 values, 2,740 bytes" in out.stdout


# a few steps are enough for the activation ranges; the kernels' grids do not need more
@pytest.mark.parametrize("weights,allowed,samples", [("ternary", 3, 640), ("binary", 2, 160), ("pow2", 9, 160)])
def test_int8_file_holds_exactly_the_grid(base, digits, tmp_path, weights, allowed, samples):
    x, _, xt, yt = digits
    qat = _qat(base, digits, weights, samples)
    path = tmp_path / f"{weights}.tflite"
    report = tfc.export(qat, path, eval_data=(xt, yt), eval_samples=200,
                            layer_samples=0)
    kernels = _kernels(path)
    assert {t.dtype for t in kernels.values()} == {"int8"}
    for name, t in kernels.items():
        q = t.data().reshape(t.shape[0], -1)
        assert max(len(np.unique(r)) for r in q) <= allowed, name
        assert len(t.scale) == t.shape[0], name   # per channel, FULLY_CONNECTED too
        expect = {"ternary": {-127, 0, 127}, "binary": {-127, 127}}.get(weights)
        if expect:   # per-channel steps: the grid's own integers
            assert set(np.unique(q).tolist()) <= expect, name
        if weights == "pow2":
            nz = np.abs(q[q != 0]).astype(float)
            assert np.array_equal(np.log2(nz), np.rint(np.log2(nz))) and nz.max() <= 64, name
    rows = low_bit.grid_check(qat, path)
    assert len(rows) == 4 and all(r["on_grid"] and r["step_equal"] for r in rows), rows
    assert report.float_ops == [] and report.relu6_all_pinned
    assert report.agreement >= 0.97
    assert {p["precision"] for p in report.precision if p["op"] in ("CONV_2D", "FULLY_CONNECTED")} == {"int8"}


def test_bad_grids_and_binary_zeros_are_refused(base, tmp_path):
    with pytest.raises(InputError, match="weights must be one of"):
        tfc.quantize(base, weights="int3")
    with pytest.raises(InputError, match="exponents"):
        tfc.quantize(base, weights="pow2", exponents=8)
    pruned = keras.models.clone_model(base)
    pruned.set_weights([np.where(np.abs(w) < np.median(np.abs(w)), 0, w) if w.ndim > 1 else w
                        for w in base.get_weights()])
    with pytest.raises(InputError, match="binary weights hold no zero"):
        tfc.quantize(pruned, weights="binary")
    from tfcompress.stages.quantize import QuantizeConfig
    with pytest.raises(InputError, match="weights must be one of"):
        QuantizeConfig(weights="int2")
    assert QuantizeConfig(weights="pow2", exponents=3).exponents == 3


def test_ternary_keeps_pruned_zeros_and_reloads_from_h5(base, digits, tmp_path):
    x, _, _, _ = digits
    pruned = keras.models.clone_model(base)
    pruned.set_weights([np.where(np.abs(w) < np.quantile(np.abs(w), 0.8), 0, w) if w.ndim > 1 else w
                        for w in base.get_weights()])
    qat = tfc.quantize(pruned, weights="ternary", per_channel=False)
    got = grids.grid_kernels(qat)
    for name, (values, step, q) in got.items():
        zeros = pruned.get_layer(name).kernel.numpy() == 0
        assert not values[zeros].any() and not q.per_channel and np.asarray(step).size == 1
        assert len(np.unique(values)) <= 3
    path = tmp_path / "ternary.h5"
    qat.save(path)
    again = tfc.load_model(path)
    assert grids.weights_of(again) == "ternary"
    np.testing.assert_allclose(again.predict(x[:16], verbose=0), qat.predict(x[:16], verbose=0), atol=1e-6)
