"""The recipe stages of tfcompress/stages/procedures.py (lottery, regularize) and the prune stage's
adjust_dropout option, each run on digits in a few seconds."""
import numpy as np
import pytest

from tfcompress import recipes
from tfcompress._tf import keras
from tfcompress.errors import InputError


def run(tmp_path, model, steps):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\ndata: digits\nmodel: {model}\nsteps:\n" + "".join(f"  - {s}\n" for s in steps))
    return recipes.run(str(path), out=str(tmp_path / "out"), echo=lambda line: None)


def test_lottery_stage_records_every_round_and_leaves_the_ticket(tmp_path):
    keras.utils.set_random_seed(0)
    state = run(tmp_path, "{build: lenet300, args: {input_shape: [8, 8, 1]}}",
                ["lottery: {rounds: 2, epochs: 1, control: random_mask}"])
    assert [r["stage"] for r in state.rows] == ["lottery round 0", "lottery round 1", "lottery round 2"]
    assert [round(r["kept"], 4) for r in state.rows] == [1.0, 0.8, 0.64]
    assert "random_mask_accuracy" in state.rows[2] and "random_mask_accuracy" not in state.rows[0]
    assert state.sparsity == {"fc1": pytest.approx(0.36, abs=0.05), "fc2": pytest.approx(0.36, abs=0.05)}
    zeros = sum(int((state.model.get_layer(n).kernel.numpy() == 0).sum()) for n in ("fc1", "fc2"))
    assert zeros == state.rows[2]["zeros"]


def test_regularize_then_prune_with_dropout_adjustment(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(64, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="fc2")(x))
    model.save(tmp_path / "m.keras")
    state = run(tmp_path, f"{{path: {tmp_path / 'm.keras'}}}",
                ["regularize: {type: l2, lam: 0.0001}",
                 "prune: {schedule: {type: ConstantSparsity, target: 0.75}, epochs: 1, adjust_dropout: true}"])
    assert state.rows[0] == {"stage": "regularize", "penalty": "l2", "lam": 0.0001, "layers": 2}
    inner = {l.layer.name: l.layer for l in state.model.layers if hasattr(l, "layer")}
    assert inner["fc1"].kernel_regularizer.p == 2.0
    drop = state.model.get_layer("drop")
    assert drop.rate == pytest.approx(0.5 * np.sqrt((4096 - 3072) / 4096), abs=1e-12)
    assert state.sparsity["fc1"] == pytest.approx(0.75, abs=1e-9)


@pytest.mark.parametrize("step, message", [
    ("lottery: {scope: net}", "scope must be global or layer. Got: 'net'"),
    ("lottery: {control: shuffle}", "control must be reinit, random_mask or a list of them. Got: 'shuffle'"),
    ("regularize: {type: l3}", "type must be l1, l2 or lp. Got: 'l3'"),
])
def test_bad_options(step, message):
    with pytest.raises(InputError, match=message):
        recipes.parse(f"name: n\nmodel: {{build: lenet300}}\nsteps: [{{{step}}}]")
