"""tfc.adjust_dropout: every rate equals D0 * sqrt(C_i / C_i0) of the layer the Dropout follows; the prune
stage's option sets the rates the final sparsity implies."""
import numpy as np
import pytest

import tfcompress as tfc
from tfcompress._tf import keras
from tfcompress.errors import InputError
from tfcompress.pruning.dropout import adjust_for_schedule, followed_layer
from tfcompress.pruning.magnitude import wrappers

L = keras.layers


def model_with_dropouts():
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    x = L.Dropout(0.2, name="d0")(inp)                       # after the input: left alone
    x = L.Dense(32, activation="relu", name="fc1")(x)
    x = L.Dropout(0.5, name="d1")(x)
    x = L.Dense(16, name="fc2")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Dropout(0.4, name="d2")(x)                         # follows fc2 through the ReLU
    return keras.Model(inp, L.Dense(10, name="fc3")(x))


def pruned_copy(model, targets):
    wrapped = tfc.prune(model, layers={n: tfc.ConstantSparsity(t) for n, t in targets.items()})
    for w in wrappers(wrapped):
        w.update_masks(w.schedule.target)
    return tfc.strip(wrapped)


def test_every_rate_equals_the_formula():
    original = model_with_dropouts()
    pruned = pruned_copy(original, {"fc1": 0.75, "fc2": 0.3})
    adjusted = tfc.adjust_dropout(pruned, original)
    c1 = np.count_nonzero(pruned.get_layer("fc1").kernel.numpy())
    c2 = np.count_nonzero(pruned.get_layer("fc2").kernel.numpy())
    assert (c1, c2) == (512, 358)
    assert adjusted.get_layer("d1").rate == pytest.approx(0.5 * np.sqrt(512 / 2048), abs=1e-12)
    assert adjusted.get_layer("d2").rate == pytest.approx(0.4 * np.sqrt(358 / 512), abs=1e-12)
    assert adjusted.get_layer("d0").rate == 0.2
    assert pruned.get_layer("d1").rate == 0.5                # the input model is left untouched
    assert np.array_equal(adjusted.get_layer("fc1").kernel.numpy(), pruned.get_layer("fc1").kernel.numpy())
    # D0 comes from the original: adjusting twice does not compound
    again = tfc.adjust_dropout(adjusted, original)
    assert again.get_layer("d1").rate == pytest.approx(0.25, abs=1e-12)


def test_followed_layer_walks_back_through_kernel_less_layers():
    model = model_with_dropouts()
    assert followed_layer(model.get_layer("d2")).name == "fc2"
    assert followed_layer(model.get_layer("d1")).name == "fc1"
    assert followed_layer(model.get_layer("d0")) is None


def test_channel_pruned_model_counts_its_smaller_kernel():
    original = model_with_dropouts()
    small = tfc.prune_channels(original, {"fc1": 0.5})
    adjusted = tfc.adjust_dropout(small, original)
    c1 = small.get_layer("fc1").kernel.numpy().size
    assert c1 == 64 * 16
    assert adjusted.get_layer("d1").rate == pytest.approx(0.5 * np.sqrt(c1 / 2048), abs=1e-12)


def test_adjust_for_schedule_matches_what_the_masks_leave():
    original = model_with_dropouts()
    adjusted = adjust_for_schedule(original, tfc.ConstantSparsity(0.9), None)
    kept1 = 2048 - round(0.9 * 2048)
    kept2 = 512 - round(0.9 * 512)
    assert adjusted.get_layer("d1").rate == pytest.approx(0.5 * np.sqrt(kept1 / 2048), abs=1e-12)
    assert adjusted.get_layer("d2").rate == pytest.approx(0.4 * np.sqrt(kept2 / 512), abs=1e-12)
    pruned = pruned_copy(original, {"fc1": 0.9, "fc2": 0.9, "fc3": 0.9})
    after = tfc.adjust_dropout(pruned, original)
    assert after.get_layer("d1").rate == pytest.approx(adjusted.get_layer("d1").rate, abs=1e-12)


def test_errors():
    original = model_with_dropouts()
    wrapped = tfc.prune(original, tfc.ConstantSparsity(0.5))
    with pytest.raises(InputError, match="tfc.strip the pruned model first.*Got: 3 pruning wrapper"):
        tfc.adjust_dropout(wrapped, original)
    plain = tfc.models.lenet300((8, 8, 1))
    with pytest.raises(InputError, match="has no Dropout after a layer with a kernel. Got: layers"):
        tfc.adjust_dropout(plain, plain)
