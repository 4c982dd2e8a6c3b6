"""A model with a Lambda layer and a custom Layer subclass goes through every technique.

Conv -> Lambda(t * 2) -> Conv -> Scale (custom, with get_config) -> Conv -> GAP -> Dense: channel pruning
(the groups the two opaque layers touch stay whole, the others are pruned, removing equals zeroing),
magnitude pruning, clustering, QAT (skipped or with a registered config), strip and int8 export.
"""
import warnings

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.graph.kinds import KINDS
from tfcompress.pruning.channels import plan_and_prune, zeroed_reference
from tfcompress.pruning.magnitude import sparsity
from tfcompress.quantization import OutputQuantizeConfig, register_quantize_config
from tfcompress.quantization.scheme import _CUSTOM
from tfcompress.tflite import reader

L = keras.layers


class Scale(L.Layer):
    """Per-channel scale: a custom layer tfcompress does not know until it is registered."""

    def __init__(self, init=1.5, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, shape):
        self.s = self.add_weight("s", shape=(int(shape[-1]),), initializer=keras.initializers.Constant(self.init))

    def call(self, x):
        return x * self.s

    def get_config(self):
        return dict(super().get_config(), init=self.init)


def model():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 1))
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    h = L.Lambda(lambda t: t * 2.0, name="twice")(h)
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="c2")(h)
    h = Scale(name="scale")(h)
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="c3")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, L.Dense(10, name="fc")(h), name="odd")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 64)


@pytest.fixture
def registered():
    yield
    KINDS.pop(Scale, None)
    _CUSTOM.pop(Scale, None)


def _width(m, name):
    return m.get_layer(name).output_shape[-1]


def test_channel_pruning_around_opaque_layers(data, registered):
    m = model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = plan_and_prune(m, 0.5)
    notes = " | ".join(str(w.message) for w in caught)
    assert "Lambda layer 'twice'" in notes and "'scale' (Scale) is unknown" in notes
    small = result.model
    assert (_width(small, "c1"), _width(small, "c2"), _width(small, "c3")) == (16, 16, 8)
    x = data[0]
    ref = zeroed_reference(m, result.removed)
    np.testing.assert_allclose(small(x).numpy(), ref(x).numpy(), atol=1e-5)
    assert small.get_layer("twice").function is m.get_layer("twice").function
    # taught once, the custom layer passes channels (its per-channel weight sliced): c2's group prunes too
    tfc.graph.register_layer(Scale, role="pass")
    result = plan_and_prune(m, 0.5)
    small = result.model
    assert (_width(small, "c1"), _width(small, "c2"), _width(small, "c3")) == (16, 8, 8)
    assert small.get_layer("scale").get_weights()[0].shape == (8,)
    np.testing.assert_allclose(small(x).numpy(), zeroed_reference(m, result.removed)(x).numpy(), atol=1e-5)


def test_magnitude_pruning_and_clustering(data):
    x, y = data
    m = model()
    pruned = tfc.prune(m, tfc.ConstantSparsity(0.5, frequency=1))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tfc.CompressionCallback()])
    plain = tfc.strip(pruned)
    assert sparsity(plain.get_layer("c2").kernel.numpy()) == pytest.approx(0.5, abs=0.01)
    assert type(plain.get_layer("twice")) is L.Lambda and type(plain.get_layer("scale")) is Scale
    clustered = tfc.strip(tfc.cluster(plain, 8))
    assert len(np.unique(clustered.get_layer("c2").kernel.numpy())) <= 8
    np.testing.assert_array_equal(clustered.get_layer("scale").get_weights()[0],
                                  plain.get_layer("scale").get_weights()[0])


def _lambda_of(qat):
    layer = next(l for l in qat.layers if l.name in ("twice", "quant_twice"))
    return getattr(layer, "layer", layer)


def _qat_int8(qat, x, y, path, function):
    qat.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert isinstance(_lambda_of(qat), L.Lambda) and _lambda_of(qat).function is function
    report = tfc.export(tfc.strip(qat), str(path), mode="int8", representative_data=x[:32])
    return report, reader.read(str(path))


def test_quantize_skipping_or_registering_the_custom_layer(data, tmp_path, registered):
    x, y = data
    m = model()
    with pytest.raises(tfc.UnsupportedModelError, match=r"twice \(Lambda\).*scale \(Scale\)"):
        tfc.quantize(m)
    function = m.get_layer("twice").function
    skipped = tfc.quantize(m, skip=["twice", "scale"])
    assert type(skipped.get_layer("twice")) is L.Lambda   # unwrapped, it is a plain Lambda again
    report, _ = _qat_int8(skipped, x, y, tmp_path / "skip.tflite", function)
    assert report.mode == "int8"
    register_quantize_config(Scale, OutputQuantizeConfig())
    register_quantize_config(L.Lambda, OutputQuantizeConfig())
    try:
        report, model_file = _qat_int8(tfc.quantize(m), x, y, tmp_path / "all.tflite", function)
    finally:
        _CUSTOM.pop(L.Lambda, None)
    assert report.float_ops == [] and reader.float_ops(model_file) == []
