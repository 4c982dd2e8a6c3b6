"""tfc.low_rank (tfcompress/architecture/factorize.py, ranks.py), its layer-kind facts (graph/factor.py),
the low_rank recipe stage and `tfcompress low-rank`."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress import cli
from tfcompress._tf import keras
from tfcompress.analysis import macs, params
from tfcompress.architecture.ranks import plan_ranks

L = keras.layers
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_model(seed=0):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((9, 10, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)     # -> 9x10x16
    x = L.Conv2D(24, (3, 5), strides=2, padding="same", name="c2")(x)       # -> 5x5x24
    x = L.Conv2D(8, 3, padding="valid", name="c3")(x)                       # -> 3x3x8
    x = L.Flatten()(x)
    x = L.Dense(20, activation="relu", name="d1")(x)
    return keras.Model(inp, L.Dense(5, name="d2")(x), name="small")


def _x(n=4):
    return np.random.default_rng(1).normal(size=(n, 9, 10, 3)).astype(np.float32)


FULL = {"weight": {"c1": 16, "c2": 24, "c3": 8, "d1": 20, "d2": 5},
        "spatial": {"c1": 9, "c2": 48, "c3": 24}}     # min(kh*cin, kw*cout)
# (MACs, params) of the factored layers at those ranks, counted by hand:
# weight: conv kxk to K then 1x1; spatial: kh x 1 (stride sh, 1) then 1 x kw (stride 1, sw)
ANALYTIC = {
    "weight": (90 * (27 * 16 + 16 * 16) + 25 * (240 * 24 + 24 * 24) + 9 * (216 * 8 + 8 * 8) + 72 * 20 + 20 * 20
               + 20 * 5 + 5 * 5,
               27 * 16 + 16 * 16 + 16 + 240 * 24 + 24 * 24 + 24 + 216 * 8 + 64 + 8 + 72 * 20 + 400 + 20 + 100 + 25 + 5),
    "spatial": (90 * 9 * 9 + 90 * 3 * 9 * 16 + 5 * 10 * 3 * 16 * 48 + 25 * 5 * 48 * 24 + 3 * 5 * 3 * 24 * 24
                + 9 * 3 * 24 * 8 + 72 * 20 + 20 * 5,
                9 * 9 + 27 * 16 + 16 + 48 * 48 + 5 * 48 * 24 + 24 + 72 * 24 + 72 * 8 + 8 + 72 * 20 + 20 + 100 + 5),
}


@pytest.mark.parametrize("method", ["weight", "spatial"])
def test_full_rank_is_exact_and_costs_the_analytic_counts(method):
    model = small_model()
    new = tfc.low_rank(model, ranks=FULL[method], method=method)
    x = _x()
    assert np.abs(new(x).numpy() - model(x).numpy()).max() < 1e-5
    assert (macs(new), params(new)) == ANALYTIC[method]
    kernels = {l.name: l.get_weights()[0].shape for l in new.layers if l.get_weights()}
    if method == "spatial":
        assert kernels["c2_lr"] == (3, 1, 16, 48) and kernels["c2"] == (1, 5, 48, 24)
        assert kernels["d1"] == (72, 20)            # Dense left alone by the spatial method
    else:
        assert kernels["c2_lr"] == (3, 5, 16, 24) and kernels["c2"] == (1, 1, 24, 24)
        assert kernels["d1_lr"] == (72, 20) and not new.get_layer("d1_lr").use_bias
    assert new.get_layer("c1").activation.__name__ == "relu"
    assert model.get_layer("c1").kernel.shape == (3, 3, 3, 16)      # the original is untouched


def _dense_with_singular_values(s, shape=(40, 30), seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(shape[0], len(s))))
    v, _ = np.linalg.qr(rng.normal(size=(shape[1], len(s))))
    x = keras.Input((shape[0],))
    m = keras.Model(x, L.Dense(shape[1], name="fc")(x))
    m.get_layer("fc").set_weights([(u * s) @ v.T, np.zeros(shape[1])])
    return m


def test_rank_keeps_the_energy_and_the_truncated_svd_error():
    s = np.array([10.0, 5, 4, 2, 1, 1, 0.5, 0.5] + [0.1] * 22)
    m = _dense_with_singular_values(s)
    kept = np.cumsum(s ** 2) / np.sum(s ** 2)
    (row,) = plan_ranks(m, energy=0.95, round_to=1)
    assert row.rank == int(np.argmax(kept >= 0.95)) + 1 == 3
    assert row.energy == pytest.approx(kept[2], abs=1e-9)
    (row,) = plan_ranks(m, energy=0.95, round_to=4)
    assert row.rank == 4
    new = tfc.low_rank(m, ranks={"fc": 3})
    approx = new.get_layer("fc_lr").get_weights()[0] @ new.get_layer("fc").get_weights()[0]
    error = np.linalg.norm(m.get_layer("fc").get_weights()[0] - approx)
    assert error == pytest.approx(np.sqrt(np.sum(s[3:] ** 2)), rel=1e-4)      # Eckart-Young


def test_ratio_and_target_macs_fit_the_budget():
    model = small_model()
    own = sum(r.macs_before for r in plan_ranks(model, energy=1.0))
    rows = plan_ranks(model, ratio=0.4, round_to=4)
    assert sum(r.macs_after for r in rows) <= 0.4 * own
    assert all(r.rank is None or r.rank % 4 == 0 or r.rank == r.full_rank for r in rows)
    new = tfc.low_rank(model, ratio=0.4, round_to=4)
    assert macs(new) == macs(model) - own + sum(r.macs_after for r in rows)
    target = int(0.5 * macs(model))
    assert macs(tfc.low_rank(model, target_macs=target, round_to=1)) <= target
    # a bigger budget never keeps less energy
    more = plan_ranks(model, ratio=0.8, round_to=4)
    assert all((b.rank or b.full_rank) >= (a.rank or a.full_rank) for a, b in zip(rows, more))


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of"),
    ({"ratio": 0.5, "energy": 0.9}, "exactly one of"),
    ({"ratio": 1.5}, "ratio"),
    ({"energy": 0.9, "method": "tucker"}, "method must be one of"),
    ({"ranks": {"nope": 2}}, "no layer named 'nope'"),
    ({"ranks": {"d1": 21}}, "ranks['d1'] must be an integer in [1, 20]"),
    ({"energy": 0.9, "method": "spatial", "layers": ["d1"]}, "cannot factor d1"),
    ({"ratio": 0.001}, "below what rank 8"),
    ({"energy": 0.9, "round_to": 0}, "round_to"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(tfc.InputError, match=None) as e:
        tfc.low_rank(small_model(), **kwargs)
    assert message in str(e.value)


def test_int8_file_has_two_ops_per_factored_layer(tmp_path):
    from tfcompress.tflite.reader import inspect
    model = small_model()
    x = _x(32)
    counts = {}
    for tag, m in (("orig", model), ("lr", tfc.low_rank(model, ranks={"c2": 8, "d1": 8}))):
        path = str(tmp_path / f"{tag}.tflite")
        tfc.export(m, path, mode="int8", representative_data=x)
        ops = inspect(path)["op_counts"]
        counts[tag] = (ops.get("CONV_2D", 0), ops.get("FULLY_CONNECTED", 0))
    assert counts["orig"] == (3, 2) and counts["lr"] == (4, 3)


def test_sequential_and_keras3_models_are_accepted():
    import keras as k3
    seq = keras.Sequential([keras.Input((12,)), L.Dense(16, name="a"), L.Dense(4, name="b")])
    new = tfc.low_rank(seq, ranks={"a": 12})
    x = np.random.default_rng(0).normal(size=(3, 12)).astype(np.float32)
    assert np.abs(new(x).numpy() - seq(x).numpy()).max() < 1e-5
    m3 = k3.Sequential([k3.Input((12,)), k3.layers.Dense(16, name="a"), k3.layers.Dense(4, name="b")])
    assert [l.name for l in tfc.low_rank(m3, ranks={"a": 4}).layers[1:]] == ["a_lr", "a", "b"]


def test_stage_factors_and_fine_tunes():
    from tfcompress.recipe.state import RunState
    from tfcompress.stages.architecture import LowRankConfig, low_rank as stage
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    inp = keras.Input((12,))
    model = keras.Model(inp, L.Dense(2, name="out")(L.Dense(32, activation="relu", name="h")(inp)))
    state = RunState(recipe=None, out="unused", echo=lambda s: None, model=model, train=(x, y), test=(x, y))
    stage(state, LowRankConfig(ranks={"h": 4}, epochs=1, batch_size=32))
    row = state.rows[-1]
    assert row["stage"] == "low_rank" and row["macs_before"] == 12 * 32 + 32 * 2
    assert row["macs"] == 12 * 4 + 4 * 32 + 32 * 2 == macs(state.model)
    with pytest.raises(tfc.InputError, match="exactly one of"):
        LowRankConfig(ratio=0.5, energy=0.9)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("m") / "small.keras")
    small_model().save(path)
    return path


def test_command_writes_the_factored_model(model_path, tmp_path, capsys):
    out, js = str(tmp_path / "lr.keras"), str(tmp_path / "lr.json")
    rc = cli.main(["low-rank", model_path, "-o", out, "--ratio", "0.5", "--round_to", "4", "--json", js])
    text = capsys.readouterr().out
    assert rc == 0 and "MACs" in text and "wrote" in text
    report = json.load(open(js))
    loaded = tfc.load_model(out)
    assert macs(loaded) == report["after"]["macs"] < report["before"]["macs"]
    factored = [r for r in report["layers"] if r["rank"] is not None]
    assert factored and all(loaded.get_layer(r["name"] + "_lr") for r in factored)


@pytest.mark.parametrize("argv, message", [
    (["MISSING.keras", "-o", "{tmp}/o.keras", "--ratio", "0.5"], "model not found"),
    (["{model}", "-o", "{tmp}/o.keras"], "exactly one of"),
    (["{model}", "-o", "{tmp}/o.keras", "--ratio", "2"], "--ratio must be a number in (0, 1]"),
    (["{model}", "-o", "{tmp}/o.keras", "--ranks", "c1"], "name=rank"),
    (["{model}", "-o", "{tmp}/o.keras", "--energy", "0.9", "--method", "cp"], "--method"),
    (["{model}", "-o", "{tmp}/o.txt", "--ratio", "0.5"], "must end in .keras or .h5"),
    (["{model}", "-o", "{model}", "--ratio", "0.5"], "overwrite"),
    (["{model}", "-o", "{tmp}/o.keras", "--ranks", "nope=3"], "no layer named 'nope'"),
])
def test_bad_input_is_one_line(model_path, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, model=model_path) for a in argv]
    size = os.path.getsize(model_path)
    rc = cli.main(["low-rank"] + argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert os.path.getsize(model_path) == size and not os.path.exists(tmp_path / "o.keras")


def test_bad_input_is_refused_before_tensorflow_loads(tmp_path):
    code = ("import sys; from tfcompress import cli; "
            f"rc = cli.main(['low-rank', {str(tmp_path / 'missing.keras')!r}, '-o', {str(tmp_path / 'o.keras')!r}, "
            "'--ratio', '0.5']); print(rc, 'tensorflow' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.split() == ["1", "False"] and "model not found" in proc.stderr
