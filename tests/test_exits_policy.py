"""tfcompress.exits.policy: scores, decisions, JSON round trip (NumPy only)."""
import math

import numpy as np
import pytest

from tfcompress.errors import InputError
from tfcompress.exits.policy import ExitPolicy, scores


def test_scores_confidence_and_entropy():
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    np.testing.assert_allclose(scores(logits, "confidence"), [0.5, 0.75], atol=1e-12)
    np.testing.assert_allclose(scores(logits, "entropy"),
                               [math.log(2.0), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))], atol=1e-12)
    with pytest.raises(InputError, match="Got: 'margin'"):
        scores(logits, "margin")


def test_decide_takes_the_first_passing_exit():
    e0 = np.array([[5.0, 0.0], [0.0, 0.0], [0.0, 0.0], [9.0, 0.0]])
    e1 = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 0.0], [9.0, 0.0]])
    assert ExitPolicy(thresholds=[0.9, 0.9]).decide([e0, e1]).tolist() == [0, 1, 2, 0]
    assert ExitPolicy(thresholds=[None, 0.9]).decide([e0, e1]).tolist() == [2, 1, 2, 1]
    # entropy: exit when at most the threshold (0.1 nats passes only the sure rows)
    assert ExitPolicy("entropy", [0.1, 0.1]).decide([e0, e1]).tolist() == [0, 1, 2, 0]
    with pytest.raises(InputError, match="2 thresholds; got logits of 1"):
        ExitPolicy(thresholds=[0.9, 0.9]).decide([e0])


def test_policy_json_round_trip(tmp_path):
    p = ExitPolicy("entropy", [0.25, None], exits=["exit0", "exit1"], accuracy=0.98, exit_fractions=[0.5, 0.3, 0.2],
                   stage_costs=[1, 2, 3])
    p.save(tmp_path / "p.json")
    q = ExitPolicy.load(tmp_path / "p.json")
    assert q == p and q.thresholds == (0.25, None) and q.stage_costs == (1.0, 2.0, 3.0)
    with pytest.raises(InputError, match="unknown ExitPolicy fields: color"):
        ExitPolicy.from_dict({"color": 1})
    with pytest.raises(InputError, match="cannot read exit policy"):
        ExitPolicy.load(tmp_path / "missing.json")
    with pytest.raises(InputError, match="Got: 'max'"):
        ExitPolicy("max", [0.5])


def test_flip_probabilities_from_the_keras_to_file_differences():
    from tfcompress.exits.calibration import flip_probabilities
    keras = np.array([0.2, 0.5, 0.8])
    logit = np.log(keras / (1 - keras)) + np.array([0.1, -0.1, 0.0])     # the file's scores, moved in log-odds
    file = 1 / (1 + np.exp(-logit))
    at_half, never = flip_probabilities(keras, file, [0.5, None], "confidence")
    # only the sample on the threshold can flip: it does when the file's score falls below (1 of 3 moves)
    np.testing.assert_allclose(at_half, [0.0, 1 / 3, 0.0])
    assert never.tolist() == [0.0, 0.0, 0.0]
    # entropy: exit when at most the threshold; a sample just above it flips on any downward move
    ent = flip_probabilities(np.array([1.0, 1.01]), np.array([0.9, 1.01]), [1.005], "entropy")[0]
    np.testing.assert_allclose(ent, [0.0, 0.5])
