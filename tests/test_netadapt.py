"""tfc.netadapt on a tiny model: iterations cut the group the tables choose, the history is written and
resumed, several devices are measured in parallel, and the latencies come from the emulated adb device's
benchmark_model output."""
import json
import os

import numpy as np
import pytest

import tfcompress as tfc
from adb_device.fixtures import adb_server, device, models  # noqa: F401  (fixtures)
from tfcompress import latency
from tfcompress._tf import keras

L = keras.layers
FAST = latency.bench_config(runs=30, min_secs=0.03, warmup_min_secs=0.01)
KW = dict(step=0.1, decay=1.0, finetune_steps=3, final_epochs=1, round_to=8, config=FAST, rounds=2, verbose=0)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same", use_bias=False, name="c1")(inp)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same", use_bias=False, name="c2")(x)))
    m = keras.Model(inp, L.Dense(10, name="fc")(L.GlobalAveragePooling2D()(x)))
    x, y = tfc.data.load("digits", "train")
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return m


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("latency"))


def _widths(model):
    return [l.filters for l in model.layers if isinstance(l, L.Conv2D)]


def test_bad_arguments():
    m = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    for kw in (dict(), dict(target_ms=1.0, speedup=2.0), dict(speedup=0.5), dict(speedup=2.0, step=1.5),
               dict(speedup=2.0, mode="int4")):
        with pytest.raises(tfc.InputError):
            tfc.netadapt(m, "digits", **kw)


def test_local_iterations_history_and_resume(trained, cache, tmp_path):
    path = str(tmp_path / "na.json")
    small, hist = tfc.netadapt(trained, "digits", speedup=50.0, cache=cache, history=path, max_iterations=1, **KW)
    assert len(hist.iterations) == 1 and hist.final["met"] is False  # 50x is out of reach in one step
    assert hist.final["stopped"] is None  # it stopped at max_iterations, not for want of a candidate
    row = hist.iterations[0]
    assert row["group"] in ("c1", "c2") and row["kept"] < 32 and row["kept"] % 8 == 0
    assert sorted(_widths(small)) == sorted([32, row["kept"]])
    assert {c["group"] for c in row["candidates"]} == {"c1", "c2"}
    best = max(row["candidates"], key=lambda c: c["accuracy"])
    assert (best["group"], best["kept"]) == (row["group"], row["kept"])
    for c in row["candidates"]:  # the fewest channels that meet the goal by the table
        assert c["predicted_ms"]["local"] <= row["goal_ms"]["local"]
    assert row["measured_ms"]["local"] > 0 and row["speedup"]["local"] > 0
    saved = json.loads(open(path).read())
    assert saved["iterations"][0]["group"] == row["group"] and os.path.exists(path[:-5] + ".model.keras")
    again, hist2 = tfc.netadapt(trained, "digits", speedup=50.0, cache=cache, history=path, max_iterations=1, **KW)
    assert len(hist2.iterations) == 1 and _widths(again) == _widths(small)  # resumed: nothing redone
    np.testing.assert_allclose(again.get_weights()[0], small.get_weights()[0])
    with pytest.raises(tfc.InputError, match="other settings"):
        tfc.netadapt(trained, "digits", speedup=3.0, cache=cache, history=path, **KW)


def test_adb_and_local_in_parallel_until_the_target(trained, cache, device, models):  # noqa: F811
    adb = f"adb:{device.serial}"
    kw = dict(KW, step=0.3)
    small, hist = tfc.netadapt(trained, "digits", speedup=1.25, device=["local", adb], binary=models["binary"],
                               cache=cache, max_iterations=6, **kw)
    assert set(hist.base["measured_ms"]) == {"local", adb}
    last = hist.iterations[-1]
    assert hist.final["met"] and all(last["speedup"][d] >= 1.25 for d in ("local", adb)), (
        [it["speedup"] for it in hist.iterations], hist.final)
    assert sum(_widths(small)) < 64
    runs = [c for c in device.commands if "--graph=" in c]
    assert len(runs) >= 2 * (1 + len(hist.iterations))  # base, then base + kept file per iteration, 2 rounds


def test_optimize_command_and_stage_refuse_bad_input(tmp_path, capsys):
    from tfcompress.cli import main as cli
    from tfcompress.stages.netadapt import NetAdaptConfig
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    for args in (["--speedup", "2", "--target_ms", "1"], ["--speedup", "2", "--plot", "p.jpg"], []):
        rc = cli(["optimize", str(model), "-o", str(tmp_path / "o.tflite"), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and err[0].startswith("tfcompress: error:"), err
    assert cli(["optimize", str(tmp_path / "none.keras"), "--speedup", "2", "-o", str(tmp_path / "o.tflite")]) == 1
    assert "model not found" in capsys.readouterr().err
    with pytest.raises(tfc.InputError, match="exactly one"):
        NetAdaptConfig()
    assert NetAdaptConfig(speedup=2.0, device="local").device == ["local"]
