import pytest

from tfcompress.errors import InputError
from tfcompress.schedules import ConstantSparsity, IterativeSteps, PolynomialDecay, Schedule


def test_polynomial_decay_follows_zhu_gupta_and_updates_every_frequency_steps():
    s = PolynomialDecay(0.8, begin_step=100, end_step=1100, frequency=100, power=3)
    assert s(0) == (False, 0.0)
    assert s(100) == (True, 0.0)
    should, value = s(600)
    assert should and value == pytest.approx(0.8 - 0.8 * 0.5 ** 3)
    assert s(650) == (False, value)        # sparsity holds between updates
    assert s(1100) == (True, 0.8)
    assert s(5000) == (False, 0.8)
    assert PolynomialDecay(0.5, end_step=7, frequency=5)(7) == (True, 0.5)   # the end step always updates


def test_constant_sparsity_window():
    s = ConstantSparsity(0.5, begin_step=10, end_step=30, frequency=10)
    assert [s(i)[0] for i in (0, 10, 15, 20, 30, 40)] == [False, True, False, True, True, False]
    assert s(5) == (False, 0.0) and s(40) == (False, 0.5)
    assert ConstantSparsity(0.3)(1_000_000)[0]   # end_step -1: until training ends


def test_iterative_steps_train_prune_train():
    s = IterativeSteps([(200, 0.2), (100, 0.1)])
    assert s.steps == ((100, 0.1), (200, 0.2))
    assert s(50) == (False, 0.0) and s(100) == (True, 0.1) and s(150) == (False, 0.1) and s(200) == (True, 0.2)
    every = IterativeSteps.every(500, 0.1, 0.5)
    assert every.steps == ((500, 0.1), (1000, 0.2), (1500, 0.3), (2000, 0.4), (2500, 0.5))
    assert IterativeSteps([(0, 0.9)]).final_sparsity() == 0.9   # one big step: aggressive


@pytest.mark.parametrize("schedule", [ConstantSparsity(0.5, 2, 20, 3), PolynomialDecay(0.8, 0, 100, 2, 7, 0.1),
                                      IterativeSteps([(1, 0.1), (5, 0.4)])])
def test_config_round_trip(schedule):
    again = Schedule.from_dict(schedule.to_dict())
    assert again == schedule and [again(i) for i in range(30)] == [schedule(i) for i in range(30)]
    assert Schedule.from_dict({"type": type(schedule).__name__, **schedule.get_config()["config"]}) == schedule


@pytest.mark.parametrize("bad", [lambda: ConstantSparsity(1.0), lambda: ConstantSparsity(-0.1),
                                 lambda: PolynomialDecay(0.5), lambda: PolynomialDecay(0.5, 10, 5),
                                 lambda: ConstantSparsity(0.5, frequency=0), lambda: IterativeSteps([]),
                                 lambda: IterativeSteps([(1, 0.1), (1, 0.2)]), lambda: IterativeSteps("x"),
                                 lambda: Schedule.from_dict({"type": "Nope"}),
                                 lambda: Schedule.from_dict({"type": "ConstantSparsity", "sparsity": 0.5})])
def test_bad_arguments_raise_input_error(bad):
    with pytest.raises(InputError):
        bad()
