"""tfcompress/recipe/state.py: RunState and the helpers every recipe stage uses."""
import dataclasses

import numpy as np
import pytest

from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.recipe import schema
from tfcompress.recipe.state import (RunState, TrainConfig, accuracy, build_model, compile_model, fit, format_row,
                                     optimizer, record)


def blobs(n=400, seed=0):
    """Three well separated Gaussian blobs in 4-d: a linear classifier learns them in a few epochs."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, n)
    centers = np.array([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0]], np.float32)
    return (centers[y] + rng.normal(0, 0.5, (n, 4))).astype(np.float32), y


def make_state(model=None, echo=None):
    recipe = schema.parse_recipe("name: t\nmodel: {build: lenet300}\nsteps: [train]")
    if model is None:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    lines = []
    state = RunState(recipe=recipe, out="unused", echo=echo or lines.append, model=model,
                     train=blobs(400, 0), test=blobs(200, 1))
    return state, lines


def test_run_state_fields_and_defaults():
    state, _ = make_state()
    assert (state.rows, state.files, state.reports, state.sizes) == ([], {}, [], [])
    assert state.sparsity is None and state.clusters is None and state.bench is None and state.teacher is None
    other, _ = make_state(model=state.model)
    assert other.rows is not state.rows and other.files is not state.files   # no shared mutable defaults
    with pytest.raises(TypeError):   # typed fields, not string keys
        state["sparsity"]
    assert {f.name for f in dataclasses.fields(RunState)} >= {
        "recipe", "out", "echo", "model", "train", "test", "rows", "files", "reports", "sparsity", "clusters",
        "sizes", "bench", "teacher"}


def test_summary_holds_what_summary_json_did():
    state, _ = make_state()

    class Report:
        def to_dict(self):
            return {"mode": "int8", "bytes": 10}
    state.rows.append({"stage": "train", "accuracy": 0.5})
    state.files["int8"] = "t_int8.tflite"
    state.reports.append(Report())
    state.bench = [{"mean_ms": 1.0}]
    assert state.summary() == {"recipe": "t", "stages": [{"stage": "train", "accuracy": 0.5}],
                               "files": {"int8": "t_int8.tflite"}, "sparsity": None, "bench": [{"mean_ms": 1.0}],
                               "exports": [{"mode": "int8", "bytes": 10}]}
    assert list(state.summary()) == ["recipe", "stages", "files", "sparsity", "bench", "exports"]


def test_record_appends_the_row_and_echoes_its_values():
    state, lines = make_state()
    row = record(state, "export int8", accuracy=0.93456, bytes=1234, note=None)
    assert row == {"stage": "export int8", "accuracy": 0.93456, "bytes": 1234, "note": None}
    assert state.rows == [row]
    assert lines == ["  accuracy 0.9346, bytes 1234, note None"]
    assert format_row(row) == "accuracy 0.9346, bytes 1234"            # the summary table leaves out None


def test_accuracy_scores_the_test_split_of_the_current_or_a_given_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
    model.layers[0].set_weights([np.eye(4, 3, dtype=np.float32)])      # picks the blob's own axis
    state, _ = make_state(model=model)
    x, y = state.test
    expected = float(np.mean(x[:, :3].argmax(1) == y))
    assert expected > 0.95
    assert accuracy(state) == pytest.approx(expected, abs=1e-12)
    flipped = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
    flipped.layers[0].set_weights([-np.eye(4, 3, dtype=np.float32)])
    assert accuracy(state, flipped) == pytest.approx(float(np.mean((-x[:, :3]).argmax(1) == y)), abs=1e-12)
    assert accuracy(state) == pytest.approx(expected, abs=1e-12)      # the given model did not replace it


def test_fit_trains_the_current_model_or_a_given_one_with_callbacks():
    state, _ = make_state()
    before = accuracy(state)
    seen = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)
    history = fit(state, TrainConfig(epochs=3, batch_size=32, learning_rate=0.05), callbacks=[Count()])
    assert seen == [0, 1, 2] and len(history.history["loss"]) == 3
    assert accuracy(state) >= 0.95 > before
    assert isinstance(state.model.optimizer, keras.optimizers.Adam)
    keras.utils.set_random_seed(1)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    weights = [w.copy() for w in state.model.get_weights()]
    fit(state, TrainConfig(epochs=2, learning_rate=0.05, optimizer="sgd"), model=other)
    assert isinstance(other.optimizer, keras.optimizers.SGD)
    assert accuracy(state, other) >= 0.9
    assert all(np.array_equal(a, b) for a, b in zip(weights, state.model.get_weights()))   # untouched


def test_compile_model_and_optimizer():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    compile_model(model, 0.01, "sgd")
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert model.loss.get_config()["from_logits"] is True
    opt = optimizer("adam", 2e-3)
    assert isinstance(opt, keras.optimizers.Adam) and float(opt.learning_rate) == pytest.approx(2e-3)
    with pytest.raises(InputError, match="adam or sgd. Got: 'rmsprop'"):
        optimizer("rmsprop", 1e-3)


@pytest.mark.parametrize("options, message", [
    ({"optimizer": "rmsprop"}, "optimizer must be adam or sgd. Got: 'rmsprop'"),
    ({"epochs": -1}, "epochs must be >= 0"),
    ({"batch_size": 0}, "batch_size >= 1"),
    ({"learning_rate": 0.0}, "learning_rate > 0"),
])
def test_train_config_refuses_bad_values(options, message):
    with pytest.raises(InputError, match=message):
        TrainConfig(**options)


def test_build_model_by_name_or_path(tmp_path):
    model = build_model(schema.ModelConfig(build="lenet300", args={"input_shape": [8, 8, 1]}))
    assert model.name == "lenet300_100" and model.input_shape == (None, 8, 8, 1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = build_model(schema.ModelConfig(path=path))
    assert loaded.count_params() == model.count_params()
    with pytest.raises(InputError, match=r"student.build: unknown model 'nope'; choose one of .*lenet300"):
        build_model(schema.ModelConfig(build="nope"), "student")
    with pytest.raises(InputError, match="model not found"):
        build_model(schema.ModelConfig(path=str(tmp_path / "none.keras")))
