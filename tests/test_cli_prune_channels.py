"""`tfcompress prune-channels`: writes a smaller model, prints params/FLOPs; bad input is one line."""
import json
import os

import pytest

from tfcompress import cli
from tfcompress._tf import keras
from test_pruning_graph import toy_resnet


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("m") / "toy.keras")
    toy_resnet().save(path)
    return path


def test_prunes_and_reports(model_path, tmp_path, capsys):
    out, js = str(tmp_path / "small.keras"), str(tmp_path / "r.json")
    rc = cli.main(["prune-channels", model_path, "-o", out, "--ratio", "0.5", "--criterion", "bn_gamma",
                   "--round_to", "8", "--json", js, "--groups"])
    text = capsys.readouterr().out
    assert rc == 0 and os.path.exists(out)
    assert "params" in text and "FLOPs" in text and "before" in text
    assert "Group 1: 16 channels, prunable" in text and "consume  b2_proj (Conv2D)" in text
    small = keras.models.load_model(out, compile=False)
    assert small.get_layer("stem_conv").filters == 8 and small.get_layer("logits").units == 10
    report = json.load(open(js))
    assert report["after"]["flops"] <= 0.55 * report["before"]["flops"]
    assert report["after"]["params"] < report["before"]["params"]


def test_apoz_with_data_to_h5(model_path, tmp_path, capsys):
    out = str(tmp_path / "small.h5")
    rc = cli.main(["prune-channels", model_path, "-o", out, "--ratio", "0.25", "--criterion", "apoz",
                   "--data", "digits", "--samples", "64"])
    assert rc == 0 and os.path.exists(out)
    assert "resized" in capsys.readouterr().out
    assert keras.models.load_model(out, compile=False).get_layer("stem_conv").filters == 12


@pytest.mark.parametrize("argv, message", [
    (["MISSING", "-o", "{tmp}/o.keras"], "model not found"),
    (["{model}", "-o", "{tmp}/o.keras", "--ratio", "1.5"], "--ratio"),
    (["{model}", "-o", "{tmp}/o.keras", "--ratio", "half"], "--ratio"),
    (["{model}", "-o", "{tmp}/o.keras", "--criterion", "l3"], "unknown criterion"),
    (["{model}", "-o", "{tmp}/o.keras", "--criterion", "taylor"], "needs --data"),
    (["{model}", "-o", "{tmp}/nowhere/o.keras"], "output folder does not exist"),
    (["{model}", "-o", "{tmp}/o.txt"], "must end in .keras or .h5"),
    (["{model}", "-o", "{tmp}/o.keras", "--skip", "nope"], "nope"),
    (["{model}", "-o", "{model}"], "overwrite"),
    (["{model}", "-o", "{tmp}/o.keras", "--repair"], "--repair needs --data"),
])
def test_bad_input_is_one_line(model_path, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, model=model_path) for a in argv]
    before = os.path.getsize(model_path)
    rc = cli.main(["prune-channels"] + argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists(tmp_path / "o.keras") and not os.path.exists(tmp_path / "o.txt")
    assert os.path.getsize(model_path) == before
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []


def test_global_ranking_flag(model_path, tmp_path):
    out = str(tmp_path / "g.keras")
    assert cli.main(["prune-channels", model_path, "-o", out, "--ratio", "0.3", "--global_ranking"]) == 0
    assert os.path.exists(out)


def test_keep_residual_flag(model_path, tmp_path, capsys):
    out, js = str(tmp_path / "r.keras"), str(tmp_path / "r.json")
    assert cli.main(["prune-channels", model_path, "-o", out, "--keep_residual", "--json", js]) == 0
    small, toy = keras.models.load_model(out, compile=False), keras.models.load_model(model_path, compile=False)
    assert small.get_layer("stem_conv").filters == 16  # the stem feeds the first residual add: kept whole
    assert small.get_layer("b1a_conv").filters < toy.get_layer("b1a_conv").filters  # inside a block: pruned
    assert json.load(open(js))["keep_residual"] is True


def test_repair_compensates_and_recalibrates(model_path, tmp_path, capsys):
    import numpy as np
    from tfcompress import data as data_mod
    plain, fixed = str(tmp_path / "p.keras"), str(tmp_path / "f.keras")
    common = ["--ratio", "0.5", "--data", "digits", "--samples", "128"]
    assert cli.main(["prune-channels", model_path, "-o", plain, *common]) == 0
    assert cli.main(["prune-channels", model_path, "-o", fixed, "--repair", *common]) == 0
    a, b = (keras.models.load_model(p, compile=False) for p in (plain, fixed))
    assert [w.shape for w in a.get_weights()] == [w.shape for w in b.get_weights()]
    bn = "stem_bn"
    assert not np.allclose(a.get_layer(bn).moving_mean.numpy(), b.get_layer(bn).moving_mean.numpy())
    x, _ = data_mod.load("digits", "train")
    x, _ = data_mod.fit_to_input(x[:128], a.input_shape)
    # re-estimated statistics match the pruned model's own activations on that data
    stem = keras.Model(b.input, b.get_layer("stem_conv").output)
    assert np.allclose(b.get_layer(bn).moving_mean.numpy(), stem(x).numpy().mean((0, 1, 2)), atol=1e-3)
