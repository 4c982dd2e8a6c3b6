"""Lambda layers through code that rebuilds models from their config (tfmot's QAT transforms).

A `Lambda` with a Python `lambda` serializes as bytecode, and rebuilding it from config is refused by
Keras' safe mode, rightly: bytecode from a file can run anything. tfmot's `quantize_apply` rebuilds the
model from its config, in memory. `hold(model)` swaps every Lambda for a `HeldLambda` whose config also
holds a token for the function, kept in this process, which `from_config` uses instead of the bytecode;
`release(model)` swaps the unwrapped ones back (a Lambda inside a QAT wrapper stays a `HeldLambda`, a
Lambda subclass that saves like a Lambda). Nothing is deserialized in memory, and safe mode stays on.
"""
import itertools

from tfcompress._tf import keras
from tfcompress.graph.rewrite import Rewrite

_HELD = {}          # token -> (function, output_shape, mask, arguments)
_TOKENS = itertools.count()


@keras.utils.register_keras_serializable(package="tfcompress")
class HeldLambda(keras.layers.Lambda):
    """A Lambda whose function stays in this process: its config carries a token, not bytecode.

    Args:
      token: the key of a function held by `hold`.
    """

    def __init__(self, token, **kwargs):
        function, output_shape, mask, arguments = _HELD[token]
        super().__init__(function, output_shape=output_shape, mask=mask, arguments=dict(arguments), **kwargs)
        self.token = token

    def get_config(self):
        # a file gets what a Lambda writes (with it, loading elsewhere is a Lambda's, safe mode and all);
        # in this process the token finds the function object itself
        return dict(super().get_config(), token=self.token)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        token = config.pop("token", None)
        if token in _HELD:
            return cls(token, **{k: config[k] for k in ("name", "trainable", "dtype") if k in config})
        return keras.layers.Lambda.from_config(config, custom_objects)


CUSTOM_OBJECTS = {"HeldLambda": HeldLambda, "tfcompress>HeldLambda": HeldLambda}


def _base(layer):
    return {"name": layer.name, "trainable": layer.trainable, "dtype": layer.dtype_policy.name}


def _held(layer, inputs):
    token = f"held_{next(_TOKENS)}"
    _HELD[token] = (layer.function, layer._output_shape, layer.mask, dict(layer.arguments))
    return HeldLambda(token, **_base(layer))(inputs)


def _plain(layer, inputs):
    return keras.layers.Lambda(layer.function, output_shape=layer._output_shape, mask=layer.mask,
                               arguments=dict(layer.arguments), **_base(layer))(inputs)


def hold(model):
    """`model` with every Lambda layer a `HeldLambda` (the model itself when it has none)."""
    names = [l.name for l in model.layers if type(l) is keras.layers.Lambda]
    if not names:
        return model
    rewrite = Rewrite(model)
    for name in names:
        rewrite.replace(name, _held)
    return rewrite.apply()


def release(model, custom_objects=None):
    """`model` with every (unwrapped) `HeldLambda` a plain Lambda again (the model itself when it has none)."""
    names = [l.name for l in model.layers if type(l) is HeldLambda]
    if not names:
        return model
    rewrite = Rewrite(model, dict(CUSTOM_OBJECTS, **(custom_objects or {})))
    for name in names:
        rewrite.replace(name, _plain)
    return rewrite.apply()
