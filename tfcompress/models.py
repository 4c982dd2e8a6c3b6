"""Reference models: LeNet-300-100, LeNet-5 (the Caffe variant used by Deep Compression), a small
MobileNetV2-style network (inverted residuals, ReLU6) and a small ResNet-style network (basic blocks,
identity and projection shortcuts). All are functional tf_keras models with logits
at the output.
"""
from tfcompress._tf import keras

L = keras.layers


def lenet300(input_shape=(28, 28, 1), classes=10, name="lenet300_100"):
    """LeNet-300-100: two hidden fully connected layers (300 and 100 ReLU units)."""
    x = inp = keras.Input(input_shape)
    if len(input_shape) > 1:
        x = L.Flatten()(x)
    x = L.Dense(300, activation="relu", name="fc1")(x)
    x = L.Dense(100, activation="relu", name="fc2")(x)
    out = L.Dense(classes, name="fc3")(x)
    return keras.Model(inp, out, name=name)


def lenet5(input_shape=(28, 28, 1), classes=10, name="lenet5"):
    """LeNet-5 as in Caffe's MNIST example: conv 20 5x5, pool, conv 50 5x5, pool, fc 500, fc classes."""
    inp = keras.Input(input_shape)
    x = L.Conv2D(20, 5, name="conv1")(inp)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(50, 5, name="conv2")(x)
    x = L.MaxPooling2D(2, name="pool2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(500, activation="relu", name="fc1")(x)
    out = L.Dense(classes, name="fc2")(x)
    return keras.Model(inp, out, name=name)


def _inverted_residual(x, expansion, filters, stride, name):
    channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = L.Conv2D(channels * expansion, 1, use_bias=False, name=f"{name}_expand")(y)
        y = L.BatchNormalization(name=f"{name}_expand_bn")(y)
        y = L.ReLU(6.0, name=f"{name}_expand_relu6")(y)
    y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = L.BatchNormalization(name=f"{name}_dw_bn")(y)
    y = L.ReLU(6.0, name=f"{name}_dw_relu6")(y)
    y = L.Conv2D(filters, 1, use_bias=False, name=f"{name}_project")(y)
    y = L.BatchNormalization(name=f"{name}_project_bn")(y)
    if stride == 1 and channels == filters:
        y = L.Add(name=f"{name}_add")([x, y])
    return y


# (expansion, output channels, stride) per block, MobileNetV2's pattern at a small width.
MOBILENET_BLOCKS = ((1, 16, 1), (4, 24, 2), (4, 24, 1), (4, 32, 2), (4, 32, 1), (4, 48, 1))


def mobilenet_v2_small(input_shape=(16, 16, 1), classes=10, width=32, blocks=MOBILENET_BLOCKS,
                       head=128, dropout=0.1, name="mobilenet_v2_small"):
    """A small MobileNetV2: Conv-BN-ReLU6 stem, inverted residual blocks with linear bottlenecks and
    residual adds, a 1x1 Conv-BN-ReLU6 head, global average pooling and a Dense classifier."""
    inp = keras.Input(input_shape)
    x = L.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu6")(x)
    for i, (t, c, s) in enumerate(blocks):
        x = _inverted_residual(x, t, c, s, name=f"block{i}")
    x = L.Conv2D(head, 1, use_bias=False, name="head")(x)
    x = L.BatchNormalization(name="head_bn")(x)
    x = L.ReLU(6.0, name="head_relu6")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = L.Dropout(dropout, name="dropout")(x)
    out = L.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name=name)


def mobilenet_v2(input_shape=(224, 224, 3), classes=1000, alpha=1.0):
    """Keras' MobileNetV2 with random weights (no download), for latency measurements."""
    return keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha, weights=None, classes=classes)


def _cbr(x, f, k=3, s=1, name=None, relu=True):
    x = L.Conv2D(f, k, strides=s, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, f, stride, name):
    y = _cbr(x, f, s=stride, name=f"{name}a")
    y = _cbr(y, f, name=f"{name}b", relu=False)
    if stride != 1 or x.shape[-1] != f:
        x = _cbr(x, f, k=1, s=stride, name=f"{name}_proj", relu=False)
    return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([x, y]))


def resnet_style(input_shape=(64, 64, 3), widths=(32, 64, 128), classes=10, stem_stride=2, name="resnet_style"):
    """Conv-BN-ReLU stem, two basic blocks per stage (projection shortcut when the shape changes), GAP, Dense."""
    inp = keras.Input(input_shape)
    x = _cbr(inp, widths[0], s=stem_stride, name="stem")
    for i, w in enumerate(widths):
        x = _basic_block(x, w, 1 if i == 0 else 2, name=f"s{i}b0")
        x = _basic_block(x, w, 1, name=f"s{i}b1")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(classes, name="logits")(x), name=name)


REGISTRY = {"lenet300": lenet300, "lenet5": lenet5, "mobilenet_v2_small": mobilenet_v2_small,
            "mobilenet_v2": mobilenet_v2, "resnet_style": resnet_style}
