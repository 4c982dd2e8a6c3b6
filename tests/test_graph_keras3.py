"""Keras 3 models in and out: translation both ways, and every verb taking a Keras 3 model."""
import keras
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras as tk
from tfcompress.graph.keras3 import from_keras3, is_keras3, to_keras3
from tfcompress.pruning.magnitude import sparsity
from tfcompress.saving import load_model, model_kind, save_model

L = keras.layers


def _x(shape, n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


def sequential_cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu", name="c1"),
                             L.MaxPooling2D(), L.BatchNormalization(name="bn"), L.Flatten(), L.Dropout(0.2),
                             L.Dense(10, activation="softmax", name="fc")], name="seq_cnn")


def residual_concat():
    keras.utils.set_random_seed(1)
    x = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="a")(x)
    b = L.Conv2D(8, 1, name="b")(x)
    h = L.Add(name="add")([a, b])
    h = L.Concatenate(name="cat")([h, L.ReLU(6.0, name="r6")(a)])
    h = keras.ops.relu6(keras.ops.multiply(h, 0.5))
    h = L.Lambda(lambda t: t * 2.0, name="twice")(h)
    return keras.Model(x, L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="gap")(h)), name="res_cat")


def _same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(u, v) for u, v in zip(wa, wb))


@pytest.mark.parametrize("build", [sequential_cnn, residual_concat])
def test_round_trip_outputs_and_weights(build):
    m = build()
    x = _x(tuple(m.inputs[0].shape[1:]))
    tkm = from_keras3(m)
    assert isinstance(tkm, tk.Model) and not is_keras3(tkm)
    assert isinstance(tkm, tk.Sequential) == isinstance(m, keras.Sequential)
    np.testing.assert_allclose(tkm(x).numpy(), np.asarray(m(x)), atol=1e-5)
    back = to_keras3(tkm)
    assert is_keras3(back) and [l.name for l in back.layers] == [l.name for l in m.layers]
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(m(x)), atol=1e-5)
    assert _same_weights(back, m)
    assert tkm.get_layer("fc" if "fc" in [l.name for l in tkm.layers] else "out").name


def test_layers_without_counterpart_are_all_named():
    class Custom(L.Layer):
        def call(self, x):
            return x * 2.0

    x = keras.Input((6,))
    h = Custom(name="mine")(x)
    h = L.RMSNormalization(name="rms")(h)
    h = L.Dense(4, lora_rank=2, name="lora")(h)
    m = keras.Model(x, h)
    with pytest.raises(tfc.UnsupportedModelError) as e:
        from_keras3(m)
    msg = str(e.value)
    assert "mine (Custom)" in msg and "rms (RMSNormalization)" in msg and "lora (Dense: lora_rank=2" in msg
    assert "\n" not in msg


def test_prune_fit_strip_to_keras3_keeps_zeros():
    m = sequential_cnn()
    x, y = _x((8, 8, 1), 64), np.random.default_rng(0).integers(0, 10, 64)
    pruned = tfc.prune(m, tfc.ConstantSparsity(0.6, frequency=1))
    assert isinstance(pruned, tk.Model)
    pruned.compile("adam", tk.losses.SparseCategoricalCrossentropy())
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tfc.CompressionCallback()])
    back = to_keras3(tfc.strip(pruned))
    assert is_keras3(back)
    assert sparsity(back.get_layer("fc").get_weights()[0]) == pytest.approx(0.6, abs=0.01)
    with pytest.raises(tfc.UnsupportedModelError, match="strip"):
        to_keras3(pruned)


def test_verbs_accept_keras3(tmp_path):
    m = residual_concat()
    x = _x((8, 8, 3), 32)
    assert tfc.analysis.flops(m) == tfc.analysis.flops(from_keras3(m)) > 0
    small = tfc.prune_channels(sequential_cnn(), 0.5)
    assert isinstance(small, tk.Model) and small.get_layer("c1").filters == 4
    assert isinstance(tfc.cluster(m, 4), tk.Model)
    report = tfc.export(m, str(tmp_path / "m.tflite"), mode="int8", representative_data=x)
    assert report.mode == "int8"
    bn = sequential_cnn()
    stale = bn.get_layer("bn").get_weights()[2].copy()
    assert tfc.recalibrate_batchnorm(bn, _x((8, 8, 1), 64)) is bn
    assert not np.array_equal(bn.get_layer("bn").get_weights()[2], stale)


def test_files_of_either_kind(tmp_path):
    m = sequential_cnn()
    for ext in (".keras", ".h5"):
        path = str(tmp_path / f"k3{ext}")
        m.save(path)
        assert model_kind(path) == "keras3"
        loaded = load_model(path)
        assert isinstance(loaded, tk.Model) and _same_weights(loaded, from_keras3(m))
        out = str(tmp_path / f"out{ext}")
        save_model(loaded, out, "keras3")
        assert model_kind(out) == "keras3" and _same_weights(keras.saving.load_model(out), m)
    tk_path = str(tmp_path / "tk.keras")
    from_keras3(m).save(tk_path)
    assert model_kind(tk_path) == "tf_keras"


def _cli(*argv):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "tfcompress.cli", *argv], capture_output=True, text=True,
                          timeout=300)


def test_cli_reads_keras3_files_and_writes_the_kind_it_read(tmp_path):
    src = str(tmp_path / "k3.keras")
    sequential_cnn().save(src)
    out = str(tmp_path / "small.keras")
    proc = _cli("prune-channels", src, "-o", out, "--ratio", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "a Keras 3 model" in proc.stdout and model_kind(out) == "keras3"
    assert keras.saving.load_model(out).get_layer("c1").filters == 4
    proc = _cli("export", src, "-o", str(tmp_path / "m.tflite"), "--data", "digits")
    assert proc.returncode == 0, proc.stderr
    assert "a Keras 3 model" in proc.stdout and "int8" in proc.stdout
    x = keras.Input((6,))
    keras.Model(x, L.RMSNormalization(name="rms")(L.Dense(4)(x))).save(str(tmp_path / "rms.keras"))
    proc = _cli("export", str(tmp_path / "rms.keras"), "-o", str(tmp_path / "r.tflite"))
    assert proc.returncode != 0 and "rms (RMSNormalization)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_quantize_and_distill_keras3_models(tmp_path):
    keras.utils.set_random_seed(2)
    x_in = keras.Input((8, 8, 1))
    h = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(x_in)))
    student = keras.Model(x_in, L.Dense(10)(L.GlobalAveragePooling2D()(h)), name="k3_student")
    teacher = sequential_cnn()
    x, y = _x((8, 8, 1), 32), np.random.default_rng(1).integers(0, 10, 32)
    trainer = tfc.Distiller(student, teacher, alpha=0.5)
    trainer.compile("adam")
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=0)
    trained = tfc.strip(trainer)
    assert isinstance(trained, tk.Model) and is_keras3(to_keras3(trained))
    qat = tfc.quantize(student)
    assert isinstance(qat, tk.Model) and any("quant" in l.name for l in qat.layers)
    report = tfc.export(qat, str(tmp_path / "q.tflite"), mode="int8")
    assert report.mode == "int8" and report.float_ops == []
