"""tfcompress.recipes: the public names, the stage registry, parsing, and a run through a custom stage."""
import dataclasses
import json

import pytest

from tfcompress import recipes
from tfcompress.errors import InputError
from tfcompress.recipe import registry, runner, schema, state

TINY = """
name: tiny
data: digits
model: {build: lenet300, args: {input_shape: [8, 8, 1]}}
steps:
  - train: {epochs: 1}
  - count_zeros_test: {threshold: 0.0}
"""


@dataclasses.dataclass
class CountConfig:
    threshold: float = 0.0

    def __post_init__(self):
        if self.threshold < 0:
            raise InputError(f"threshold must be >= 0. Got: {self.threshold}")


@pytest.fixture
def count_stage():
    @registry.register_stage("count_zeros_test", CountConfig)
    def count(run, config):
        import numpy as np
        zeros = sum(int(np.sum(np.abs(w) <= config.threshold)) for w in run.model.get_weights())
        state.record(run, "count", zeros=zeros, accuracy=state.accuracy(run))
    yield count
    registry.unregister_stage("count_zeros_test")


def test_public_names_keep_working():
    for name in ("register_stage", "stages", "load_config", "DataConfig", "ModelConfig", "Recipe", "parse", "load",
                 "run", "RunState", "TrainConfig", "fit", "accuracy", "record", "compile_model"):
        assert hasattr(recipes, name), name
    assert recipes.register_stage is registry.register_stage and recipes.run is runner.run
    assert recipes.RunState is state.RunState and recipes.Recipe is schema.Recipe


def test_parse_knows_every_stage_module():
    recipe, steps = recipes.parse("name: n\nmodel: {build: lenet300}\nsteps: [train, strip, cluster, quantize, "
                                  "{distill: {student: {build: lenet300}}}, {size: {export: float32}}]")
    assert [n for n, _ in steps] == ["train", "strip", "cluster", "quantize", "distill", "size"]
    assert isinstance(steps[0][1], recipes.TrainConfig) and steps[5][1].mode == "float32"
    assert {"train", "prune", "strip", "save", "export", "bench", "cluster", "quantize_clusters", "size", "distill",
            "quantize"} <= set(recipes.stages())


@pytest.mark.parametrize("steps, message", [
    ("[nope]", "steps[0]: unknown stage 'nope'; known stages: "),
    ("[{train: {epochs: many}}]", "steps[0].train.epochs: expected int. Got: 'many'"),
    ("[{train: {epochs: 1}, strip: {}}]", "steps[0]: each step is one stage name"),
    ("[train, {train: {speed: 3}}]", "steps[1].train.speed: unknown key; known keys: batch_size, epochs"),
    ("[{train: {optimizer: rmsprop}}]", "steps[0].train: optimizer must be adam or sgd. Got: 'rmsprop'"),
])
def test_bad_steps_name_their_path(steps, message):
    with pytest.raises(InputError) as e:
        recipes.parse(f"name: n\nmodel: {{build: lenet300}}\nsteps: {steps}")
    assert str(e.value).startswith(message) and len(str(e.value).splitlines()) == 1


def test_register_and_unregister_a_stage(count_stage):
    assert registry.stages()["count_zeros_test"] == (CountConfig, count_stage)
    assert registry.lookup("count_zeros_test", "steps[0]") == (CountConfig, count_stage)
    with pytest.raises(InputError, match="threshold must be >= 0. Got: -1"):
        recipes.parse(TINY.replace("threshold: 0.0", "threshold: -1"))
    with pytest.raises(InputError, match="a stage name is a non-empty string. Got: ''"):
        registry.register_stage("", CountConfig)
    registry.unregister_stage("count_zeros_test")
    assert "count_zeros_test" not in registry.stages()
    with pytest.raises(InputError, match="steps\\[7\\]: unknown stage 'count_zeros_test'"):
        registry.lookup("count_zeros_test", "steps[7]")


def test_a_custom_stage_runs_on_the_run_state(count_stage, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    lines = []
    run = recipes.run(str(path), out=str(tmp_path / "out"), echo=lines.append)
    assert isinstance(run, recipes.RunState)
    assert [r["stage"] for r in run.rows] == ["train", "count"]
    train, count = run.rows
    assert count["accuracy"] == pytest.approx(train["accuracy"], abs=1e-12)   # no training in between
    import numpy as np
    assert count["zeros"] == sum(int(np.sum(w == 0)) for w in run.model.get_weights())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(run.summary(), default=float))
    assert lines[:2] == ["[1/2] train", f"  accuracy {train['accuracy']:.4f}"]
    assert "[2/2] count_zeros_test" in lines and lines[-1] == f"  written: {tmp_path / 'out' / 'summary.json'}"


def test_the_stage_example_of_the_recipes_readme_runs(tmp_path):
    import os
    import re
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "README.md")
    with open(readme, encoding="utf-8") as f:
        code, = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    namespace = {"__name__": "readme_stage"}
    try:
        exec(compile(code, readme, "exec"), namespace)
        assert recipes.stages()["finetune"][1] is namespace["finetune"]
        path = tmp_path / "r.yaml"
        path.write_text(TINY.replace("count_zeros_test: {threshold: 0.0}", "finetune: {epochs: 1}"))
        run = recipes.run(str(path), out=str(tmp_path / "out"), echo=lambda line: None)
        assert [r["stage"] for r in run.rows] == ["train", "finetune"]
        assert run.rows[1]["accuracy"] > 0.5
    finally:
        registry.unregister_stage("finetune")
