"""tfcompress.clustering: at most k shared values per tensor (per channel) through strip, QAT and the int8
file; zeros kept where they were; per-layer counts; stripper, loading, the callback; bad input."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.clustering import ClusterWeights, distinct_values, quantize_preserving_clusters, wrappers
from tfcompress.errors import InputError, UnsupportedModelError

L = keras.layers


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((20,))
    x = L.Dense(32, activation="relu", name="d1")(inp)
    x = L.Dense(16, activation="relu", name="d2")(x)
    return keras.Model(inp, L.Dense(4, name="out")(x))


def _cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((10, 10, 1))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = L.Conv2D(6, 3, activation="relu", name="c2")(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(4, name="out")(x))


def _data(shape, n=64, seed=1):
    rng = np.random.RandomState(seed)
    return rng.rand(n, *shape).astype(np.float32), rng.randint(0, 4, n)


def _fit(model, x, y, epochs=1, callbacks=(), lr=1e-3):
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=list(callbacks))


def _sparsify(model, fraction=0.6, seed=2):
    """Zeros the smallest `fraction` of every kernel, as a stripped pruned model holds them."""
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            k = layer.kernel.numpy()
            k[np.abs(k) < np.quantile(np.abs(k), fraction)] = 0
            layer.kernel.assign(k)
    return {l.name: l.kernel.numpy() == 0 for l in model.layers if hasattr(l, "kernel")}


def test_at_most_k_values_after_strip_and_zeros_kept():
    model = _mlp()
    zeros = _sparsify(model)
    x, y = _data((20,))
    before = [w.copy() for w in model.get_weights()]
    clustered = tfc.cluster(model, clusters=6)
    assert len(wrappers(clustered)) == 3
    _fit(clustered, x, y, epochs=2)
    plain = tfc.strip(clustered)
    assert not wrappers(plain) and not any(isinstance(l, ClusterWeights) for l in plain.layers)
    np.testing.assert_allclose(plain.predict(x, verbose=0), clustered.predict(x, verbose=0), atol=1e-5)
    for layer in plain.layers:
        if hasattr(layer, "kernel"):
            k = layer.kernel.numpy()
            assert distinct_values(k) <= 6, layer.name
            assert np.all(k[zeros[layer.name]] == 0), layer.name      # every zero stays a zero
            assert 0.0 in np.unique(k)                                 # the pinned zero is one of the 6
            assert not np.any(np.signbit(k[k == 0]))                   # +0.0: the file's bits say zero
    for a, b in zip(before, model.get_weights()):                      # the input model is untouched
        np.testing.assert_array_equal(a, b)


def test_per_channel_conv_and_per_layer_counts():
    model = _cnn()
    x, y = _data((10, 10, 1))
    c = tfc.cluster(model, clusters={"c1": 4, "c2": 5}, per_channel=True, preserve_sparsity=False, init="linear")
    assert sorted(w.layer.name for w in wrappers(c)) == ["c1", "c2"]
    _fit(c, x, y)
    plain = tfc.strip(c)
    k1, k2 = plain.get_layer("c1").kernel.numpy(), plain.get_layer("c2").kernel.numpy()
    assert distinct_values(k1, axis=-1) <= 4 and distinct_values(k2, axis=-1) <= 5
    assert distinct_values(k2) > 5                                     # channels have their own values
    assert distinct_values(plain.get_layer("out").kernel.numpy()) > 100             # not clustered


@pytest.mark.parametrize("init", ["kmeans++", "linear", "density", "random"])
def test_every_init_gives_k_values(init):
    model = _mlp()
    plain = tfc.strip(tfc.cluster(model, clusters=5, init=init, preserve_sparsity=False, layers=["d1"]))
    assert distinct_values(plain.get_layer("d1").kernel.numpy()) <= 5
    assert distinct_values(plain.get_layer("d2").kernel.numpy()) > 100              # not clustered


def test_composes_with_prune_and_callback(tmp_path):
    model = _mlp()
    x, y = _data((20,))
    pruned = tfc.prune(model, tfc.ConstantSparsity(0.75, begin_step=0, frequency=1))
    _fit(pruned, x, y, callbacks=[tfc.CompressionCallback()])
    # a model still wrapped by tfc.prune is stripped first; its zeros are the ones kept
    zeros = {l.name: l.kernel.numpy() == 0 for l in tfc.strip(pruned).layers if hasattr(l, "kernel")}
    assert np.mean(zeros["d1"]) == pytest.approx(0.75, abs=0.01)
    clustered = tfc.cluster(pruned, clusters=8)
    cb = tfc.CompressionCallback(log_dir=str(tmp_path / "logs"))
    _fit(clustered, x, y, callbacks=[cb])                              # the callback is harmless
    summaries = cb._drivers[0].summaries() if cb._drivers else {}
    assert summaries and all(v <= 8 for v in summaries.values())
    _fit(clustered, x, y)                                              # and not required
    plain = tfc.strip(clustered)
    for name, mask in zeros.items():
        k = plain.get_layer(name).kernel.numpy()
        assert np.all(k[mask] == 0) and distinct_values(k) <= 8


@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_save_and_load(tmp_path, ext):
    model = _mlp()
    zeros = _sparsify(model)
    x, y = _data((20,))
    clustered = tfc.cluster(model, clusters=8)
    path = str(tmp_path / f"clustered{ext}")
    clustered.save(path)
    loaded = tfc.load_model(path)
    assert len(wrappers(loaded)) == 3
    np.testing.assert_allclose(loaded.predict(x, verbose=0), clustered.predict(x, verbose=0), atol=1e-5)
    _fit(loaded, x, y)                                 # training goes on with the saved masks
    k = tfc.strip(loaded).get_layer("d1").kernel.numpy()
    assert distinct_values(k) <= 8 and np.all(k[zeros["d1"]] == 0)


def test_bad_input():
    model = _mlp()
    for bad in (0, 1, 2, -3, 2.5, "8", True, None):
        with pytest.raises(InputError, match="clusters"):
            tfc.cluster(model, clusters=bad)
    tfc.strip(tfc.cluster(model, clusters=2, preserve_sparsity=False, layers="d1"))  # 2 is fine without the zero
    with pytest.raises(InputError, match="clusters\\['d1'\\]"):
        tfc.cluster(model, clusters={"d1": 0})
    with pytest.raises(InputError, match="init"):
        tfc.cluster(model, init="kmeans")
    with pytest.raises(InputError, match="no layer named 'nope'"):
        tfc.cluster(model, layers=["nope"])
    with pytest.raises(InputError, match="already clustered"):
        tfc.cluster(tfc.cluster(model), clusters=4)
    with pytest.raises(InputError, match="not both"):
        tfc.cluster(model, clusters={"d1": 4}, layers=["d2"])
    with pytest.raises(UnsupportedModelError):
        tfc.cluster(object())


def test_cluster_preserving_qat_and_int8_file(tmp_path):
    from tfcompress.tflite import pack, size
    model = _cnn()
    zeros = _sparsify(model, 0.5)
    x, y = _data((10, 10, 1))
    c = tfc.cluster(model, clusters=6, per_channel=True)
    _fit(c, x, y)
    plain = tfc.strip(c)
    qat = quantize_preserving_clusters(plain)
    _fit(qat, x, y, lr=1e-4)
    for wrapper in qat.layers:
        inner = getattr(wrapper, "layer", None)
        if inner is not None and inner.name in ("c1", "c2", "out"):
            k = next(v for v in wrapper.weights if v.name.split("/")[-1] == "kernel:0").numpy()
            # after QAT: clusters and zeros kept
            assert distinct_values(k, axis=-1 if k.ndim == 4 else None) <= 6, inner.name
            assert np.all(k[zeros[inner.name]] == 0), inner.name
    path = str(tmp_path / "cqat_int8.tflite")
    report = tfc.export(qat, path, mode="int8", eval_data=(x, y))
    assert report.input_dtype == "int8" and not report.float_ops
    counts = {tuple(c.shape): c for c in size.cluster_counts(path)}
    conv2 = counts[(6, 3, 3, 4)]                                       # TFLite: output channel first
    assert conv2.axis == 0 and conv2.per_channel <= 6 < conv2.per_tensor   # int8 per channel
    dense = counts[(4, 6 * 6 * 6)]
    assert dense.per_tensor <= 6                                        # Dense kernels: per-tensor int8
    assert size.check_clusters(path, 6)
    with pytest.raises(InputError, match="more than 3"):
        size.check_clusters(path, 3)
    data = open(path, "rb").read()
    assert pack.unpack(pack.pack(data)) == data
