"""tfcompress/evaluation.py: labels, top-1, Keras and .tflite accuracy, and the comparison of the two."""
import numpy as np
import pytest

from tfcompress import evaluation
from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.exporting import export


def linear_model(classes=3, features=4, seed=0):
    """A Dense classifier with fixed weights: its outputs are x @ w + b, computable by hand."""
    rng = np.random.RandomState(seed)
    model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(classes)])
    w, b = rng.normal(size=(features, classes)).astype(np.float32), rng.normal(size=classes).astype(np.float32)
    model.layers[0].set_weights([w, b])
    return model, w, b


def data(n=300, features=4, seed=1):
    return np.random.RandomState(seed).uniform(-1, 1, (n, features)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    model, w, b = linear_model()
    x = data()
    float_path, int8_path = str(out / "m_float.tflite"), str(out / "m_int8.tflite")
    export(model, float_path, mode="float32", layer_samples=0)
    export(model, int8_path, mode="int8", representative_data=x[:200], layer_samples=0)
    return model, w, b, x, float_path, int8_path


def test_class_labels_of_every_form():
    assert evaluation.class_labels([2, 0, 1]).tolist() == [2, 0, 1]
    assert evaluation.class_labels(np.array([[2], [0], [1]])).tolist() == [2, 0, 1]   # a column, not one-hot
    assert evaluation.class_labels(np.eye(3)[[2, 0, 1]]).tolist() == [2, 0, 1]
    assert evaluation.class_labels(None) is None
    with pytest.raises(InputError, match=r"one row per sample \(4\). Got: shape \(3,\)"):
        evaluation.class_labels([1, 2, 3], samples=4)


def test_top1_counts_argmax_hits_of_logits_or_probabilities():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, -1.0, 0.0], [0.0, 0.5, 1.0], [0.2, 0.1, 0.0]])
    assert evaluation.top1(logits, [1, 0, 0, 0]) == pytest.approx(0.75)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert evaluation.top1(probs, np.eye(3)[[1, 0, 0, 0]]) == pytest.approx(0.75)
    assert evaluation.is_classifier(logits) and not evaluation.is_classifier(logits[:, :1])


def test_keras_accuracy_matches_a_hand_computation():
    model, w, b = linear_model()
    x = data()
    y = np.random.RandomState(2).randint(0, 3, len(x))
    expected = float(np.mean((x @ w + b).argmax(1) == y))
    assert 0.1 < expected < 0.9
    assert evaluation.keras_accuracy(model, x, y) == pytest.approx(expected, abs=1e-12)
    assert evaluation.keras_accuracy(model, x, y, batch_size=7) == pytest.approx(expected, abs=1e-12)
    # labels equal to the model's own predictions score 1
    assert evaluation.keras_accuracy(model, x, (x @ w + b).argmax(1)) == 1.0


def test_keras_accuracy_refuses_what_it_cannot_score():
    model, _, _ = linear_model(classes=1)
    with pytest.raises(InputError, match=r"classifier output .* Got: shape \(5, 1\)"):
        evaluation.keras_accuracy(model, data(5), [0] * 5)
    with pytest.raises(InputError, match="Got: 0 samples"):
        evaluation.keras_accuracy(linear_model()[0], np.zeros((0, 4), np.float32), [])


def test_float_file_scores_like_the_keras_model(files):
    model, w, b, x, float_path, _ = files
    y = (x @ w + b).argmax(1)
    y[::4] = (y[::4] + 1) % 3                       # a quarter of the labels wrong
    assert evaluation.tflite_accuracy(float_path, x, y) == pytest.approx(0.75, abs=1 / len(x))
    result = evaluation.evaluate_tflite(float_path, x, y, reference=model)
    assert result.samples == len(x) and result.runtime
    assert result.accuracy == pytest.approx(evaluation.keras_accuracy(model, x, y), abs=1e-12)
    assert result.float_accuracy == pytest.approx(result.accuracy, abs=1e-12)
    assert result.agreement == 1.0 and result.max_abs_diff < 1e-5


def test_int8_file_gets_float_inputs_quantized(files):
    model, w, b, x, _, int8_path = files
    from tfcompress.tflite import reader
    assert reader.read(int8_path).input_dtypes == ["int8"]
    y = (x @ w + b).argmax(1)
    result = evaluation.evaluate_tflite(int8_path, x, y, reference=model)
    assert result.agreement >= 0.97 and result.accuracy >= 0.97
    assert result.float_accuracy == 1.0
    assert 0 < result.max_abs_diff < 0.1            # int8 rounding, not garbage from unquantized inputs
    got, _ = evaluation.tflite_outputs(int8_path, x)
    assert np.allclose(got, x @ w + b, atol=0.1)


def test_without_labels_or_reference_only_what_can_be_known(files):
    model, _, _, x, float_path, _ = files
    alone = evaluation.evaluate_tflite(float_path, x)
    assert (alone.accuracy, alone.float_accuracy, alone.agreement, alone.max_abs_diff) == (None,) * 4
    no_labels = evaluation.evaluate_tflite(float_path, x, reference=model)
    assert no_labels.accuracy is None and no_labels.float_accuracy is None and no_labels.agreement == 1.0
    assert set(no_labels.to_dict()) == {"samples", "runtime", "accuracy", "float_accuracy", "agreement",
                                        "max_abs_diff"}


def test_tflite_errors_are_input_errors(files, tmp_path):
    model, _, _, x, float_path, _ = files
    other, _, _ = linear_model(classes=5)
    with pytest.raises(InputError, match=r"output shape \(5,\) differs from the file's \(3,\)"):
        evaluation.evaluate_tflite(float_path, x, reference=other)
    with pytest.raises(InputError, match="cannot run"):
        evaluation.tflite_outputs(float_path, np.zeros((4, 7), np.float32))
    with pytest.raises(InputError, match="no such file"):
        evaluation.tflite_accuracy(str(tmp_path / "none.tflite"), x, [0] * len(x))
    with pytest.raises(InputError, match="one row per sample"):
        evaluation.evaluate_tflite(float_path, x, [0, 1])
