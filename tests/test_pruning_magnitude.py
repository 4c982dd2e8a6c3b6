import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras, tf
from tfcompress.errors import Error, InputError, UnsupportedModelError
from tfcompress.pruning.magnitude import sparsity, wrappers
from tfcompress.tflite import reader

L = keras.layers
KERNELS = ("conv1", "conv2", "fc1", "fc2")


def small_cnn(functional=True):
    if not functional:
        return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu", name="conv1"),
                                 L.Conv2D(16, 3, activation="relu", name="conv2"), L.Flatten(name="flat"),
                                 L.Dense(32, activation="relu", name="fc1"), L.Dense(10, name="fc2")])
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    x = L.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(32, activation="relu", name="fc1")(x)
    return keras.Model(inp, L.Dense(10, name="fc2")(x))


def compile_(model):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def kernel_sparsity(model):
    return {name: sparsity(model.get_layer(name).kernel.numpy()) for name in KERNELS}


@pytest.fixture(scope="module")
def pruned(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = compile_(tfc.prune(small_cnn(), tfc.PolynomialDecay(0.8, end_step=40, frequency=5)))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[tfc.CompressionCallback()])
    return model, x


def test_polynomial_decay_reaches_target_on_every_kernel(pruned):
    model, _ = pruned
    layers = wrappers(model)
    assert sorted(l.layer.name for l in layers) == sorted(KERNELS)
    for layer in layers:
        assert sparsity(layer) == pytest.approx(0.8, abs=0.01), layer.name


def test_strip_is_plain_keeps_zeros_and_outputs(pruned):
    model, x = pruned
    plain = tfc.strip(model)
    assert not wrappers(plain)
    assert all(type(l).__module__.startswith("tf_keras") for l in plain.layers)
    for name, value in kernel_sparsity(plain).items():
        assert value == pytest.approx(0.8, abs=0.01), name
    diff = np.abs(plain.predict(x[:200], verbose=0) - model.predict(x[:200], verbose=0)).max()
    assert diff <= 1e-5


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_zeros_survive_save_and_load(pruned, tmp_path, ext):
    model, x = pruned
    plain = tfc.strip(model)
    path = str(tmp_path / f"m{ext}")
    plain.save(path)
    loaded = tfc.load_model(path)
    for name in KERNELS:
        np.testing.assert_array_equal(loaded.get_layer(name).kernel.numpy() == 0,
                                      plain.get_layer(name).kernel.numpy() == 0)
    # the wrapped model too: masks and schedules come back, and strip gives the same zeros
    wpath = str(tmp_path / f"wrapped{ext}")
    model.save(wpath)
    again = tfc.strip(tfc.load_model(wpath))
    for name in KERNELS:
        np.testing.assert_array_equal(again.get_layer(name).kernel.numpy(), plain.get_layer(name).kernel.numpy())


def test_zeros_survive_int8_export(pruned, tmp_path):
    model, x = pruned
    plain = tfc.strip(model)
    path = tmp_path / "m.tflite"
    tfc.export(plain, path, representative_data=x[:64])
    m = reader.read(str(path))
    weights = [t for t in reader.weight_tensors(m, min_elements=64) if t.dtype == "int8"]
    assert len(weights) == 4
    by_size = {t.size: t.zero_fraction for t in weights}
    for name in KERNELS:
        k = plain.get_layer(name).kernel.numpy()
        # the int8 file keeps every zero; a tiny weight may round to zero too, so only upwards
        assert sparsity(k) - 1e-9 <= by_size[k.size] <= sparsity(k) + 0.01, name


def test_input_model_is_left_untouched(digits):
    (x, y), _ = digits
    base = small_cnn()
    before = [w.copy() for w in base.get_weights()]
    model = compile_(tfc.prune(base, tfc.ConstantSparsity(0.5, frequency=1)))
    model.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[tfc.CompressionCallback()])
    for a, b in zip(before, base.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_training_without_the_callback_names_it(digits):
    (x, y), _ = digits
    model = compile_(tfc.prune(small_cnn(), tfc.ConstantSparsity(0.5)))
    with pytest.raises(Exception, match="CompressionCallback"):
        model.fit(x[:64], y[:64], epochs=1, verbose=0)
    # and the same model then trains with it
    model.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[tfc.CompressionCallback()])
    assert sparsity(wrappers(model)[0]) == pytest.approx(0.5, abs=0.02)
    # a cached train function reused without the callback is caught in the graph
    with pytest.raises(Exception, match="CompressionCallback"):
        model.fit(x[:64], y[:64], epochs=1, verbose=0)


def test_sequential_per_layer_schedules_and_iterative_steps(digits):
    (x, y), _ = digits
    model = compile_(tfc.prune(small_cnn(functional=False), layers={
        "conv2": tfc.IterativeSteps([(2, 0.3), (5, 0.6)]), "fc1": tfc.ConstantSparsity(0.9, frequency=1)}))
    assert sorted(l.layer.name for l in wrappers(model)) == ["conv2", "fc1"]
    model.fit(x[:64 * 3], y[:64 * 3], epochs=1, batch_size=64, verbose=0, callbacks=[tfc.CompressionCallback()])
    by = {l.layer.name: l for l in wrappers(model)}
    assert sparsity(by["conv2"]) == pytest.approx(0.3, abs=0.01)      # steps 0, 1, 2 ran: the first level
    model.fit(x[:64 * 3], y[:64 * 3], epochs=1, batch_size=64, verbose=0, callbacks=[tfc.CompressionCallback()])
    assert sparsity(by["conv2"]) == pytest.approx(0.6, abs=0.01)      # step 5 ran in the second fit
    assert sparsity(by["fc1"]) == pytest.approx(0.9, abs=0.01)
    plain = tfc.strip(model)
    assert sparsity(plain.get_layer("conv1").kernel.numpy()) < 0.05   # not pruned


def test_layer_selection_by_names_and_predicate():
    model = tfc.prune(small_cnn(), tfc.ConstantSparsity(0.5), layers=["fc1"])
    assert [l.layer.name for l in wrappers(model)] == ["fc1"]
    model = tfc.prune(small_cnn(), tfc.ConstantSparsity(0.5), layers=lambda l: l.name.startswith("conv"))
    assert sorted(l.layer.name for l in wrappers(model)) == ["conv1", "conv2"]
    with pytest.raises(InputError, match="nope"):
        tfc.prune(small_cnn(), tfc.ConstantSparsity(0.5), layers=["nope"])
    with pytest.raises(InputError, match="flat"):
        tfc.prune(small_cnn(), tfc.ConstantSparsity(0.5), layers=["flat"])
    with pytest.raises(InputError):
        tfc.prune(small_cnn(), "0.5")


def test_tensorboard_gets_per_layer_sparsity(digits, tmp_path):
    (x, y), _ = digits
    model = compile_(tfc.prune(small_cnn(), tfc.ConstantSparsity(0.7, frequency=1)))
    model.fit(x[:128], y[:128], epochs=2, batch_size=64, verbose=0,
              callbacks=[tfc.CompressionCallback(log_dir=str(tmp_path))])
    values = {}
    for name in os.listdir(tmp_path):
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / name)):
            for v in event.summary.value:
                values.setdefault(v.tag, []).append(float(tf.make_ndarray(v.tensor)))
    assert sorted(values) == [f"sparsity/{n}" for n in sorted(KERNELS)]
    assert all(len(v) == 2 and v[-1] == pytest.approx(0.7, abs=0.02) for v in values.values())


def test_subclassed_models_are_refused_and_keras3_models_translated(tmp_path):
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(3)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 4), np.float32))
    with pytest.raises(UnsupportedModelError, match="subclassed"):
        tfc.prune(sub, tfc.ConstantSparsity(0.5))
    import keras as keras3
    k3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    for result in (tfc.prune(k3, tfc.ConstantSparsity(0.5)), tfc.strip(k3)):
        assert isinstance(result, keras.Model)   # a Keras 3 model is translated to tf_keras at the door
    assert tfc.export(k3, str(tmp_path / "k3.tflite"), mode="float32").mode == "float32"

    class Sub3(keras3.Model):
        def call(self, x):
            return x
    with pytest.raises(UnsupportedModelError, match="functional or Sequential Keras 3"):
        tfc.prune(Sub3(), tfc.ConstantSparsity(0.5))
    assert issubclass(UnsupportedModelError, Error)


def test_mirrored_strategy_with_two_logical_cpus(tmp_path):
    script = textwrap.dedent("""
        import numpy as np
        from tfcompress._tf import tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import tfcompress as tfc
        from tfcompress.pruning.magnitude import sparsity, wrappers
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        rng = np.random.RandomState(0)
        x, y = rng.rand(256, 16).astype("float32"), rng.randint(0, 4, 256)
        with strategy.scope():
            base = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                                     keras.layers.Dense(4)])
            model = tfc.prune(base, tfc.PolynomialDecay(0.75, end_step=12, frequency=3))
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[tfc.CompressionCallback()])
        values = [sparsity(l) for l in wrappers(model)]
        plain = tfc.strip(model)
        print("SPARSITY", values, [sparsity(l.kernel.numpy()) for l in plain.layers])
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("SPARSITY"))
    values = [float(v) for v in line.replace("SPARSITY", "").replace("[", " ").replace("]", " ")
              .replace(",", " ").split()]
    assert len(values) == 4 and all(v == pytest.approx(0.75, abs=0.01) for v in values)


def test_pruned_zeros_are_positive_zeros(pruned):
    model, _ = pruned
    plain = tfc.strip(model)
    for name in KERNELS:
        k = plain.get_layer(name).kernel.numpy()
        zeros = k[k == 0]
        assert zeros.size and not np.signbit(zeros).any(), name   # -0.0 would hide from bit-level coders
