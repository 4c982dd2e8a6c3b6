"""`strip`: removes every tfcompress wrapper and returns a plain model with the same outputs.

Each technique registers a stripper `fn(model) -> model` with `register_stripper`; strip applies them
in registration order until no stripper changes the model.
"""
from tfcompress.graph.keras3 import tf_keras_model

_STRIPPERS = []


def register_stripper(fn):
    """Registers `fn(model) -> model | None` (None: nothing of this technique in the model)."""
    if fn not in _STRIPPERS:
        _STRIPPERS.append(fn)
    return fn


def strip(model):
    """Returns a copy of `model` without compression wrappers (pruned zeros, clusters kept).

    Args:
      model: a tf_keras model, possibly holding tfcompress or tfmot wrappers; for a `tfc.Distiller`, its
        student.

    Returns:
      A plain tf_keras model that gives the same outputs.
    """
    model = tf_keras_model(model)
    student = getattr(model, "student", None)
    if student is not None and type(model).__name__ == "Distiller":  # the trained model is the student
        model = student
    for fn in _STRIPPERS:
        out = fn(model)
        if out is not None:
            model = out
    return model
