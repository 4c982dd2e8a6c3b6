"""FLOPs (2 x multiply-accumulates) and parameter counts, checked against hand counts."""
import pytest

from tfcompress._tf import keras
from tfcompress.analysis import flops, layer_macs, macs, params

L = keras.layers


def test_conv_dense_hand_counts():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="c")(inp)            # 64 * 4 * 27 = 6912
    x = L.Conv2D(6, 3, strides=2, name="s")(x)                    # 3*3 * 6 * 36 = 1944
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)        # 9 * 6 * 9 = 486
    x = L.SeparableConv2D(5, 3, padding="same", name="sep")(x)    # 9*6*9 + 9*6*5 = 756
    x = L.Conv2DTranspose(2, 2, strides=2, name="t")(x)           # 9*5 * 4 * 2 = 360
    x = L.Flatten()(x)
    out = L.Dense(7, name="fc")(x)                                # 72 * 7 = 504
    model = keras.Model(inp, out)
    per = layer_macs(model)
    assert per == {"c": 6912, "s": 1944, "dw": 486, "sep": 756, "t": 360, "fc": 504}
    assert macs(model) == 10962 and flops(model) == 2 * 10962
    assert params(model) == model.count_params()


def test_dense_on_sequence_and_nested_model():
    inner = keras.Sequential([keras.Input((5, 4)), L.Dense(3, name="inner_fc")])
    inp = keras.Input((5, 4))
    out = L.Dense(2, name="outer_fc")(inner(inp))
    model = keras.Model(inp, out)
    assert layer_macs(model) == {"inner_fc": 5 * 4 * 3, "outer_fc": 5 * 3 * 2}


def test_halving_widths_quarters_inner_flops():
    def net(w):
        inp = keras.Input((16, 16, 8))
        x = L.Conv2D(w, 3, padding="same")(inp)
        x = L.Conv2D(w, 3, padding="same")(x)
        return keras.Model(inp, x)
    a, b = layer_macs(net(32)), layer_macs(net(16))
    assert sum(b.values()) / sum(a.values()) == pytest.approx((16 * 8 + 16 * 16) / (32 * 8 + 32 * 32))
