"""Per-layer error report: tensor-to-layer mapping, RMSE / SQNR, the worst layer flagged, Markdown."""
import math

import numpy as np
import pytest

import tfcompress as tfc
from tfcompress import data, models, report
from tfcompress._tf import keras
from tfcompress.tflite import reader

BROKEN = "block1_expand"


def small():
    return models.mobilenet_v2_small(input_shape=(8, 8, 1), width=16, head=64,
                                     blocks=((1, 16, 1), (4, 24, 2), (4, 24, 1)))


@pytest.fixture(scope="module")
def trained():
    x, y = data.load("digits", "train")
    xt, yt = data.load("digits", "test")
    keras.utils.set_random_seed(0)
    model = small()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    return model, x, xt, yt


def test_layers_map_to_fused_tensors_and_errors_are_small(tmp_path, trained):
    model, x, xt, yt = trained
    r = tfc.export(model, tmp_path / "m.tflite", representative_data=x[:128], eval_data=(xt, yt),
                   layer_samples=16)
    rows = {row["layer"]: row for row in r.layers}
    # Conv + BN + ReLU6 is one op: its tensor is the ReLU6 layer's output, and names all three
    assert rows["stem_relu6"]["fused"] == ["stem", "stem_bn", "stem_relu6"]
    assert rows["stem_relu6"]["scale"] == pytest.approx(6 / 255, rel=1e-6)
    assert rows["stem_relu6"]["zero_point"] == -128
    assert {"block2_add", "logits", "block0_project_bn"} <= set(rows)
    for row in r.layers:
        assert row["sqnr_db"] is None or row["sqnr_db"] > 15, row
        assert row["rmse"] >= 0
    # SQNR and RMSE agree with their definitions on the logits
    sub = keras.Model(model.inputs, model.get_layer("logits").output)
    ref = sub.predict(xt[:16], verbose=0)
    from tfcompress.tflite import runtime
    got = runtime.run(runtime.Interpreter(tmp_path / "m.tflite", use_xnnpack=False), xt[:16])  # as the report runs
    rmse = float(np.sqrt(np.mean((ref - got) ** 2)))
    assert rows["logits"]["rmse"] == pytest.approx(rmse, rel=1e-4)
    assert rows["logits"]["sqnr_db"] == pytest.approx(10 * math.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2)),
                                                      rel=1e-4)
    md = report.to_markdown(r)
    assert "| stem_relu6 (stem + stem_bn + stem_relu6) | ReLU | int8 | 0.0235294 | -128 |" in md
    assert "Per-layer error" in md


def test_a_layer_with_weights_times_1000_is_flagged_worst(tmp_path, trained):
    model, x, xt, yt = trained
    broken = keras.models.clone_model(model)
    broken.set_weights(model.get_weights())
    layer = broken.get_layer(BROKEN)
    layer.set_weights([w * 1000.0 for w in layer.get_weights()])
    r = tfc.export(broken, tmp_path / "broken.tflite", representative_data=x[:128], eval_data=(xt, yt),
                   layer_samples=16)
    worst = report.worst_layers(r.layers)
    first = next(row for row in r.layers if row["layer"] == worst[0])
    assert BROKEN in first["fused"], (worst, [(x["layer"], x["sqnr_db"], x["added_db"]) for x in r.layers])
    others = [row["added_db"] for row in r.layers if row is not first and row["added_db"] is not None]
    assert first["added_db"] < min(others) - 6.0     # lower: more noise added
    assert f"**{worst[0]}**" in report.to_markdown(r)


def test_qat_model_report_uses_the_float_weights(tmp_path, trained):
    model, x, xt, yt = trained
    qat = tfc.quantize(model)
    rows = report.layer_errors(qat, tfc.export(qat, tmp_path / "q.tflite").path, xt, samples=8)
    names = {row["layer"] for row in rows}
    assert "stem_relu6" in names and "logits" in names      # quant_ prefixes resolved
    assert all(row["fused"][-1] == row["layer"] for row in rows)
    assert reader.read(tmp_path / "q.tflite").input_dtypes == ["int8"]
