"""Loading Keras models from `.keras`, `.h5` or a SavedModel folder, with tfcompress's wrappers known."""
import json
import os
import zipfile

from tfcompress.errors import InputError


def _custom_objects():
    from tfcompress import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    objects = {}
    # tfmot's own pruning wrapper, so models saved by tfmot users load too (tfcompress.quantization's
    # CUSTOM_OBJECTS brings tfmot's quantization objects)
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper
    objects["PruneLowMagnitude"] = pruning_wrapper.PruneLowMagnitude
    import importlib
    for module in ("tfcompress.pruning.magnitude", "tfcompress.pruning.channels", "tfcompress.clustering",
                   "tfcompress.quantization"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        objects.update(getattr(mod, "CUSTOM_OBJECTS", {}))
    return objects


def check_model_path(path):
    """The checks `load_model` makes before the slow load, without importing TensorFlow: raises the same
    one-line `InputError` for a missing path or a file that is not a Keras model. Returns the path."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"model not found: {path}")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise InputError(f"{path} is a folder without saved_model.pb: not a SavedModel")
    elif os.path.getsize(path) == 0:
        raise InputError(f"{path} is empty (0 bytes): not a Keras model")
    elif path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not a .keras file (a .keras model is a zip archive)")
    elif path.endswith((".h5", ".hdf5")):
        with open(path, "rb") as f:
            if f.read(8) != b"\x89HDF\r\n\x1a\n":
                raise InputError(f"{path} is not an HDF5 file")
    elif not path.endswith((".keras", ".h5", ".hdf5")):
        raise InputError(f"{path}: give a .keras file, an .h5 file or a SavedModel folder")
    return path


def model_kind(path):
    """`"keras3"` for a model file written by Keras 3, `"tf_keras"` for one written by tf_keras (or a
    SavedModel folder), read from the file's own metadata without importing TensorFlow."""
    path = check_model_path(path)
    version = ""
    try:
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as z:
                version = json.loads(z.read("metadata.json")).get("keras_version", "")
        elif path.endswith((".h5", ".hdf5")):
            import h5py
            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version", "")
                version = version.decode() if isinstance(version, bytes) else str(version)
    except (KeyError, OSError, ValueError):
        version = ""
    return "keras3" if version.split(".")[0] == "3" else "tf_keras"


def kind_note(path):
    """The line a command prints about the model file it read: which Keras wrote it."""
    if model_kind(path) == "keras3":
        return f"read {path}: a Keras 3 model (tfcompress works on its tf_keras translation)"
    return f"read {path}: a tf_keras model"


def save_model(model, path, kind="tf_keras", inputs=()):
    """Writes a tf_keras model to `path` atomically, as a Keras 3 model file when `kind` is `"keras3"`
    (translated by `tfc.to_keras3`), so a command writes the kind it read. `.h5` paths get HDF5."""
    from tfcompress.fileio import atomic_path
    if kind == "keras3":
        from tfcompress.graph.keras3 import to_keras3
        model = to_keras3(model)
    with atomic_path(path, inputs=inputs) as tmp:
        if kind == "keras3":
            model.save(tmp)   # the temporary name keeps the extension, which picks Keras 3's format
        else:
            model.save(tmp, save_format="h5" if path.endswith((".h5", ".hdf5")) else None)


def load_model(path, compile=False):
    """Loads a tf_keras model from a `.keras` file, an `.h5` file or a SavedModel folder.

    Every command and recipe loads models here. The wrappers and layers of tfcompress (pruning, channel
    masks, clustering, QAT) and tfmot's pruning wrapper are known, so compressed models load too. A file
    is checked before the slow load (empty, not a zip / HDF5 file, unknown extension).

    Args:
      path: the model file or folder.
      compile: restore the training configuration too. Defaults to `False`.

    A Keras 3 file (see `model_kind`) is loaded by Keras 3, with its safe mode on, and translated
    (`tfc.from_keras3`): what comes back is always a tf_keras model.

    Returns:
      The tf_keras `keras.Model`.

    Raises:
      InputError: missing path, or a file or folder that is not a Keras model (one line saying which).
    """
    path = check_model_path(path)
    from tfcompress._tf import keras
    if model_kind(path) == "keras3":
        return _load_keras3(path, compile)
    try:
        model = keras.models.load_model(path, custom_objects=_custom_objects(), compile=compile)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot load {path} as a Keras model: {first}") from None
    if not isinstance(model, keras.Model):
        # tf.saved_model.save of a tf.Module (or a model saved without Keras metadata) loads as a bare
        # trackable object that has neither layers nor input shapes
        raise InputError(f"{path} is a TensorFlow SavedModel but not a Keras model (no keras_metadata.pb): "
                         "save the model with model.save(PATH) from tf_keras")
    return model


def _load_keras3(path, compile):
    """A Keras 3 file, loaded by Keras 3 (its safe mode on) and translated to tf_keras."""
    from tfcompress._tf import keras3
    from tfcompress.graph.keras3 import from_keras3
    try:
        model = keras3().saving.load_model(path, compile=compile)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot load {path} as a Keras 3 model: {first}") from None
    return from_keras3(model)
