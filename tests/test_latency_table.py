"""tfcompress.latency: units of the int8 file, the per-device table, its cache, and its check against a whole
model measured locally and on the tests' emulated adb device (whose benchmark_model really times the file)."""
import json
import os

import pytest

from adb_device.fixtures import adb_server, device, models  # noqa: F401  (fixtures)
import tfcompress as tfc
from tfcompress import latency
from tfcompress._tf import keras

L = keras.layers
FAST = latency.bench_config(runs=100, min_secs=0.1, warmup_min_secs=0.01)


def _model(width=32):
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 4))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(width, 3, padding="same", use_bias=False, name="c1")(inp)))
    y = L.BatchNormalization()(L.Conv2D(width, 3, padding="same", use_bias=False, name="c2")(x))
    x = L.ReLU(name="out")(L.Add(name="add")([x, y]))
    x = L.Dropout(0.1)(L.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(inp, L.Dense(10, name="fc")(x))


def test_units_fuse_bn_and_relu_and_key_on_channels():
    us = latency.units(_model())
    assert [[l.name for l in u.layers][0] for u in us] == ["c1", "c2", "add", "gap", "fc"]
    assert [len(u.layers) for u in us] == [3, 2, 2, 1, 1]  # conv+BN+ReLU, conv+BN, add+ReLU
    assert us[2].input_shapes == [(12, 12, 32), (12, 12, 32)]
    narrow = latency.units(_model(16))
    assert [a.key == b.key for a, b in zip(us, narrow)] == [False, False, False, False, False]
    assert latency.units(_model())[1].key == us[1].key  # names and initial weights are not in the key


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One folder for both devices' tables: the unit files are exported once."""
    return str(tmp_path_factory.mktemp("latency"))


def _small():
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 16))  # about 10 M MACs: the convolution, not the invoke overhead, is timed
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 3, padding="same", use_bias=False, name="c1")(inp)))
    return keras.Model(inp, L.Dense(10, name="fc")(L.GlobalAveragePooling2D(name="gap")(x)))


def _check_table(table, model, rounds, tol_table=0.3, tol_now=0.15):
    predicted = table.predict(model)
    assert table.overhead_ms > 0 and len(table.entries) == 3 and predicted > table.overhead_ms
    rows = table.breakdown(model)
    assert [r[0] for r in rows] == ["c1", "gap", "fc"] and all(r[2] >= 0 for r in rows)
    assert max(rows, key=lambda r: r[2])[1] == "Conv2D"
    check = table.check(model, rounds=rounds)
    assert len(check.measured_rounds) == rounds and check.measured_ms > 0
    assert abs(check.error_now) < tol_now, check.format()
    assert abs(check.error) < tol_table, check.format()
    return check


def test_local_table_cached_and_checked(cache):
    model = _small()
    with pytest.raises(tfc.InputError, match="repeats"):
        latency.LatencyTable("local", cache=cache, config=FAST, repeats=0)
    table = latency.LatencyTable("local", cache=cache, config=FAST, repeats=2)  # entries: medians of 2 rounds
    check = _check_table(table, model, 3)
    saved = json.loads(open(table.path).read())
    assert os.path.dirname(table.path) == cache and saved["device"] == "local"
    assert set(saved["entries"]) == {u.key for u in latency.units(model)}
    again = latency.LatencyTable("local", cache=cache, config=FAST)
    assert again.fill([model]) == 0 and again.predict(model) == pytest.approx(check.predicted_ms)
    other = latency.LatencyTable("local", cache=cache, config=latency.bench_config(threads=2))
    assert other.path != table.path and other.entries == {}  # another configuration, another table


def test_adb_table_read_from_the_device(device, models, cache):  # noqa: F811
    model = _small()
    table = latency.LatencyTable(f"adb:{device.serial}", cache=cache, config=FAST,
                                 binary=models["binary"])
    _check_table(table, model, 3)
    runs = [c for c in device.commands if "--graph=" in c]
    assert len(runs) == 4 + 3 * 5  # overhead + 3 units, then 3 rounds of whole + overhead + 3 units
    assert table.device == f"adb:{device.serial}" and device.files() == []
