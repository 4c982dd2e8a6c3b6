"""tfcompress.exits: add_exits (training, loss weights), stage split, export_exits, Runner, calibrate_exits."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.exits import ExitPolicy, Runner
from tfcompress.exits.calibration import evaluate_policy, exit_logits
from tfcompress.exits.export import backbone, stage_models
from tfcompress.exits.heads import ExitModel, exit_points

L = keras.layers
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 1), name="img")
    h = L.Conv2D(8, 3, padding="same", activation="relu6", name="c1")(x)
    h = L.Conv2D(8, 3, padding="same", name="c2")(h)
    h = L.ReLU(6.0, name="r2")(h)
    h = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6", name="c3")(h)
    h = L.Conv2D(16, 3, padding="same", activation="relu6", name="c4")(h)
    h = L.GlobalAveragePooling2D(name="pool")(h)
    return keras.Model(x, L.Dense(10, name="logits")(h), name="small")


@pytest.fixture(scope="module")
def digits():
    from tfcompress import data
    x, y = data.load("digits", "train")
    xt, yt = data.load("digits", "test")
    return x, y, xt, yt


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    x, y, xt, yt = digits
    ee = tfc.add_exits(small_model(), at=["r2", "c3"])
    ee.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    ee.fit(x, y, epochs=12, batch_size=32, verbose=0)
    path = str(tmp_path_factory.mktemp("exits") / "exits.tflite")
    report = tfc.export_exits(ee, path, representative_data=x[:128])
    return ee, path, report


def test_add_exits_outputs_and_original_untouched():
    base = small_model()
    before = [w.copy() for w in base.get_weights()]
    ee = tfc.add_exits(base, at=["c3", "r2"])                     # sorted by depth
    assert isinstance(ee, ExitModel)
    assert ee.output_names == ["exit0", "exit1", "logits"]
    assert ee.exit_at == ["r2", "c3"]
    assert exit_points(ee) == (["r2", "c3"], ["exit0", "exit1"], "logits")
    assert len(base.outputs) == 1 and all(np.array_equal(a, b) for a, b in zip(before, base.get_weights()))
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(ee.predict(x, verbose=0)[2], base.predict(x, verbose=0), atol=1e-6)
    # a plain copy (as after tfc.prune / strip) still knows its exits from the layer names
    plain = keras.Model(ee.inputs, ee.outputs)
    assert exit_points(plain) == (["r2", "c3"], ["exit0", "exit1"], "logits")


def test_loss_weights_weight_the_exit_losses(digits):
    x, y, _, _ = digits
    ee = tfc.add_exits(small_model(), at=["r2", "c3"], loss_weights=[0.5, 2.0])
    ee.compile(optimizer="adam")
    values = ee.evaluate(x[:64], y[:64], verbose=0, return_dict=True)
    expected = 0.5 * values["exit0_loss"] + 2.0 * values["exit1_loss"] + 1.0 * values["logits_loss"]
    assert values["loss"] == pytest.approx(expected, rel=1e-5)
    # weight 0: the exit's head gets no gradient, so fit leaves it exactly as it was
    ee = tfc.add_exits(small_model(), at=["r2", "c3"], loss_weights=[0.0, 1.0, 1.0])
    ee.compile(optimizer="adam")
    head0, head1 = ee.get_layer("exit0").get_weights()[0].copy(), ee.get_layer("exit1").get_weights()[0].copy()
    ee.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)
    assert np.array_equal(head0, ee.get_layer("exit0").get_weights()[0])
    assert not np.array_equal(head1, ee.get_layer("exit1").get_weights()[0])


def test_add_exits_errors():
    base = small_model()
    with pytest.raises(InputError, match="no layer named 'nope'"):
        tfc.add_exits(base, at=["nope"])
    with pytest.raises(InputError, match="output layer"):
        tfc.add_exits(base, at=["logits"])
    with pytest.raises(InputError, match=r"one non-negative weight per exit \(1\).*Got: \[1.0, 2.0, 3.0\]"):
        tfc.add_exits(base, at=["c3"], loss_weights=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="at least one"):
        tfc.add_exits(base, at=[])


def test_stages_compose_to_the_model_and_a_crossing_cut_is_refused():
    ee = tfc.add_exits(small_model(), at=["r2", "c3"])
    x = np.random.default_rng(1).uniform(0, 1, (5, 8, 8, 1)).astype(np.float32)
    want = ee.predict(x, verbose=0)
    s0, s1, s2 = stage_models(ee)
    e0, f0 = s0.predict(x, verbose=0)
    e1, f1 = s1.predict(f0, verbose=0)
    np.testing.assert_allclose(e0, want[0], atol=1e-6)
    np.testing.assert_allclose(e1, want[1], atol=1e-6)
    np.testing.assert_allclose(s2.predict(f1, verbose=0), want[2], atol=1e-6)
    np.testing.assert_allclose(backbone(ee).predict(x, verbose=0), want[2], atol=1e-6)
    assert "exit0" not in [l.name for l in backbone(ee).layers]
    # a residual connection across the cut: stage 1 would need a tensor from stage 0
    inp = keras.Input((8, 8, 1))
    a = L.Conv2D(4, 3, padding="same", name="a")(inp)
    b = L.Conv2D(4, 3, padding="same", name="b")(a)
    out = L.Dense(10, name="out")(L.GlobalAveragePooling2D()(L.Add(name="add")([a, b])))
    res = tfc.add_exits(keras.Model(inp, out), at=["b"])
    with pytest.raises(InputError, match="'add' reads 'a', which is before the cut"):
        stage_models(res)


def test_export_int8_one_signature_per_stage_integer_only(trained):
    ee, path, report = trained
    assert report.float_ops == [] and report.mode == "int8"
    assert report.relu6 and report.relu6_all_pinned            # 6/255, zero point -128
    runner = Runner(path)
    assert [s.key for s in runner.stages] == ["stage_0", "stage_1", "stage_2"]
    for s in runner.stages:
        details = [s.input, s.logits] + ([s.features] if s.features else [])
        assert all(np.dtype(d["dtype"]) == np.int8 for d in details)
    assert runner.stages[0].input["shape"].tolist() == [1, 8, 8, 1]
    assert runner.stages[1].input["shape"].tolist() == [1, 8, 8, 8]
    assert runner.stages[2].input["shape"].tolist() == [1, 4, 4, 16]
    assert runner.stage_handoff_requantizes() == [False, False]   # int8 features pass as they are
    for a, b in zip(runner.stages, runner.stages[1:]):
        assert tuple(a.features["quantization"]) == tuple(b.input["quantization"])


def test_tflite_exit_decisions_match_keras(trained, digits):
    ee, path, _ = trained
    _, _, xt, yt = digits
    keras_logits = exit_logits(ee, xt)
    runner = Runner(path)
    lite_logits = runner.all_logits(xt)
    accs = [float((l.argmax(1) == yt).mean()) for l in keras_logits]
    assert min(accs) > 0.85                                      # every exit is trained
    for k, l in zip(keras_logits, lite_logits):
        assert (k.argmax(1) == l.argmax(1)).mean() >= 0.97
    policy = ExitPolicy(thresholds=[0.9, 0.9])
    runner.policy = policy
    labels, exits = runner.predict(xt)
    assert (exits == policy.decide(keras_logits[:-1])).mean() >= 0.95
    assert set(np.unique(exits)) <= {0, 1, 2} and 0 < (exits == 2).mean() < 1
    # the labels are the chosen exit's, as all_logits says
    chosen = np.stack([l.argmax(1) for l in lite_logits])[exits, np.arange(len(xt))]
    assert np.array_equal(labels, chosen)


def test_runner_imports_no_tensorflow(trained, digits):
    _, path, _ = trained
    _, _, xt, _ = digits
    np.save(os.path.join(os.path.dirname(path), "x.npy"), xt[:20])
    code = f"""
import json, sys, numpy as np
from tfcompress.exits import Runner, ExitPolicy
r = Runner({path!r}, ExitPolicy(thresholds=[0.9, 0.9]).to_dict())
labels, exits = r.predict(np.load({os.path.join(os.path.dirname(path), 'x.npy')!r}))
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {{'tensorflow', 'tf_keras', 'keras', 'tensorflow_model_optimization'}})
print(json.dumps({{"heavy": heavy, "labels": labels.tolist(), "exits": exits.tolist()}}))
"""
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == []
    labels, exits = Runner(path, ExitPolicy(thresholds=[0.9, 0.9])).predict(xt[:20])
    assert got["labels"] == labels.tolist() and got["exits"] == exits.tolist()


def test_calibrate_exits_respects_the_budget(trained, digits):
    ee, path, _ = trained
    x, y, xt, yt = digits
    val = (x[-300:], y[-300:])
    logits = exit_logits(ee, val[0])
    full = float((logits[-1].argmax(1) == val[1]).mean())
    costs = [1.0, 1.0, 2.0]
    loose = tfc.calibrate_exits(ee, val, max_accuracy_drop=0.05, costs=costs)
    tight = tfc.calibrate_exits(ee, val, max_accuracy_drop=0.0, costs=costs)
    for policy, drop in ((loose, 0.05), (tight, 0.0)):
        acc, cost, fractions = evaluate_policy(policy, logits, val[1], costs)
        assert acc >= full - drop - 1e-9
        assert policy.accuracy == pytest.approx(acc) and policy.full_accuracy == pytest.approx(full)
        assert policy.expected_cost == pytest.approx(cost / 4.0)
        assert sum(fractions) == pytest.approx(1.0) and list(policy.exit_fractions) == pytest.approx(list(fractions))
    assert loose.expected_cost <= tight.expected_cost and loose.exit_fractions[-1] < 1.0
    assert loose.exits == ("exit0", "exit1")
    # entropy thresholds and the file's own outputs work the same way
    ent = tfc.calibrate_exits(path, val, max_accuracy_drop=0.05, criterion="entropy", costs=costs)
    assert ent.criterion == "entropy" and ent.accuracy >= ent.full_accuracy - 0.05 - 1e-9
    # against the file: decisions kept where Keras and the file agree, the budget kept on the file too
    lite = exit_logits(path, val[0])
    for budget in (0.0, 0.02):
        held = tfc.calibrate_exits(ee, val, max_accuracy_drop=0.05, costs=costs, agree_with=path,
                                   max_disagreement=budget)
        assert held.expected_disagreement <= budget + 1e-12 and held.expected_cost >= loose.expected_cost
        assert evaluate_policy(held, lite, val[1], costs)[0] >= float((lite[-1].argmax(1) == val[1]).mean()) - 0.05
        agree = (held.decide(lite[:-1]) == held.decide(logits[:-1])).mean()
        assert agree == 1.0 if budget == 0.0 else agree >= 0.98
    with pytest.raises(InputError, match=r"max_accuracy_drop must be in \[0, 1\).*Got: 1.5"):
        tfc.calibrate_exits(ee, val, max_accuracy_drop=1.5)
    with pytest.raises(InputError, match="one non-negative value per stage"):
        tfc.calibrate_exits(ee, val, costs=[1.0])


def test_export_refuses_bad_input(trained, tmp_path):
    ee, _, _ = trained
    with pytest.raises(InputError, match="representative_data"):
        tfc.export_exits(ee, tmp_path / "a.tflite")
    with pytest.raises(InputError, match="mode must be one of int8, float32. Got: 'float16'"):
        tfc.export_exits(ee, tmp_path / "a.tflite", mode="float16")
    with pytest.raises(InputError, match="no early exits"):
        tfc.export_exits(small_model(), tmp_path / "a.tflite", representative_data=np.zeros((4, 8, 8, 1)))
    assert not os.listdir(tmp_path)
