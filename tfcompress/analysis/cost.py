"""Compute cost of a tf-keras model: FLOPs counted as 2 x multiply-accumulates (MACs).

Only layers that multiply and accumulate are counted: Conv1D/2D/3D, Conv2DTranspose, DepthwiseConv2D,
SeparableConv2D and Dense (biases, BatchNormalization, which TFLite folds into the convolution,
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
import numpy as np

from tfcompress._tf import keras, tf

L = keras.layers


def _prod(shape):
    return int(np.prod([int(d) for d in shape])) if len(shape) else 1


def _node_macs(layer, in_shape, out_shape):
    if isinstance(layer, L.SeparableConv2D):
        spatial = _prod(out_shape[1:-1])
        cin = int(in_shape[-1]) * layer.depth_multiplier
        return spatial * cin * _prod(layer.kernel_size) + spatial * cin * int(out_shape[-1])
    if isinstance(layer, L.DepthwiseConv2D):
        return _prod(out_shape[1:]) * _prod(layer.kernel_size)
    if isinstance(layer, L.Conv2DTranspose):
        return _prod(in_shape[1:]) * _prod(layer.kernel_size) * int(out_shape[-1])
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        groups = getattr(layer, "groups", 1) or 1
        return _prod(out_shape[1:]) * _prod(layer.kernel_size) * int(in_shape[-1]) // groups
    if isinstance(layer, L.Dense):
        return _prod(in_shape[1:]) * int(out_shape[-1])
    return 0


def layer_macs(model):
    """{layer name: multiply-accumulates for one sample}, nested models flattened into their layers."""
    out = {}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            layer = node.layer
            if isinstance(layer, keras.Model):
                for k, v in layer_macs(layer).items():
                    out[k] = out.get(k, 0) + v
                continue
            ins = node.keras_inputs
            if not ins:
                continue
            outs = tf.nest.flatten(node.outputs)
            n = _node_macs(layer, ins[0].shape, outs[0].shape)
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
