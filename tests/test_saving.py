"""tfcompress/saving.py: the one model loader of the commands and recipes; bad input is one InputError line."""
import os

import numpy as np
import pytest

from tfcompress import cli
from tfcompress._tf import keras, tf
from tfcompress.errors import InputError
from tfcompress.saving import load_model


def small_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])


def one_line(excinfo, *words):
    text = str(excinfo.value)
    assert len(text.splitlines()) == 1, text
    for w in words:
        assert w in text, text


@pytest.mark.parametrize("name, fmt", [("m.keras", None), ("m.h5", None), ("m_savedmodel", "tf")])
def test_loads_every_format_with_its_weights(tmp_path, name, fmt):
    model = small_model()
    path = str(tmp_path / name)
    model.save(path, save_format=fmt)
    loaded = load_model(path)
    assert isinstance(loaded, keras.Model) and loaded.input_shape == (None, 4)
    x = np.random.RandomState(0).rand(5, 4).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_a_savedmodel_that_is_not_keras_is_refused(tmp_path):
    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4])])
        def __call__(self, x):
            return 2 * x
    path = str(tmp_path / "plain")
    tf.saved_model.save(Doubler(), path)
    with pytest.raises(InputError) as e:
        load_model(path)
    one_line(e, path, "not a Keras model", "model.save")


@pytest.mark.parametrize("name, content, words", [
    ("missing.keras", None, ["model not found"]),
    ("empty_dir", "dir", ["without saved_model.pb"]),
    ("e.keras", b"", ["empty (0 bytes)"]),
    ("z.keras", b"not a zip", ["not a .keras file"]),
    ("h.h5", b"not hdf5", ["not an HDF5 file"]),
    ("m.txt", b"x", ["give a .keras file"]),
])
def test_bad_paths_are_one_line(tmp_path, name, content, words):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as e:
        load_model(path)
    one_line(e, *words)


def test_prune_channels_loads_a_savedmodel_folder_and_refuses_a_plain_one(tmp_path, capsys):
    from test_pruning_graph import toy_resnet
    src = str(tmp_path / "toy_sm")
    toy_resnet().save(src, save_format="tf")
    out = str(tmp_path / "small.keras")
    assert cli.main(["prune-channels", src, "-o", out, "--ratio", "0.5"]) == 0
    assert keras.models.load_model(out, compile=False).get_layer("stem_conv").filters == 8

    class Plain(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4])])
        def __call__(self, x):
            return x
    plain = str(tmp_path / "plain")
    tf.saved_model.save(Plain(), plain)
    capsys.readouterr()
    rc = cli.main(["prune-channels", plain, "-o", str(tmp_path / "p.keras")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "not a Keras model" in err
    assert not os.path.exists(tmp_path / "p.keras")
