"""The one place that imports TensorFlow, tf_keras and tfmot.

tfmot works only with Keras 2 (tf_keras). TF_USE_LEGACY_KERAS must be set before TensorFlow is
imported for the first time, so every other module gets TensorFlow from here.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

from tfcompress.errors import UnsupportedModelError  # noqa: E402

__all__ = ["tf", "keras", "tfmot", "keras3", "check_model"]


def keras3():
    """The Keras 3 package (`import keras`), imported on first use: what users bring, translated at the door."""
    import keras as _keras3
    return _keras3


def check_model(model, what="model"):
    """Refuses anything that is not a tf_keras model with an error that says what to do."""
    if isinstance(model, keras.Model):
        return model
    module = type(model).__module__ or ""
    if module.startswith("keras") or module.startswith("tensorflow.python.keras"):
        raise UnsupportedModelError(
            f"{what} is a Keras 3 model ({type(model).__module__}.{type(model).__name__}); tfcompress works on "
            "tf_keras (Keras 2) models: build it with `import tf_keras as keras` or load it with "
            "tf_keras.models.load_model (or set TF_USE_LEGACY_KERAS=1 before importing TensorFlow)")
    raise UnsupportedModelError(f"{what} must be a tf_keras Model. Got: {type(model).__name__}")
