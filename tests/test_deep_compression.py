"""Deep Compression as a recipe: the cluster, quantize_clusters and size stages (tfcompress/stages/cluster.py)
on a small LeNet-300-100, the shipped recipes, and `tfcompress size --clusters`."""
import json
import os

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_cli
from tfcompress import recipes
from tfcompress.errors import InputError

SMALL = """
name: dc_small
seed: 0
data: {spec: digits}
model: {build: lenet300, args: {input_shape: [8, 8, 1]}}
output: OUT
steps:
  - train: {epochs: 4, batch_size: 32, learning_rate: 0.003}
  - size: {label: float, export: float32}
  - prune:
      schedule: {type: PolynomialDecay, target: 0.8, end_step: auto, frequency: 5}
      layers: [fc1, fc2]
      epochs: 3
  - strip
  - cluster: {clusters: {fc1: 8, fc2: 8, fc3: 12}, epochs: 2}
  - strip
  - quantize_clusters: {epochs: 1}
  - export: {mode: int8, samples: 64}
  - size: {label: int8}
"""


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dc")
    path = out / "dc_small.yaml"
    path.write_text(SMALL.replace("OUT", str(out / "run")))
    lines = []
    state = recipes.run(str(path), echo=lines.append)
    return state, out / "run", "\n".join(lines)


def test_small_pipeline_sizes_and_clusters(small_run):
    from tfcompress.tflite import pack, reader, size
    state, out, text = small_run
    sizes = {d["label"]: d for d in state.sizes}
    assert set(sizes) == {"float", "int8"}
    f, q = sizes["float"], sizes["int8"]
    assert f["float32_bytes"] == 4 * (64 * 300 + 300 * 100 + 100 * 10) == q["float32_bytes"]
    assert f["weight_bytes"] == f["float32_bytes"] and q["weight_bytes"] == f["float32_bytes"] // 4
    assert q["coded_bytes"] == q["index_bytes"] + q["value_bytes"] + q["codebook_bytes"]
    assert q["ratio"] == pytest.approx(q["float32_bytes"] / q["coded_bytes"], rel=1e-3) and q["ratio"] > 20
    assert f["accuracy"] > 0.85 and q["accuracy"] > f["accuracy"] - 0.05
    assert all(state.clusters[k] <= v for k, v in {"fc1": 8, "fc2": 8, "fc3": 12}.items())
    path = state.files["int8"]
    by_shape = {tuple(c.shape): c for c in size.cluster_counts(path)}
    for shape, k in (((300, 64), 8), ((100, 300), 8), ((10, 100), 12)):
        assert by_shape[shape].per_tensor <= k, shape                  # Dense: int8 per tensor
    model = reader.read(path)
    fc1 = next(t for t in reader.weight_tensors(model) if tuple(t.shape) == (300, 64))
    assert fc1.zero_fraction == pytest.approx(0.8, abs=0.01)           # pruned zeros into the int8 file
    data = open(path, "rb").read()
    assert pack.unpack(pack.pack(data)) == data
    summary = json.loads((out / "summary.json").read_text())
    assert [r["stage"] for r in summary["stages"]][-1] == "size int8"
    saved = json.loads((out / "dc_small_size_int8.json").read_text())
    assert saved["coded_bytes"] == q["coded_bytes"] and saved["label"] == "int8"
    assert "smaller than float32" in text and "quantize_clusters" in text


def test_every_tflite_round_trips_and_cli_checks_clusters(small_run, tmp_path):
    state, out, _ = small_run
    files = sorted(str(p) for p in out.glob("*.tflite"))
    assert len(files) == 2
    for path in files:
        packed, restored = tmp_path / "m.tfcz", tmp_path / "m.tflite"
        assert run_cli("size", path, "--pack", packed).returncode == 0
        assert run_cli("unpack", packed, "-o", restored).returncode == 0
        assert restored.read_bytes() == open(path, "rb").read(), path
        bad = bytearray(packed.read_bytes())
        bad[len(bad) // 3] ^= 0x04
        (tmp_path / "bad.tfcz").write_bytes(bytes(bad))
        assert_one_line_error(run_cli("unpack", tmp_path / "bad.tfcz", "-o", tmp_path / "x.tflite"))
        assert not (tmp_path / "x.tflite").exists()
    int8 = state.files["int8"]
    proc = run_cli("size", int8, "--clusters", "12", "--json")
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)["clusters"]
    assert counts["limit"] == 12 and max(t["per_channel"] for t in counts["tensors"]) <= 12
    assert "more than 4" in assert_one_line_error(run_cli("size", int8, "--clusters", "4"))
    for bad in ("0", "-2", "x"):
        assert "--clusters must be a positive integer" in assert_one_line_error(run_cli("size", int8, "--clusters", bad))
    not_tflite = tmp_path / "notes.tflite"
    not_tflite.write_text("hello\n")
    assert "not a TFLite model" in assert_one_line_error(run_cli("size", not_tflite))


def test_shipped_recipes_parse():
    for name in ("deep_compression_lenet300", "deep_compression_lenet5"):
        recipe, steps = recipes.load(os.path.join(ROOT, "recipes", f"{name}.yaml"))
        names = [s for s, _ in steps]
        assert names.index("prune") < names.index("cluster") < names.index("quantize_clusters") \
            < names.index("export") < len(names) - 1 and names[-1] == "size", name
        assert recipe.data.input_shape == [28, 28, 1]
        cluster = dict(steps)["cluster"]
        assert cluster.preserve_sparsity and dict(steps)["quantize_clusters"].preserve_sparsity
        labels = [c.label for s, c in steps if s == "size"]
        assert labels == ["float", "pruned", "clustered", "int8"]


@pytest.mark.parametrize("options, match", [
    ("{clusters: 0}", "clusters must be an integer >= 3"),
    ("{clusters: {fc1: 2}}", "clusters must be an integer >= 3"),
    ("{clusters: 8, init: kmeans}", "init must be one of"),
    ("{clusters: eight}", "steps\\[0\\].cluster.clusters: expected int or dict"),
])
def test_cluster_stage_bad_options(options, match):
    text = f"name: x\nmodel: {{build: lenet300}}\nsteps:\n  - cluster: {options}\n"
    with pytest.raises(InputError, match=match):
        recipes.parse(text)


def test_size_stage_needs_an_export(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\nmodel: {{build: lenet300, args: {{input_shape: [8, 8, 1]}}}}\n"
                    f"output: {tmp_path / 'o'}\nsteps:\n  - size: {{mode: int8}}\n")
    proc = run_cli("run", path)
    assert "no int8 file exported before this step" in assert_one_line_error(proc)
    path.write_text(f"name: r\nmodel: {{build: lenet300}}\noutput: {tmp_path / 'o'}\n"
                    "steps:\n  - cluster: {clusters: 0}\n")
    assert "clusters must be an integer" in assert_one_line_error(run_cli("run", path))
