"""tfc.sensitivity_scan: each unit pruned alone, the model untouched, the report as table / PNG / JSON, resumed."""
import json

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.choose.report import SensitivityReport, load_report
from tfcompress.evaluation import keras_accuracy, top1
from tfcompress.pruning.magnitude import magnitude_mask
from test_pruning_graph import randomize, toy_resnet

L = keras.layers


def dense_net(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    x = L.Dense(24, activation="relu", name="fc1")(L.Flatten(name="flat")(inp))
    return keras.Model(inp, L.Dense(10, name="fc2")(x), name="dense_net")


@pytest.fixture(scope="module")
def trained(digits):
    (x, y), (xt, yt) = digits
    model = dense_net()
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, batch_size=64, verbose=0)
    return model, (xt[:200], yt[:200])


def _bits(model):
    return [w.tobytes() for w in model.get_weights()]


def test_weight_scan_measures_each_layer_alone_and_leaves_the_model(trained):
    model, data = trained
    before = _bits(model)
    report = tfc.sensitivity_scan(model, data, sparsities=(0.5, 0.95), verbose=0)
    assert _bits(model) == before                                    # bit-identical
    assert list(report.units) == ["fc1", "fc2"] and report.complete
    assert report.units["fc1"]["size"] == 64 * 24 and report.units["fc2"]["ratios"] == [0.5, 0.95]
    assert report.baseline == pytest.approx(keras_accuracy(model, *data))
    # the 95 % point of fc2, by hand: only fc2's kernel masked
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    k = copy.get_layer("fc2").kernel
    k.assign(k * magnitude_mask(k, 0.95)[0])
    assert report.units["fc2"]["scores"][1] == pytest.approx(keras_accuracy(copy, *data))
    assert report.units["fc2"]["scores"][1] < report.baseline - 0.05  # 12 of 240 weights left: it shows


def test_channel_scan_equals_prune_channels_of_the_group(digits):
    (_, _), (xt, yt) = digits
    model = randomize(toy_resnet((8, 8, 1)))
    before = _bits(model)
    data = (xt[:64], yt[:64])
    report = tfc.sensitivity_scan(model, data, sparsities=(0.5,), granularity="channel", layers=["b2a_conv",
                                                                                                  "mix_conv"],
                                  verbose=0)
    assert _bits(model) == before
    assert set(report.units) == {"b2a_conv", "mix_conv"}
    assert report.units["b2a_conv"]["ratios"] == [0.5] and report.units["b2a_conv"]["size"] == 24
    outputs = {}
    for key in report.units:
        small = tfc.prune_channels(model, {key: 0.5})
        outputs[key] = top1(small.predict(data[0], verbose=0), data[1])
        assert report.units[key]["scores"][0] == pytest.approx(outputs[key], abs=1e-9)
    assert report.cost["const"] == [tfc.analysis.params(model), tfc.analysis.macs(model)]


def test_report_table_plot_json_round_trip(trained, tmp_path):
    model, data = trained
    report = tfc.sensitivity_scan(model, data, sparsities=(0.3, 0.9), verbose=0)
    text = report.table()
    assert "fc1" in text and "0.90" in text and "baseline" in text
    png = report.plot(str(tmp_path / "scan.png"), threshold=0.02)
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    again = SensitivityReport.from_json(report.to_json())
    assert again.to_dict() == json.loads(report.to_json())
    report.save(str(tmp_path / "r.json"))
    assert load_report(str(tmp_path / "r.json")).units == report.units
    with pytest.raises(tfc.InputError, match="not a sensitivity report"):
        SensitivityReport.from_json('{"format": "other"}')


def test_resumes_where_it_stopped(trained, tmp_path):
    model, data = trained
    path = str(tmp_path / "scan.json")
    calls = []

    def metric(m, d):
        calls.append(1)
        return keras_accuracy(m, *d)

    full = tfc.sensitivity_scan(model, data, sparsities=(0.5, 0.9), metric=metric, path=path, verbose=0)
    assert len(calls) == 1 + 2 * 2
    saved = json.load(open(path))
    del saved["units"]["fc2"]["scores"][1:]          # as if stopped during fc2
    open(path, "w").write(json.dumps(saved))
    calls.clear()
    resumed = tfc.sensitivity_scan(model, data, sparsities=(0.5, 0.9), metric=metric, path=path, verbose=0)
    assert len(calls) == 2                            # fc2's two levels only; fc1 and the baseline are read
    assert resumed.units == full.units and load_report(path).complete
    with pytest.raises(tfc.InputError, match="other settings"):
        tfc.sensitivity_scan(model, data, sparsities=(0.5,), metric=metric, path=path, verbose=0)


def test_keras3_model_and_bad_input(trained):
    import keras as k3
    m = k3.Sequential([k3.Input((8, 8, 1)), k3.layers.Flatten(), k3.layers.Dense(16, name="h"),
                       k3.layers.Dense(10, name="out")])
    x, y = trained[1]
    report = tfc.sensitivity_scan(m, (x, y), sparsities=(0.5,), verbose=0)
    assert list(report.units) == ["h", "out"]
    for kwargs, message in [({"sparsities": (0.5, 0.2)}, "increasing"), ({"sparsities": (1.0,)}, "increasing"),
                            ({"granularity": "block"}, "granularity"), ({"metric": "loss"}, "metric"),
                            ({"layers": ["nope"]}, "nope")]:
        with pytest.raises(tfc.InputError, match=message):
            tfc.sensitivity_scan(trained[0], (x, y), verbose=0, **kwargs)
    with pytest.raises(tfc.InputError, match="labels"):
        tfc.sensitivity_scan(trained[0], x, verbose=0)


def test_finetune_steps_train_each_candidate(trained):
    model, data = trained
    before = _bits(model)
    plain = tfc.sensitivity_scan(model, data, sparsities=(0.97,), layers=["fc2"], verbose=0)
    tuned = tfc.sensitivity_scan(model, data, sparsities=(0.97,), layers=["fc2"], finetune_steps=30, verbose=0)
    assert _bits(model) == before
    assert tuned.units["fc2"]["scores"][0] > plain.units["fc2"]["scores"][0]


def test_channel_repair_measures_the_repaired_candidate(digits):
    (x, _), (xt, yt) = digits
    model = randomize(toy_resnet((8, 8, 1)))
    before = _bits(model)
    report = tfc.sensitivity_scan(model, (xt[:64], yt[:64]), sparsities=(0.5,), granularity="channel",
                                  layers=["b2a_conv"], repair=x[:128], verbose=0)
    assert _bits(model) == before and report.settings["repair"] is True
    small = tfc.prune_channels(model, {"b2a_conv": 0.5}, compensate=x[:128])
    tfc.recalibrate_batchnorm(small, x[:128])
    assert report.units["b2a_conv"]["scores"][0] == pytest.approx(keras_accuracy(small, xt[:64], yt[:64]))
    with pytest.raises(tfc.InputError, match="channel granularity"):
        tfc.sensitivity_scan(model, (xt, yt), repair=x, verbose=0)
