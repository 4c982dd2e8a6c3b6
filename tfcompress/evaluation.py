"""Accuracy of a Keras model or a .tflite file on labelled data, and how closely the two agree.

The one evaluation path of the package: `tfc.export` (the numbers of an `ExportReport`), the
`tfcompress eval` command and the recipe stages all score models here, so a file's accuracy is the same
number wherever it is printed.

Outputs are scored by top-1: the argmax over the last axis of a `(samples, classes)` output, whether
logits or probabilities. Labels are class indices `(samples,)` / `(samples, 1)` or one-hot rows
`(samples, classes)`. A .tflite file runs through `tfcompress.tflite.runtime`, which quantizes float
inputs with the file's input scale and zero point (int8, uint8, int16 inputs) and dequantizes its
outputs, so integer files are scored on the same float data as the Keras model.
"""
import dataclasses
import os
import typing

import numpy as np

from tfcompress.errors import InputError

KERAS_BATCH = 256    # rows per Keras predict call
TFLITE_BATCH = 64    # rows per interpreter invoke when the file's batch dimension can be resized


@dataclasses.dataclass
class Evaluation:
    """What `evaluate_tflite` measured; a field is `None` when the data or the model cannot give it.

    `accuracy` is the file's top-1 accuracy (labels and a classifier output needed); `float_accuracy`,
    `agreement` (the fraction of samples where the file and the Keras model pick the same class) and
    `max_abs_diff` (the largest output difference) need a reference Keras model.
    """
    samples: int
    runtime: str = ""
    accuracy: typing.Optional[float] = None
    float_accuracy: typing.Optional[float] = None
    agreement: typing.Optional[float] = None
    max_abs_diff: typing.Optional[float] = None

    def to_dict(self):
        return dataclasses.asdict(self)


def class_labels(y, samples=None):
    """Class indices of labels given as indices or one-hot rows.

    Example:

    >>> class_labels([[0, 1], [1, 0]]).tolist(), class_labels([[2], [0]]).tolist()
    ([1, 0], [2, 0])

    Args:
      y: labels, `(samples,)`, `(samples, 1)` or one-hot `(samples, classes)`; or `None`.
      samples: how many samples the labels must cover. Defaults to `None` (as many as `y` has).

    Returns:
      An integer array `(samples,)`, or `None` when `y` is `None`.

    Raises:
      InputError: the labels do not match the number of samples.
    """
    if y is None:
        return None
    y = np.asarray(y)
    n = len(y) if samples is None else samples
    if y.size == 0 or len(y) != n:
        raise InputError(f"labels must have one row per sample ({n}). Got: shape {y.shape}")
    y = y.reshape(n, -1)
    return y.argmax(1) if y.shape[1] > 1 else y[:, 0]


def is_classifier(outputs):
    """True for a `(samples, classes)` output with more than one class: what top-1 can score."""
    return np.ndim(outputs) == 2 and np.shape(outputs)[1] > 1


def top1(outputs, labels):
    """Fraction of samples whose argmax output is the label (`labels` as for `class_labels`).

    >>> top1([[0.1, 2.0], [3.0, -1.0], [0.0, 1.0]], [1, 0, 0])
    0.6666666666666666
    """
    labels = class_labels(labels, len(outputs))
    return float(np.mean(np.asarray(outputs).argmax(1) == labels))


def _samples(x):
    x = np.asarray(x, dtype=np.float32)
    if not len(x):
        raise InputError("no samples to evaluate on. Got: 0 samples")
    return x


def keras_outputs(model, x, batch_size=KERAS_BATCH):
    """A Keras model's outputs on `x` (float32), predicted in batches of `batch_size` rows."""
    return model.predict(_samples(x), batch_size=batch_size, verbose=0)


def keras_accuracy(model, x, y, batch_size=KERAS_BATCH):
    """Top-1 accuracy of a Keras classifier on `(x, y)`.

    Args:
      model: a tf_keras model with a `(samples, classes)` output (logits or probabilities).
      x: the inputs, first axis the samples.
      y: class indices or one-hot labels.
      batch_size: rows per predict call. Defaults to `256`.

    Returns:
      The accuracy as a float in [0, 1].

    Raises:
      InputError: no samples, labels that do not match them, or a model that is not a classifier.
    """
    outputs = keras_outputs(model, x, batch_size)
    if not is_classifier(outputs):
        raise InputError(f"accuracy needs a classifier output (samples, classes). Got: shape {outputs.shape}")
    return top1(outputs, y)


def tflite_outputs(model, x, num_threads=1, batch=TFLITE_BATCH):
    """A .tflite model's float32 outputs on float inputs `x` (quantized to the file's input type).

    Args:
      model: a path, the file's bytes or a `tfcompress.tflite.runtime.Interpreter`.
      x: the inputs of its single input, first axis the samples.
      num_threads: interpreter threads when `model` is not an interpreter. Defaults to `1`.
      batch: rows per invoke when the file's batch dimension can be resized. Defaults to `64`.

    Returns:
      `(outputs, runtime name)`.

    Raises:
      InputError: the file cannot be loaded or run on `x`, or it has more than one output.
    """
    from tfcompress.tflite import runtime
    name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else "the model"
    x = _samples(x)
    it = model if isinstance(model, runtime.Interpreter) else runtime.Interpreter(model, num_threads=num_threads)
    try:
        got = runtime.run(it, x, batch=batch)
    except (ValueError, RuntimeError) as e:
        raise InputError(f"cannot run {name} on the data: {str(e).splitlines()[0]}") from None
    if isinstance(got, list):
        raise InputError(f"{name} has {len(got)} outputs; evaluation scores a single output")
    return got, it.runtime


def tflite_accuracy(model, x, y, num_threads=1):
    """Top-1 accuracy of a .tflite classifier on `(x, y)`; `model` as for `tflite_outputs`.

    Raises:
      InputError: as `tflite_outputs`, or the file's output is not `(samples, classes)`.
    """
    got, _ = tflite_outputs(model, x, num_threads)
    if not is_classifier(got):
        raise InputError(f"accuracy needs a classifier output (samples, classes). Got: shape {got.shape}")
    return top1(got, y)


def evaluate_tflite(model, x, y=None, reference=None, num_threads=1):
    """Scores a .tflite file on `(x, y)` and, given the Keras model it came from, compares the two.

    Args:
      model: a path, the file's bytes or a `tfcompress.tflite.runtime.Interpreter`.
      x: the inputs, first axis the samples.
      y: class indices or one-hot labels. Defaults to `None` (no accuracy).
      reference: the Keras model to compare with. Defaults to `None`.
      num_threads: interpreter threads. Defaults to `1`.

    Returns:
      An `Evaluation`. Accuracy, float accuracy and agreement are filled for classifier outputs only;
      `max_abs_diff` whenever there is a reference.

    Raises:
      InputError: no samples, labels that do not match them, a file that cannot run on `x`, or a
        reference whose output shape differs from the file's.
    """
    x = _samples(x)
    got, runtime_name = tflite_outputs(model, x, num_threads)
    labels = class_labels(y, len(x))
    result = Evaluation(samples=int(len(x)), runtime=runtime_name)
    classifier = is_classifier(got)
    if labels is not None and classifier:
        result.accuracy = top1(got, labels)
    if reference is not None:
        ref = keras_outputs(reference, x)
        if ref.shape != got.shape:
            raise InputError(f"the Keras model's output shape {ref.shape[1:]} differs from the file's "
                             f"{got.shape[1:]}: is it the model this file was exported from?")
        result.max_abs_diff = float(np.max(np.abs(ref - got)))
        if classifier:
            result.agreement = float(np.mean(ref.argmax(1) == got.argmax(1)))
            if labels is not None:
                result.float_accuracy = top1(ref, labels)
    return result
