"""Distiller: the loss against a NumPy reference, output-kind detection, frozen teacher, input checks,
saving, and distillation composed with pruning (and QAT when it exists) in one fit, exported int8."""
import importlib

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras, tf
from tfcompress.distillation import Distiller
from tfcompress.errors import InputError

L = keras.layers
CLASSES = 5


# -- NumPy reference -------------------------------------------------------------------------------

def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def reference_loss(s_logits, t_logits, y, temperature, alpha, hints=(), feature_weight=1.0, weights=None):
    """alpha·T²·KL(mean_k softmax(t_k/T) ‖ softmax(s/T)) + (1−alpha)·CE(y, s) + w·Σ hints, in float64."""
    s = np.asarray(s_logits, np.float64)
    T = temperature
    p = np.mean([np.exp(_log_softmax(np.asarray(t, np.float64) / T)) for t in t_logits], axis=0)
    log_p = np.log(np.where(p > 0, p, 1.0))
    kl = (p * (log_p - _log_softmax(s / T))).sum(-1)
    per = alpha * T * T * kl
    if y is not None:
        per = per + (1 - alpha) * -_log_softmax(s)[np.arange(len(s)), np.asarray(y)]
    for h in hints:
        per = per + feature_weight * h
    if weights is None:
        return float(per.mean())
    return float((per * weights).sum() / len(per))


def mlp(name, hidden, softmax=False, seed=0):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((6,))
    x = L.Dense(hidden, activation="tanh", name=f"{name}_hidden")(x)
    out = L.Dense(CLASSES, activation="softmax" if softmax else None, name=f"{name}_out")(x)
    return keras.Model(inp, out, name=name)


def convnet(name, channels, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((4, 4, 2))
    x = L.Conv2D(channels, 3, padding="same", activation="relu", name=f"{name}_conv")(inp)
    x = L.Flatten()(x)
    out = L.Dense(CLASSES, name=f"{name}_out")(x)
    return keras.Model(inp, out, name=name)


def logits_of(model, x):
    """Pre-softmax outputs of a model whose last Dense has a softmax."""
    last = model.layers[-1]
    hidden = keras.Model(model.inputs, last.input)(x).numpy()
    kernel, bias = last.get_weights()
    return hidden @ kernel + bias


def features_of(model, layer_name, x):
    return keras.Model(model.inputs, model.get_layer(layer_name).output)(x).numpy().astype(np.float64)


def batch(shape=(6,), n=16, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, CLASSES, n)


def measured(distiller, x, y, **kwargs):
    """The loss as evaluate reports it (one batch), and as train_on_batch computes it before its update."""
    distiller.compile(keras.optimizers.SGD(0.0))
    ev = distiller.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True, **kwargs)["loss"]
    tr = distiller.train_on_batch(x, y, return_dict=True, **kwargs)["loss"]
    return ev, tr


# -- the loss ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha, temperature", [(0.9, 4.0), (0.3, 2.0), (1.0, 1.0)])
def test_loss_single_teacher_matches_numpy(alpha, temperature):
    x, y = batch()
    teacher, student = mlp("teacher", 12, seed=1), mlp("student", 4, seed=2)
    d = Distiller(student, teacher, temperature=temperature, alpha=alpha)
    ref = reference_loss(student(x).numpy(), [teacher(x).numpy()], y, temperature, alpha)
    assert ref > 0.05
    ev, tr = measured(d, x, y)
    assert abs(ev - ref) <= 1e-5 and abs(tr - ref) <= 1e-5
    parts, _ = d.compute_losses(x, y)
    assert abs(float(parts["loss"]) - ref) <= 1e-5
    kd = reference_loss(student(x).numpy(), [teacher(x).numpy()], None, temperature, 1.0)  # T²·KL alone
    assert kd > 0.01 and abs(float(parts["distillation_loss"]) - kd) <= 1e-5


def _ce(s_logits, y):
    return -_log_softmax(np.asarray(s_logits, np.float64))[np.arange(len(y)), np.asarray(y)]


def test_compile_loss_is_the_student_label_loss_in_the_one_minus_alpha_term():
    x, y = batch()
    student, teacher = mlp("student", 4), mlp("teacher", 8, seed=1)
    s = student(x).numpy().astype(np.float64)
    kd = reference_loss(s, [teacher(x).numpy()], None, 3.0, 1.0)          # T²·KL alone
    ce = _ce(s, y)
    onehot = np.eye(CLASSES)[y]
    huber = keras.losses.Huber(delta=0.5)
    err = np.abs(s - onehot)
    ref_huber = np.where(err <= 0.5, 0.5 * err ** 2, 0.5 * (err - 0.25)).mean(-1)
    d = Distiller(student, teacher, temperature=3.0, alpha=0.6)
    for loss, per_sample in ((None, ce), ("sparse_categorical_crossentropy", ce),
                             (keras.losses.SparseCategoricalCrossentropy(from_logits=True), ce),
                             (lambda yt, yp: 3.0 * keras.losses.sparse_categorical_crossentropy(
                                 yt, yp, from_logits=True), 3.0 * ce),
                             (huber, ref_huber)):
        d.compile(keras.optimizers.SGD(0.0), loss=loss)
        y_in = onehot.astype(np.float32) if loss is huber else y
        parts, _ = d.compute_losses(x, y_in)
        assert abs(float(parts["loss"]) - (0.6 * kd + 0.4 * per_sample.mean())) <= 1e-5, loss
        assert abs(float(parts["student_loss"]) - per_sample.mean()) <= 1e-5, loss
    assert abs(ref_huber.mean() - ce.mean()) > 0.1                      # the two losses differ measurably
    ev, tr = measured(d, x, onehot.astype(np.float32))                   # compiled without loss: default CE
    d.compile(keras.optimizers.SGD(0.0), loss=huber)
    logs = d.evaluate(x, onehot.astype(np.float32), batch_size=len(x), verbose=0, return_dict=True)
    assert abs(logs["loss"] - (0.6 * kd + 0.4 * ref_huber.mean())) <= 1e-5
    assert abs(logs["loss"] - ev) > 0.04                               # the reported loss follows `loss`
    assert abs(ev - (0.6 * kd + 0.4 * ce.mean())) <= 1e-5 and abs(tr - ev) <= 1e-5


def test_compile_loss_is_ignored_at_alpha_one_and_weighted_by_sample_weight():
    x, y = batch()
    student, teacher = mlp("student", 4), mlp("teacher", 8, seed=1)
    s = student(x).numpy()
    kd = reference_loss(s, [teacher(x).numpy()], None, 2.0, 1.0)
    d = Distiller(student, teacher, temperature=2.0, alpha=1.0)
    d.compile("adam", loss=lambda yt, yp: 100.0 * keras.losses.sparse_categorical_crossentropy(
        yt, yp, from_logits=True))
    parts, _ = d.compute_losses(x, y)
    assert abs(float(parts["loss"]) - kd) <= 1e-5
    assert abs(float(parts["student_loss"]) - 100.0 * _ce(s, y).mean()) <= 1e-3
    w = np.linspace(0.0, 2.0, len(x)).astype(np.float32)
    d = Distiller(student, teacher, temperature=2.0, alpha=0.5)
    d.compile("adam", loss=lambda yt, yp: 2.0 * keras.losses.sparse_categorical_crossentropy(
        yt, yp, from_logits=True))
    parts, _ = d.compute_losses(x, y, sample_weight=w)
    per = 0.5 * 4.0 * _kl_per_sample(s, teacher(x).numpy(), 2.0) + 0.5 * 2.0 * _ce(s, y)
    assert abs(float(parts["loss"]) - float((per * w).sum() / len(per))) <= 1e-5


def _kl_per_sample(s, t, T):
    p = np.exp(_log_softmax(np.asarray(t, np.float64) / T))
    return (p * (np.log(p) - _log_softmax(np.asarray(s, np.float64) / T))).sum(-1)


def test_loss_ensemble_of_logits_and_probabilities_matches_numpy():
    x, y = batch()
    t_logits, t_probs = mlp("t1", 12, seed=1), mlp("t2", 10, softmax=True, seed=3)
    student = mlp("student", 4, seed=2)
    d = Distiller(student, [t_logits, t_probs], temperature=3.0, alpha=0.6)
    assert [k for k, _ in d.output_kinds["teachers"]] == [None, "probabilities"]  # softmax seen at once
    ref = reference_loss(student(x).numpy(), [t_logits(x).numpy(), logits_of(t_probs, x)], y, 3.0, 0.6)
    ev, tr = measured(d, x, y)
    assert [k for k, _ in d.output_kinds["teachers"]] == ["logits", "probabilities"]  # the other on a probe
    assert abs(ev - ref) <= 1e-5 and abs(tr - ref) <= 1e-5
    single = reference_loss(student(x).numpy(), [t_logits(x).numpy()], y, 3.0, 0.6)
    assert abs(single - ref) > 1e-3


def test_loss_with_sample_weights_matches_numpy():
    x, y = batch()
    w = np.linspace(0.0, 2.0, len(x)).astype(np.float32)
    teacher, student = mlp("teacher", 12, seed=1), mlp("student", 4, seed=2)
    d = Distiller(student, teacher, temperature=2.0, alpha=0.5)
    ref = reference_loss(student(x).numpy(), [teacher(x).numpy()], y, 2.0, 0.5, weights=w)
    ev, tr = measured(d, x, y, sample_weight=w)
    assert abs(ev - ref) <= 1e-5 and abs(tr - ref) <= 1e-5


def _hint(s_feat, t_feat, projection=None):
    if projection is not None:
        kernel, bias = projection.get_weights()
        s_feat = s_feat @ kernel + bias
    return ((s_feat - t_feat) ** 2).reshape(len(s_feat), -1).mean(1)


def test_loss_with_features_matches_numpy():
    x, y = batch((4, 4, 2))
    teacher, student = convnet("teacher", 8, seed=1), convnet("student", 3, seed=2)
    d = Distiller(student, teacher, temperature=4.0, alpha=0.8, feature_weight=0.5,
                  features=[("teacher_conv", "student_conv")])
    assert len(d.projections) == 1 and d.projections[0].kernel.shape == (3, 8)
    hint = _hint(features_of(student, "student_conv", x), features_of(teacher, "teacher_conv", x), d.projections[0])
    assert hint.mean() > 0.01
    ref = reference_loss(student(x).numpy(), [teacher(x).numpy()], y, 4.0, 0.8, hints=[hint], feature_weight=0.5)
    ev, tr = measured(d, x, y)
    assert abs(ev - ref) <= 1e-5 and abs(tr - ref) <= 1e-5
    logs = d.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    assert abs(logs["feature_loss"] - hint.mean()) <= 1e-5


def test_loss_ensemble_with_features_matches_numpy():
    x, y = batch((4, 4, 2))
    t1, t2 = convnet("t1", 8, seed=1), convnet("t2", 3, seed=4)
    student = convnet("student", 3, seed=2)
    d = Distiller(student, [t1, t2], temperature=2.0, alpha=0.7,
                  features=[(t1.get_layer("t1_conv"), "student_conv"), ("t2_conv", "student_conv")])
    assert len(d.projections) == 1  # t2's conv has the student's 3 channels: compared directly
    s_f = features_of(student, "student_conv", x)
    hints = [_hint(s_f, features_of(t1, "t1_conv", x), d.projections[0]), _hint(s_f, features_of(t2, "t2_conv", x))]
    ref = reference_loss(student(x).numpy(), [t1(x).numpy(), t2(x).numpy()], y, 2.0, 0.7, hints=hints)
    ev, tr = measured(d, x, y)
    assert abs(ev - ref) <= 1e-5 and abs(tr - ref) <= 1e-5


# -- output kinds ------------------------------------------------------------------------------------

def test_probabilities_without_softmax_layer_are_detected_on_a_probe_batch():
    x, y = batch()
    base = mlp("teacher", 12, seed=1)
    probs = keras.Model(base.inputs, L.Lambda(tf.nn.softmax, name="normalise")(base.output))
    student = mlp("student", 4, seed=2)
    d = Distiller(student, probs, temperature=3.0, alpha=0.5)
    assert d.output_kinds["teachers"][0][0] is None  # undecided until a batch is seen
    ref = reference_loss(student(x).numpy(), [base(x).numpy()], y, 3.0, 0.5)
    ev, _ = measured(d, x, y)
    assert d.output_kinds["teachers"][0][0] == "probabilities"
    assert d.output_kinds["student"][0] == "logits"
    assert abs(ev - ref) <= 1e-5


def test_kind_override_and_sigmoid_refused():
    teacher, student = mlp("teacher", 12, seed=1), mlp("student", 4, seed=2)
    d = Distiller(student, teacher, teacher_outputs="logits", student_outputs="logits")
    assert d.output_kinds["teachers"][0] == ("logits", "given by teacher_outputs")
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    sig = keras.Model(inp, L.Dense(CLASSES, activation="sigmoid")(inp))
    with pytest.raises(InputError, match="sigmoid"):
        Distiller(student, sig)


# -- input checks -----------------------------------------------------------------------------------

def test_teacher_output_shape_differs_is_refused_before_training():
    student = mlp("student", 4)
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    other = keras.Model(inp, L.Dense(CLASSES + 1)(inp), name="wide")
    with pytest.raises(InputError, match=r"outputs shape \(6,\) but student 'student' outputs \(5,\)"):
        Distiller(student, other)
    with pytest.raises(InputError, match=r"teacher\[1\]"):
        Distiller(student, [mlp("t", 8), other])
    inp7 = keras.Input((7,))
    with pytest.raises(InputError, match="input shape"):
        Distiller(student, keras.Model(inp7, L.Dense(CLASSES)(inp7)))


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ({"features": [("nope", "student_hidden")]}, "no layer 'nope' in the teacher"),
    ({"teacher_outputs": "softmax"}, "teacher_outputs must be"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        Distiller(mlp("student", 4), mlp("teacher", 8), **kwargs)


def test_labels_needed_below_alpha_one_and_compile_refuses_what_is_not_one_loss():
    x, _ = batch()
    d = Distiller(mlp("student", 4), mlp("teacher", 8), alpha=0.9)
    for bad, message in ((42, "loss must be a loss name"), ("nope", "loss must be a loss name"),
                         (["mse", "mae"], "takes one loss"), ({"out": "mse"}, "takes one loss")):
        with pytest.raises(InputError, match=message):
            d.compile("adam", loss=bad)
    d.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(InputError, match="needs labels"):
        d.fit(x, epochs=1, verbose=0)
    d.compile("adam")
    with pytest.raises(InputError, match="needs labels"):
        d.fit(x, epochs=1, verbose=0)
    with pytest.raises(InputError, match="needs labels"):
        d.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=1, verbose=0)


# -- training ----------------------------------------------------------------------------------------

def test_teacher_frozen_student_trained_unlabeled_transfer_set():
    x, _ = batch((4, 4, 2), n=64)
    keras.utils.set_random_seed(3)
    inp = keras.Input((4, 4, 2))
    h = L.Conv2D(4, 3, name="conv")(inp)
    h = L.BatchNormalization(name="bn")(h)
    h = L.Dropout(0.5)(L.Flatten()(h))
    teacher = keras.Model(inp, L.Dense(CLASSES)(h), name="teacher")
    before = [w.copy() for w in teacher.get_weights()]
    student = convnet("student", 3, seed=2)
    s_before = student.get_weights()[0].copy()
    d = Distiller(student, teacher, alpha=1.0)
    d.compile(keras.optimizers.Adam(1e-2))
    assert {v.name for v in d.trainable_variables} == {v.name for v in student.trainable_variables}
    hist = d.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=8, verbose=0)
    losses = hist.history["distillation_loss"]
    assert "student_loss" not in hist.history
    assert losses[-1] < 0.6 * losses[0]
    for a, b in zip(before, teacher.get_weights()):  # kernels and BN moving statistics alike
        np.testing.assert_array_equal(a, b)
    assert np.abs(student.get_weights()[0] - s_before).max() > 1e-3


def test_save_saves_the_student(tmp_path):
    x, y = batch()
    student = mlp("student", 4, seed=2)
    d = Distiller(student, mlp("teacher", 12, seed=1))
    d.compile("adam")
    d.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "student.keras")
    d.save(path)
    loaded = tfc.load_model(path)
    assert loaded.name == "student"
    np.testing.assert_allclose(loaded(x).numpy(), student(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(d.predict(x, verbose=0), student(x).numpy(), atol=1e-6)


# -- composition with compression wrappers ------------------------------------------------------------

def relu6_net(name, width, seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(width, 3, padding="same", name=f"{name}_conv1")(inp)
    x = L.ReLU(6.0, name=f"{name}_relu6_1")(x)
    x = L.Conv2D(width, 3, strides=2, padding="same", name=f"{name}_conv2")(x)
    x = L.ReLU(6.0, name=f"{name}_relu6_2")(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(10, name=f"{name}_logits")(x), name=name)


@pytest.fixture(scope="module")
def digits():
    from tfcompress import data
    x, y = data.load("digits", "train")
    xt, yt = data.load("digits", "test")
    return x[:512], y[:512], xt[:200], yt[:200]


@pytest.fixture(scope="module")
def digits_teacher(digits):
    x, y, _, _ = digits
    teacher = relu6_net("teacher", 16, seed=0)
    teacher.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return teacher


def _distil_compressed(student, teacher, x, y, epochs):
    d = Distiller(student, teacher, temperature=4.0, alpha=0.9)
    d.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    d.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[tfc.CompressionCallback()])
    return d


def test_pruned_student_without_the_callback_is_refused():
    x, y = batch()
    d = Distiller(tfc.prune(mlp("student", 4), tfc.ConstantSparsity(0.5)), mlp("teacher", 8))
    d.compile("adam")
    with pytest.raises(tfc.Error, match="CompressionCallback"):
        d.fit(x, y, epochs=1, verbose=0)


def test_distil_and_prune_in_one_fit_then_export_int8(digits, digits_teacher, tmp_path):
    from tfcompress.pruning.magnitude import sparsity, wrappers
    x, y, xt, yt = digits
    steps = 16 * 6
    student = tfc.prune(relu6_net("student", 8, seed=1),
                        tfc.PolynomialDecay(0.5, end_step=steps // 2, frequency=4))
    d = _distil_compressed(student, digits_teacher, x, y, epochs=6)
    found = wrappers(d)
    assert len(found) == 3  # the student's wrappers, found through the Distiller, each once
    for w in found:
        assert abs(sparsity(w) - 0.5) <= 0.01
    plain = tfc.strip(d.student)
    assert not wrappers(plain)
    kernels = [l.kernel.numpy() for l in plain.layers if hasattr(l, "kernel")]
    total = sum(k.size for k in kernels)
    assert abs(sum((k == 0).sum() for k in kernels) / total - 0.5) <= 0.01
    report = tfc.export(plain, str(tmp_path / "student.tflite"), mode="int8", representative_data=x[:64],
                        eval_data=(xt, yt))
    assert report.input_dtype == "int8" and not report.float_ops
    assert len(report.relu6) >= 2 and report.relu6_all_pinned
    assert report.tflite_accuracy >= 0.6
    assert report.agreement >= 0.9


def test_distil_a_clustered_student(digits, digits_teacher):
    from tfcompress.clustering import distinct_values, wrappers
    x, y, xt, yt = digits
    base = relu6_net("student", 8, seed=1)
    base.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    base.fit(x, y, epochs=2, batch_size=32, verbose=0)  # clusters of a random init would be meaningless
    d = _distil_compressed(tfc.cluster(base, clusters=8), digits_teacher, x, y, epochs=3)
    assert len(wrappers(d)) == 3
    plain = tfc.strip(d.student)
    kernels = [l.kernel.numpy() for l in plain.layers if hasattr(l, "kernel")]
    assert len(kernels) == 3 and all(distinct_values(k) <= 8 for k in kernels)
    assert float(np.mean(plain.predict(xt, verbose=0).argmax(1) == yt)) >= 0.6


def _has_qat():
    try:
        return hasattr(importlib.import_module("tfcompress.quantization"), "quantize")
    except ImportError:
        return False


@pytest.mark.skipif(not _has_qat(), reason="tfcompress.quantization has not landed")
def test_distil_and_qat_of_a_50_percent_pruned_student_in_one_fit_then_export_int8(digits, digits_teacher, tmp_path):
    from tfcompress.pruning.magnitude import wrappers
    from tfcompress.tflite import reader
    x, y, xt, yt = digits
    # tfc.quantize strips pruning wrappers (keeping their zeros) so no schedule can run under QAT: the
    # student is pruned to 50 % by magnitude at the start, then distilled and QAT-trained in one fit.
    student = tfc.prune(relu6_net("student", 8, seed=1), tfc.ConstantSparsity(0.5))
    for w in wrappers(student):
        w.update_masks(0.5)
    student = tfc.quantize(student)
    d = _distil_compressed(student, digits_teacher, x, y, epochs=6)
    plain = tfc.strip(d.student)
    kernels = [v.numpy() for v in plain.weights if v.name.endswith("/kernel:0")]
    assert len(kernels) == 3
    assert abs(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels) - 0.5) <= 0.01
    path = str(tmp_path / "student.tflite")
    report = tfc.export(plain, path, mode="int8", representative_data=x[:64], eval_data=(xt, yt))
    assert report.input_dtype == "int8" and not report.float_ops
    assert len(report.relu6) >= 2 and report.relu6_all_pinned
    assert report.tflite_accuracy >= 0.6 and report.agreement >= 0.9
    weights = [t for t in reader.read(path).tensors() if t.is_constant and str(t.dtype).upper() == "INT8"
               and t.size in {k.size for k in kernels}]
    assert len(weights) == 3  # the int8 file keeps the zeros
    assert abs(sum(t.zero_fraction * t.size for t in weights) / sum(t.size for t in weights) - 0.5) <= 0.01


# -- the recipe stage ------------------------------------------------------------------------------

STAGE_RECIPE = """
name: distill_stage
seed: 0
data: digits
model: {build: lenet300, args: {input_shape: [8, 8, 1]}}
output: OUT
steps:
  - train: {epochs: 2, batch_size: 128, learning_rate: 0.005}
  - distill:
      student: {build: mobilenet_v2_small, args: {input_shape: [8, 8, 1], width: 4, head: 8, dropout: 0.0,
                                                  blocks: [[1, 4, 1]]}}
      epochs: 2
      batch_size: 128
      learning_rate: 0.005
      prune: {type: PolynomialDecay, target: 0.5, end_step: auto, frequency: 2}
      quantize: QAT
  - strip
"""


def test_distill_stage_records_teacher_baseline_and_distilled_student(tmp_path):
    from tfcompress import recipes
    path = tmp_path / "r.yaml"
    path.write_text(STAGE_RECIPE.replace("OUT", str(tmp_path / "out")).replace("QAT", "true" if _has_qat() else "false"))
    lines = []
    state = recipes.run(str(path), echo=lines.append)
    row = next(r for r in state.rows if r["stage"] == "distill")
    assert set(row) == {"stage", "teacher", "student_labels", "distilled", "sparsity"}
    assert row["teacher"] > 0.5 and 0.0 <= row["student_labels"] <= 1.0 and 0.0 <= row["distilled"] <= 1.0
    assert abs(row["sparsity"] - 0.5) <= 0.01
    assert state.teacher.name == "lenet300_100" and state.model.name == "mobilenet_v2_small"
    assert any("student from labels" in l for l in lines)
    assert any("student distilled + pruned" + (" + QAT" if _has_qat() else "") in l for l in lines)


def test_distill_stage_options_are_checked():
    from tfcompress import recipes
    with pytest.raises(InputError, match="qat_epochs"):
        recipes.parse(STAGE_RECIPE.replace("quantize: QAT", "quantize: false\n      qat_epochs: 2"))
    bad = STAGE_RECIPE.replace("QAT", "true").replace("epochs: 2\n      batch_size: 128", "epochs: 2\n      alpha: 2.0\n      batch_size: 128")
    with pytest.raises(InputError, match=r"steps\[1\]\.distill: alpha must be in \[0, 1\]"):
        recipes.parse(bad)
    with pytest.raises(InputError, match=r"steps\[1\]\.distill: student\.nope: unknown key"):
        recipes.parse(STAGE_RECIPE.replace("QAT", "true").replace("args: {input_shape: [8, 8, 1], width: 4",
                                           "nope: 1, args: {input_shape: [8, 8, 1], width: 4"))


def test_recipe_file_parses():
    import os
    from tfcompress import recipes
    recipe, steps = recipes.load(os.path.join(os.path.dirname(__file__), "..", "recipes", "distill_digits.yaml"))
    names = [n for n, _ in steps]
    assert names == ["train", "distill", "strip", "save", "export"]
    config = steps[1][1]
    assert config.prune["target"] == 0.5 and config.student.build == "mobilenet_v2_small"


def test_strip_and_export_of_a_distiller_act_on_its_student(tmp_path):
    import numpy as np
    import tfcompress as tfc
    from tfcompress._tf import keras
    from tfcompress.pruning.magnitude import sparsity, wrappers
    rng = np.random.RandomState(0)
    x, y = rng.rand(128, 8).astype("float32"), rng.randint(0, 3, 128)
    teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)])
    student = tfc.prune(keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu6"),
                                          keras.layers.Dense(3)]), tfc.ConstantSparsity(0.5, frequency=1))
    distiller = tfc.Distiller(student, teacher, alpha=1.0)
    distiller.compile(keras.optimizers.Adam(1e-2))
    distiller.fit(x, epochs=1, batch_size=32, verbose=0, callbacks=[tfc.CompressionCallback()])
    plain = tfc.strip(distiller)
    assert not wrappers(plain) and len(plain.layers) == 2
    assert sparsity(plain.layers[0].kernel.numpy()) == 0.5
    report = tfc.export(distiller, tmp_path / "s.tflite", representative_data=x[:32])
    assert report.relu6_all_pinned and len(report.relu6) == 1
