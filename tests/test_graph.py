"""tfcompress.graph: rebuilding models from memory, every rewrite verb, the layer-kind table."""
import numpy as np
import pytest

from tfcompress._tf import keras, tf
from tfcompress.errors import InputError, UnsupportedModelError
from tfcompress.graph import (Rewrite, copy_model, kind_of, map_layers, nodes, register_layer)
from test_custom_layers import Scale   # a custom layer with a weight and get_config

L = keras.layers


def odd_model():
    """Lambda with a Python lambda, a custom layer, a tf op, a shared layer, a nested model, two outputs."""
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3), name="img")
    h = L.Conv2D(8, 3, padding="same", name="c1")(x)
    h = L.Lambda(lambda t: t * 2.0, name="twice")(h)
    h = Scale(name="scale")(h)
    h = tf.nn.relu6(h)
    shared = L.Conv2D(8, 1, name="shared")
    h = L.Add(name="add")([shared(h), shared(h * 0.5)])
    inner_in = keras.Input((8, 8, 8))
    inner = keras.Model(inner_in, L.BatchNormalization(name="inner_bn")(inner_in), name="inner")
    h = inner(h)
    p = L.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, [L.Dense(4, name="logits")(p), L.Dense(2, name="aux")(p)], name="odd")


def _x(shape=(5, 8, 8, 3)):
    return np.random.default_rng(1).normal(size=shape).astype(np.float32)


def test_identity_rewrite_is_bit_exact_and_leaves_the_original():
    m = odd_model()
    before = [w.copy() for w in m.get_weights()]
    new = Rewrite(m).apply()
    x = _x()
    for a, b in zip(m(x), new(x)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert new.name == "odd" and [l.name for l in new.layers] == [l.name for l in m.layers]
    assert all(a is not b for a, b in zip(new.layers, m.layers))
    new.get_layer("c1").kernel.assign(tf.zeros_like(new.get_layer("c1").kernel))  # copies own their weights
    for w, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(w, b)
    assert new.get_layer("twice").function is m.get_layer("twice").function


def test_sequential_copy_stays_sequential_and_functional_rewrite():
    m = keras.Sequential([keras.Input((6,)), L.Dense(4, name="a"), L.Lambda(lambda t: -t, name="neg"),
                          L.Dense(2, name="b")])
    c = copy_model(m)
    assert isinstance(c, keras.Sequential)
    x = _x((3, 6))
    np.testing.assert_array_equal(m(x).numpy(), c(x).numpy())
    f = Rewrite(m).apply()
    assert not isinstance(f, keras.Sequential)
    np.testing.assert_array_equal(m(x).numpy(), f(x).numpy())


def test_replace_by_a_subgraph():
    m = odd_model()

    def two_convs(layer, inputs):   # conv 3x3 -> exactly the same conv followed by an identity 1x1
        first = L.Conv2D(8, 3, padding="same", name="c1")
        y = first(inputs)
        first.set_weights(layer.get_weights())
        eye = L.Conv2D(8, 1, use_bias=False, name="c1_eye")
        out = eye(y)
        eye.set_weights([np.eye(8, dtype=np.float32)[None, None]])
        return out

    new = Rewrite(m).replace("c1", two_convs).apply()
    assert "c1_eye" in [l.name for l in new.layers]
    x = _x()
    np.testing.assert_allclose(m(x)[0].numpy(), new(x)[0].numpy(), atol=1e-5)


def test_insert_before_one_consumer_only_and_remove():
    x = keras.Input((4,))
    h = L.Dense(4, name="h")(x)
    m = keras.Model(x, L.Add(name="add")([L.Dense(4, name="f")(h), h]))
    zero = L.Lambda(lambda t: 0.0 * t, name="zero")
    new = Rewrite(m).insert_before("f", zero).apply()
    xs = _x((2, 4))
    np.testing.assert_allclose(new(xs).numpy(), m.get_layer("h")(xs).numpy() + m.get_layer("f").bias.numpy(),
                               atol=1e-6)
    gone = Rewrite(new).remove("zero").apply()
    np.testing.assert_array_equal(gone(xs).numpy(), m(xs).numpy())
    with pytest.raises(ValueError, match="only one-input"):
        Rewrite(m).remove("add").apply()


def test_set_config_new_width_needs_weights():
    x = keras.Input((4,))
    m = keras.Model(x, L.Dense(2, name="out")(L.Dense(6, name="hid")(x)))
    cfg = dict(m.get_layer("hid").get_config(), units=3)
    with pytest.raises(ValueError, match="changes its weight shapes"):
        Rewrite(m).set_config("hid", cfg).apply()
    k, b = m.get_layer("hid").get_weights()
    k2, b2 = m.get_layer("out").get_weights()
    new = (Rewrite(m).set_config("hid", cfg, [k[:, :3], b[:3]]).set_weights("out", [k2[:3], b2]).apply())
    assert new.get_layer("hid").units == 3


def test_add_output_head_and_map_layers():
    m = odd_model()
    new = Rewrite(m).add_output("gap").apply()
    assert len(new.outputs) == 3 and new.outputs[2].shape[-1] == 8
    seen = []

    def fn(layer):
        seen.append((layer.name, layer.built, [w.copy() for w in layer.get_weights()]))
        return layer

    mapped = map_layers(m, fn)
    x = _x()
    np.testing.assert_array_equal(m(x)[0].numpy(), mapped(x)[0].numpy())
    c1 = next(s for s in seen if s[0] == "c1")
    assert c1[1] and np.array_equal(c1[2][0], m.get_layer("c1").get_weights()[0])


def test_errors():
    class Sub(keras.Model):
        def call(self, x):
            return x
    with pytest.raises(UnsupportedModelError):
        Rewrite(Sub())
    with pytest.raises(InputError, match="no layer named 'nope'"):
        Rewrite(odd_model()).remove("nope")


def test_layer_kinds_and_register():
    m = odd_model()
    assert kind_of(m.get_layer("c1")).role_of(m.get_layer("c1")) == "produce"
    op = next(n.layer for n in nodes(m) if type(n.layer).__name__ == "TFOpLambda"
              and n.layer.get_config()["function"] == "nn.relu6")
    assert kind_of(op).role_of(op) == "pass"
    mul = next(n.layer for n in nodes(m) if n.layer.get_config().get("function") == "math.multiply")
    assert kind_of(mul).role_of(mul) == "pass"
    assert kind_of(m.get_layer("twice")).role_of(m.get_layer("twice")) is None  # opaque function
    assert kind_of(m.get_layer("scale")) is None
    register_layer(Scale, role="pass", elementwise=True)
    try:
        assert kind_of(m.get_layer("scale")).role_of(m.get_layer("scale")) == "pass"
    finally:
        from tfcompress.graph.kinds import KINDS
        KINDS.pop(Scale)


def test_held_lambdas_rebuild_from_config_without_bytecode():
    from tfcompress.graph.held import HeldLambda, hold, release
    x = keras.Input((4,))
    m = keras.Model(x, L.Dense(2, name="d")(L.Lambda(lambda t: t * 3.0, name="triple")(x)))
    held = hold(m)
    assert type(held.get_layer("triple")) is HeldLambda
    # what tfmot does: a round trip through the config, with safe mode on
    again = keras.Model.from_config(held.get_config(), custom_objects={"HeldLambda": HeldLambda})
    again.set_weights(held.get_weights())
    xs = _x((3, 4))
    np.testing.assert_array_equal(again(xs).numpy(), m(xs).numpy())
    back = release(again)
    assert type(back.get_layer("triple")) is L.Lambda
    assert back.get_layer("triple").function is m.get_layer("triple").function
    # a config from elsewhere (unknown token) is a Lambda's config: safe mode refuses its bytecode
    cfg = dict(held.get_layer("triple").get_config(), token="held_from_another_process")
    with pytest.raises(ValueError, match="Python `lambda`"):
        from tf_keras.src.saving import serialization_lib
        with serialization_lib.SafeModeScope(True):
            HeldLambda.from_config(cfg)
