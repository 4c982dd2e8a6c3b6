"""Data specs: `digits`, `npz:PATH`, `dir:PATH`, `keras:NAME`, `tfds:NAME`.

`digits` is scikit-learn's bundled 8x8 digits: offline, the default everywhere. It gives x float32
of shape (N, 8, 8, 1) in [0, 1] and integer labels 0-9; the split is fixed (seeded), 75 % train.
"""
import os

import numpy as np

from tfcompress.errors import InputError

SPLITS = ("train", "test", "all")
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _split(x, y, split, seed=0, test_fraction=0.25):
    if split == "all":
        return x, y
    order = np.random.RandomState(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    idx = order[n_test:] if split == "train" else order[:n_test]
    return x[idx], y[idx]


def _digits(split):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    return _split(x, d.target.astype(np.int64), split)


def _npz(path, split):
    if not os.path.isfile(path):
        raise InputError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise InputError(f"cannot read {path} as .npz: {e}") from None
    if f"x_{split}" in arrays:
        return arrays[f"x_{split}"].astype(np.float32), arrays.get(f"y_{split}")
    if "x" not in arrays:
        raise InputError(f"{path} has no array named 'x' (found: {', '.join(sorted(arrays)) or 'none'})")
    x = arrays["x"].astype(np.float32)
    y = arrays.get("y")
    return _split(x, y, split) if y is not None else (x if split != "test" else x[:0], None)


def _image_dir(path, split):
    if not os.path.isdir(path):
        raise InputError(f"image folder not found: {path}")
    from PIL import Image
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise InputError(f"{path} has no class sub-folders (expected one folder per class)")
    xs, ys, shape = [], [], None
    for label, name in enumerate(classes):
        folder = os.path.join(path, name)
        for fname in sorted(os.listdir(folder)):
            if not fname.lower().endswith(_IMAGE_EXTS):
                continue
            try:
                img = Image.open(os.path.join(folder, fname))
                img = img.convert("RGB" if img.mode not in ("L", "I") else "L")
            except Exception as e:
                raise InputError(f"cannot read image {os.path.join(folder, fname)}: {e}") from None
            if shape is None:
                shape = img.size
            arr = np.asarray(img.resize(shape), dtype=np.float32) / 255.0
            xs.append(arr[..., None] if arr.ndim == 2 else arr)
            ys.append(label)
    if not xs:
        raise InputError(f"{path} holds no images ({', '.join(_IMAGE_EXTS)})")
    return _split(np.stack(xs), np.asarray(ys, np.int64), split)


def _keras(name, split):
    if name not in KERAS_DATASETS:
        raise InputError(f"unknown keras dataset {name!r}; choose one of {', '.join(KERAS_DATASETS)}")
    from tfcompress._tf import keras
    try:
        (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
    except Exception as e:
        raise InputError(f"keras:{name} needs a download and failed ({type(e).__name__}); "
                         "use `digits`, `npz:PATH` or `dir:PATH` offline") from None
    if split == "all":
        x, y = np.concatenate([xtr, xte]), np.concatenate([ytr, yte])
    else:
        x, y = (xtr, ytr) if split == "train" else (xte, yte)
    x = x.astype(np.float32) / 255.0
    return (x[..., None] if x.ndim == 3 else x), y.reshape(-1).astype(np.int64)


def _tfds(name, split):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise InputError("tfds:NAME needs the tensorflow-datasets package (pip install tensorflow-datasets) "
                         "and a network") from None
    try:
        ds = tfds.load(name, split="train" if split == "all" else split, as_supervised=True, batch_size=-1)
        x, y = tfds.as_numpy(ds)
    except Exception as e:
        raise InputError(f"tfds:{name} could not be loaded ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    x = x.astype(np.float32)
    if x.max() > 1.0:
        x = x / 255.0
    return x, y.astype(np.int64)


def load(spec="digits", split="train"):
    """Loads `(x, y)` for a data spec; y is None when the source has no labels.

    Args:
      spec: `digits`, `npz:PATH`, `dir:PATH`, `keras:mnist|fashion_mnist|cifar10` or `tfds:NAME`.
        Defaults to `digits`.
      split: `train`, `test` or `all`. Defaults to `train`.

    Raises:
      InputError: unknown spec or split, missing file, or a source that needs the network offline.
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}. Got: {split!r}")
    if not isinstance(spec, str) or not spec:
        raise InputError(f"data spec must be a string such as 'digits' or 'npz:PATH'. Got: {spec!r}")
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return _digits(split)
    handlers = {"npz": _npz, "dir": _image_dir, "keras": _keras, "tfds": _tfds}
    if kind not in handlers or not arg:
        raise InputError(f"unknown data spec {spec!r}; use digits, npz:PATH, dir:PATH, "
                         "keras:mnist|fashion_mnist|cifar10 or tfds:NAME")
    return handlers[kind](arg, split)


def fit_to_input(x, input_shape):
    """Resizes images (N, H, W, C) to a model's input shape; flattens them for vector inputs.

    Returns `(x, note)`, where note says what was done (None when nothing was).
    """
    shape = tuple(int(d) for d in input_shape[1:])
    if tuple(x.shape[1:]) == shape:
        return x, None
    src = tuple(x.shape[1:])
    if x.ndim == 4 and len(shape) == 1:  # vector model: resize to a square then flatten
        side = int(round((shape[0] / x.shape[3]) ** 0.5))
        if side * side * x.shape[3] != shape[0]:
            raise InputError(f"cannot map data of shape {src} to model input {shape}")
        x = _resize(x, side, side, x.shape[3]).reshape(len(x), -1)
    elif x.ndim == 4 and len(shape) == 3:
        x = _resize(x, shape[0], shape[1], shape[2])
    else:
        raise InputError(f"cannot map data of shape {src} to model input {shape}")
    return x, f"data resized from {src} to {tuple(x.shape[1:])} to match the model input"


def _resize(x, h, w, c):
    from tfcompress._tf import tf
    out = tf.image.resize(x, (h, w), method="bilinear").numpy().astype(np.float32)
    if out.shape[3] != c:
        if out.shape[3] == 1:
            out = np.repeat(out, c, axis=3)
        elif c == 1:
            out = out.mean(axis=3, keepdims=True)
        else:
            raise InputError(f"cannot map {out.shape[3]} channels to {c}")
    return out
