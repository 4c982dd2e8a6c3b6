"""Compute cost of a tf-keras model: FLOPs counted as 2 x multiply-accumulates (MACs).

Only layers that multiply and accumulate are counted: those whose entry in the layer-kind table
(`tfcompress.graph.kinds`) has a `macs` function, i.e. Conv1D/2D/3D, Conv2DTranspose, DepthwiseConv2D,
SeparableConv2D, Dense and any registered layer that says how (biases, BatchNormalization, which TFLite folds into the convolution,
activations, pooling and elementwise merges are left out; they are a few percent of a CNN's work and
do not change the ratios this is used for). Nested models are counted through. Batch size 1.

Example:

>>> from tfcompress._tf import keras
>>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same")])
>>> macs(m)
6912
>>> flops(m)
13824
"""
from tfcompress._tf import keras
from tfcompress.graph import kind_of, nodes
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.graph.walk import node_inputs, node_outputs


def layer_macs(model):
    """{layer name: multiply-accumulates for one sample}, nested models flattened into their layers.
    A Keras 3 model is counted on its tf_keras translation."""
    model = tf_keras_model(model)
    out = {}
    for node in nodes(model):
        layer = node.layer
        if isinstance(layer, keras.Model):
            for k, v in layer_macs(layer).items():
                out[k] = out.get(k, 0) + v
            continue
        ins = node_inputs(node)
        kind = kind_of(layer)
        if not ins or kind is None or kind.macs is None:
            continue
        n = kind.macs(layer, ins[0].shape, node_outputs(node)[0].shape)
        if n:
            out[layer.name] = out.get(layer.name, 0) + n
    return out


def macs(model):
    """Multiply-accumulates of one forward pass (batch 1)."""
    return int(sum(layer_macs(model).values()))


def flops(model):
    """FLOPs of one forward pass (batch 1), counted as 2 x `macs(model)`."""
    return 2 * macs(model)


def params(model):
    """Number of weights (trainable and not, BN statistics included)."""
    return int(model.count_params())
