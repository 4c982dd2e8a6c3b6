"""Layer configs between Keras 3 and tf_keras: the differences between the two versions, in one place.

A config is moved across by class name, and each value is made what the other side expects: the
InputLayer's `batch_shape` and `batch_input_shape`, a `DTypePolicy` and a dtype name, nested serialized
objects (initializers, regularizers, constraints) with their `module` / `registered_name` dropped or
kept as the other side writes them, and keys the other class does not take left out, as long as they
hold their default. A key the other side lacks that holds something else (Keras 3's `lora_rank=8` on a
Dense) cannot be carried and is refused.
"""
import inspect

_BASE_KEYS = {"name", "trainable", "dtype"}
# Keys of Keras 3 configs that tf_keras has no use for when they hold these values.
_HARMLESS = {"lora_rank": None, "lora_alpha": None, "quantization_config": None, "optional": False,
             "input_axes": None, "output_axes": None, "renorm": False, "renorm_clipping": None,
             "renorm_momentum": 0.99, "seed": None, "keepdims": False}


class Untranslatable(ValueError):
    """A config value the other Keras version cannot hold."""


def _accepted(cls):
    """Names `cls.__init__` takes, or None when it takes any keyword (**kwargs passed to a base we trust)."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        names |= {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return names - {"self"}
        if klass.__module__.split(".")[0] in ("tf_keras", "keras") and klass.__name__ in ("Layer", "Operation"):
            break
    return names - {"self"}


def _defaults(cls):
    """{argument: default} of `cls.__init__` and the initialisers of its bases."""
    out = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass):
            for n, p in inspect.signature(vars(klass)["__init__"]).parameters.items():
                if p.default is not p.empty:
                    out[n] = p.default
    return out


def _dtype_name(value):
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy", "Policy"):
        return value.get("config", {}).get("name", "float32")
    return value


def _serialized(value, target):
    """A nested serialized object (initializer, regularizer, constraint) in the target's form."""
    if not (isinstance(value, dict) and "class_name" in value and "config" in value):
        return value
    config = {k: _serialized(v, target) for k, v in (value.get("config") or {}).items()}
    if target == "tf_keras":
        cls = _lookup_object(value["class_name"])
        if cls is not None:
            accepted = _accepted(cls)
            config = {k: v for k, v in config.items() if k in accepted or _HARMLESS.get(k, object()) != v}
        return {"class_name": value["class_name"], "config": config}
    return {"class_name": value["class_name"], "config": config}


def _lookup_object(name):
    import tf_keras
    for module in (tf_keras.initializers, tf_keras.regularizers, tf_keras.constraints):
        obj = getattr(module, name, None)
        if isinstance(obj, type):
            return obj
    return None


def _plain(value):
    """Plain Python containers (tf_keras configs hold TensorFlow's tracking ListWrapper / DictWrapper)."""
    if isinstance(value, dict) or (hasattr(value, "items") and type(value).__name__ == "_DictWrapper"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListWrapper":
        out = [_plain(v) for v in value]
        return tuple(out) if isinstance(value, tuple) else out
    return value


def layer_config(config, cls, target, source_cls=None):
    """`config` (from the other Keras version, a layer of class `source_cls`) for class `cls` of `target`
    ("tf_keras" or "keras3"). A key `cls` does not take is left out when it holds the source class's default.

    Raises:
      Untranslatable: a key `cls` does not take holds a value other than its default.
    """
    out = {}
    accepted = _accepted(cls)
    defaults = _defaults(source_cls) if source_cls is not None else {}
    for key, value in _plain(config).items():
        if key == "axis" and isinstance(value, list) and len(value) == 1:
            value = value[0]   # tf_keras keeps BatchNormalization's axis as a list, Keras 3 as an int
        if key == "dtype":
            out[key] = _dtype_name(value)
            continue
        if key not in accepted and key not in _BASE_KEYS:
            if (key in _HARMLESS and _HARMLESS[key] == value) or value is None or value is False:
                continue
            if key in defaults and _plain(defaults[key]) == value:
                continue
            raise Untranslatable(f"{key}={value!r}")
        out[key] = _serialized(value, target)
    return out


def input_kwargs(config, source):
    """keras.Input(...) arguments for an InputLayer config of the `source` version."""
    shape = config.get("batch_shape") if source == "keras3" else config.get("batch_input_shape")
    return {"batch_shape": tuple(shape), "dtype": _dtype_name(config.get("dtype")) or "float32",
            "sparse": bool(config.get("sparse", False)), "name": config.get("name")}
