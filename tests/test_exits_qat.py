"""tfcompress.exits with QAT: a model with exits trained under tfc.quantize exports its learned ranges, so
the file's exit logits are the QAT Keras model's (and so are its exit decisions)."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.exits import ExitPolicy, Runner
from tfcompress.exits.calibration import exit_logits
from tfcompress.exits.export import backbone
from tfcompress.exits.heads import exit_points

from test_exits import small_model


@pytest.fixture(scope="module")
def qat(tmp_path_factory):
    from tfcompress import data
    x, y = data.load("digits", "train")
    xt, yt = data.load("digits", "test")
    ee = tfc.add_exits(small_model(), at=["r2", "c3"])
    ee.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    ee.fit(x, y, epochs=5, batch_size=32, verbose=0)
    q = tfc.quantize(ee)
    q.compile(keras.optimizers.Adam(1e-4), [keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * 3)
    q.fit(x[:512], [y[:512]] * 3, epochs=1, batch_size=32, verbose=0)
    path = str(tmp_path_factory.mktemp("qat") / "exits.tflite")
    return q, path, tfc.export_exits(q, path), xt, yt


def test_qat_exits_export_the_quantized_model(qat):
    q, path, report, xt, yt = qat
    assert exit_points(q)[1:] == (["exit0", "exit1"], "logits")      # found through the QAT wrappers
    assert report.float_ops == [] and report.relu6_all_pinned
    runner = Runner(path)
    assert runner.stage_handoff_requantizes() == [False, False]       # stage inputs carry the cut ranges
    keras_logits, lite_logits = exit_logits(q, xt), runner.all_logits(xt)
    for k, l, stage in zip(keras_logits, lite_logits, runner.stages):
        step = stage.logits["quantization"][0]
        assert (k.argmax(1) == l.argmax(1)).mean() >= 0.99
        assert np.abs(k - l).max() <= 8 * step                          # a few output steps, not more
    assert min(float((l.argmax(1) == yt).mean()) for l in lite_logits) > 0.5     # trained, not at chance
    policy = ExitPolicy(thresholds=[0.9, 0.9])
    runner.policy = policy
    _, exits = runner.predict(xt)
    assert (exits == policy.decide(keras_logits[:-1])).mean() >= 0.99
    assert 0 < (exits == 2).mean() < 1
    # the backbone of a QAT model is a QAT model holding the same ranges: it gives the final logits
    np.testing.assert_allclose(backbone(q).predict(xt[:16], verbose=0), keras_logits[-1][:16], atol=1e-5)
