"""The command line: help everywhere, and the bad-input rule (one line, non-zero exit, no traceback,
no output file) for the export and run paths."""
import os

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, call_cli, run_cli
from tfcompress.cli import COMMANDS


def test_help_and_every_subcommand_help(capsys):
    top = run_cli("--help")
    assert top.returncode == 0 and "export" in top.stdout and "run" in top.stdout
    for name in COMMANDS:
        if not os.path.exists(os.path.join(os.path.dirname(__file__), "..", "tfcompress", "commands",
                                           COMMANDS[name][0] + ".py")):
            continue
        proc = call_cli(capsys, name, "--help")
        assert proc.returncode == 0, (name, proc.stderr)
        assert "usage: tfcompress " + name in proc.stdout, name


def test_unknown_command():
    proc = run_cli("frobnicate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from tfcompress._tf import keras
    folder = tmp_path_factory.mktemp("models")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu6"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    path = folder / "m.keras"
    model.save(path)
    return path


def bad_files(folder):
    (folder / "text.keras").write_text("this is not a model\n")
    (folder / "empty.keras").write_bytes(b"")
    (folder / "random.h5").write_bytes(np.random.RandomState(0).bytes(4096))
    (folder / "random.keras").write_bytes(np.random.RandomState(1).bytes(4096))
    return folder


@pytest.mark.parametrize("args,message", [
    (["{d}/missing.keras", "-o", "{d}/out.tflite"], "not found"),
    (["{d}/text.keras", "-o", "{d}/out.tflite"], "not a .keras"),
    (["{d}/empty.keras", "-o", "{d}/out.tflite"], "empty"),
    (["{d}/random.h5", "-o", "{d}/out.tflite"], "HDF5"),
    (["{d}/random.keras", "-o", "{d}/out.tflite"], "not a .keras"),
    (["{m}", "-o", "{d}/out.tflite", "--data", "nope"], "unknown data spec"),
    (["{m}", "-o", "{d}/out.tflite", "--data", "npz:{d}/missing.npz"], "not found"),
    (["{m}", "-o", "{d}/out.tflite", "--mode", "int4"], "unknown mode"),
    (["{m}", "-o", "{d}/no/such/folder/out.tflite"], "folder does not exist"),
    (["{m}", "-o", "{m}"], "overwrite"),
    (["{m}", "-o", "{d}/out.tflite", "--samples", "0"], "samples"),
])
def test_export_bad_input(saved_model, tmp_path, capsys, args, message):
    bad_files(tmp_path)
    before = sorted(os.listdir(tmp_path))
    model_bytes = saved_model.read_bytes()
    proc = call_cli(capsys, "export", *[a.format(d=tmp_path, m=saved_model) for a in args])
    line = assert_one_line_error(proc)
    assert message in line, line
    assert sorted(os.listdir(tmp_path)) == before          # no output, no temporary file left
    assert saved_model.read_bytes() == model_bytes          # the input is never overwritten


def test_keras_dataset_offline_fails_with_one_line(saved_model, tmp_path):
    # a proxy on a closed local port stands in for "no network": nothing leaves this machine
    env = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "KERAS_HOME": str(tmp_path / "keras_home")}
    proc = run_cli("export", saved_model, "-o", tmp_path / "o.tflite", "--data", "keras:mnist", env=env)
    line = assert_one_line_error(proc)
    assert "keras:mnist" in line and "offline" in line
    assert not (tmp_path / "o.tflite").exists()


def test_export_command_end_to_end(saved_model, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    proc = call_cli(capsys, "export", saved_model, "-o", out, "--data", "digits", "--samples", "64",
                   "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert "ReLU6 outputs: 1, pinned to [0, 6]" in proc.stdout and "1/1" in proc.stdout
    assert "top-1 agreement" in proc.stdout
    import json
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mode"] == "int8" and report["bytes"] == out.stat().st_size and report["float_ops"] == []


@pytest.mark.parametrize("content,message", [
    ("name: x\nsteps: [train]\nmodel: {build: lenet5}\nbogus: 1\n", "recipe.bogus: unknown key"),
    ("name: x\nsteps: [{train: {epochs: many}}]\nmodel: {build: lenet5}\n", "steps[0].train.epochs: expected int"),
    ("name: x\nsteps: [{fly: {}}]\nmodel: {build: lenet5}\n", "unknown stage 'fly'"),
    ("name: x\nsteps: [train]\nmodel: {build: lenet5, path: a.keras}\n", "exactly one of build"),
    ("name: x\nsteps: [train]\n", "missing key model"),
    ("name: [unclosed\n", "not valid YAML"),
    ("name: x\nsteps: [train]\nmodel: {build: lenet5}\ndata: {spec: 3}\n", "data.spec: expected str"),
])
def test_recipe_errors_name_the_key(tmp_path, capsys, content, message):
    path = tmp_path / "r.yaml"
    path.write_text(content)
    line = assert_one_line_error(call_cli(capsys, "run", path, "--check"))
    assert message in line, line


def test_missing_recipe_in_a_real_process():
    line = assert_one_line_error(run_cli("run", "/nonexistent/recipe.yaml"))
    assert "recipe not found" in line


def test_bad_model_in_a_real_process(tmp_path):
    (tmp_path / "t.keras").write_text("not a model")
    line = assert_one_line_error(run_cli("export", tmp_path / "t.keras", "-o", tmp_path / "o.tflite"))
    assert "not a .keras" in line and not (tmp_path / "o.tflite").exists()


def test_shipped_recipes_are_valid(capsys):
    root = os.path.join(os.path.dirname(__file__), "..", "recipes")
    for name in sorted(os.listdir(root)):
        if name.endswith(".yaml"):
            proc = call_cli(capsys, "run", os.path.join(root, name), "--check")
            assert proc.returncode == 0, (name, proc.stderr)


def test_tiny_recipe_runs_end_to_end(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"""
name: tiny
model: {{build: mobilenet_v2_small, args: {{input_shape: [8, 8, 1], blocks: [[1, 16, 1], [2, 16, 1]], head: 32}}}}
output: {tmp_path / 'out'}
steps:
  - train: {{epochs: 2}}
  - prune: {{schedule: {{type: PolynomialDecay, target: 0.5, end_step: auto, frequency: 5}}, epochs: 2}}
  - strip
  - export: {{mode: int8, samples: 32}}
  - bench: {{runs: 3, min_secs: 0.0, warmup: 1}}
""")
    proc = run_cli("run", recipe)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["stage"] for r in summary["stages"]] == ["train", "prune", "export int8"]
    assert all(abs(v - 0.5) <= 0.01 for v in summary["sparsity"].values())
    assert summary["exports"][0]["relu6"] and all(r["pinned"] for r in summary["exports"][0]["relu6"])
    assert summary["bench"][0]["ok"] and summary["bench"][0]["avg_ms"] > 0


def test_recipe_prune_stage_takes_per_layer_targets(tmp_path, capsys):
    from tfcompress import recipes
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
name: perlayer
model: {{build: lenet300, args: {{input_shape: [8, 8, 1]}}}}
output: {tmp_path / 'out'}
steps:
  - prune:
      schedule: {{type: PolynomialDecay, target: 0.5, end_step: auto, frequency: 5}}
      layers: {{fc1: 0.9, fc2: {{type: ConstantSparsity, target: 0.3, frequency: 5}}}}
      epochs: 1
""")
    state = recipes.run(str(recipe), echo=lambda *a: None)
    assert set(state.sparsity) == {"fc1", "fc2"}
    assert abs(state.sparsity["fc1"] - 0.9) <= 0.01 and abs(state.sparsity["fc2"] - 0.3) <= 0.01
    recipe.write_text(recipe.read_text().replace("fc1: 0.9", "fc1: 1.5"))
    line = assert_one_line_error(call_cli(capsys, "run", recipe))
    assert "prune.layers.fc1" in line
