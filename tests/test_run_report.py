"""The report of a recipe run (tfcompress.run_report), `tfcompress report`, the console summary's ratios, and
tfcompress.machine. One small recipe runs once (train, export float32 and int8, bench) for the whole file."""
import json
import os
import re

import pytest

from conftest import call_cli, run_cli
from tfcompress import machine, run_report
from tfcompress.run_report import table

RECIPE = """
name: tiny
model: {{build: lenet300, args: {{input_shape: [8, 8, 1]}}}}
output: {out}
steps:
  - train: {{epochs: 2, batch_size: 64}}
  - export: {{mode: float32}}
  - export: {{mode: int8, samples: 32}}
  - size: {{mode: int8}}
  - bench: {{runs: 20, min_secs: 0.0, warmup: 1}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tfcompress import recipes
    folder = tmp_path_factory.mktemp("run")
    path = folder / "tiny.yaml"
    path.write_text(RECIPE.format(out=folder / "out"))
    lines = []
    recipes.run(str(path), echo=lines.append)
    out = folder / "out"
    return out, json.loads((out / "summary.json").read_text()), lines


def _table(text):
    """The report's stage table: [{header: cell}] (the first Markdown table)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    body = []
    for line in rows[2:]:
        if line.startswith("|---") or line.startswith("| file |"):
            break
        body.append([c.strip() for c in line.strip("|").split("|")])
    return header, body


def test_report_table_images_and_machine_line_come_from_summary(run):
    out, summary, _ = run
    text = (out / "report.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"report_size.png", "report_accuracy.png", "report_sqnr_tiny_int8.png"} <= set(images)
    for image in images:
        data = (out / image).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    cpu = summary["machine"]["cpu"]
    assert cpu == machine.cpu_name() and f"**Machine**: {cpu} (" in text
    assert summary["machine"]["int8"] in text and "int8" in summary["machine"]["int8"]
    header, body = _table(text)
    assert [b[0] for b in body] == [r["stage"] for r in summary["stages"]] == [
        "train", "export float32", "export int8", "size int8"]
    cells = [dict(zip(header, b)) for b in body]
    for row, c in zip(summary["stages"], cells):
        assert c["accuracy"] == f"{row['accuracy']:.4f}"
    by_stage = {r["stage"]: r for r in summary["stages"]}
    f32, i8, size = cells[1], cells[2], cells[3]
    assert int(f32["file bytes"].replace(",", "")) == by_stage["export float32"]["bytes"]
    assert int(i8["file bytes"].replace(",", "")) == by_stage["export int8"]["bytes"]
    assert int(size["gzip bytes"].replace(",", "")) == by_stage["size int8"]["gzip_bytes"]
    assert int(size["coded bytes"].replace(",", "")) == by_stage["size int8"]["coded_bytes"]
    bench = {os.path.basename(b["model"]): b for b in summary["bench"]}
    assert f32["p50 ms"] == f"{bench['tiny_float32.tflite']['p50_ms']:.4g}"
    assert i8["p50 ms"] == f"{bench['tiny_int8.tflite']['p50_ms']:.4g}"
    # ratios say which way, against the float32 file
    vs = [i for i, h in enumerate(header) if h == "vs float32"]
    size_ratio = by_stage["export int8"]["bytes"] / by_stage["export float32"]["bytes"]
    assert body[2][vs[1]] == f"{1 / size_ratio:.3g}× smaller" and body[1][vs[1]] == "reference"
    lat = bench["tiny_int8.tflite"]["p50_ms"] / bench["tiny_float32.tflite"]["p50_ms"]
    assert body[2][vs[-1]] == (f"{lat:.3g}× slower" if lat >= 1 else f"{1 / lat:.3g}× faster")
    delta = 100 * (by_stage["export int8"]["accuracy"] - by_stage["export float32"]["accuracy"])
    assert body[2][vs[0]] == f"{delta:+.2f} points"
    # the latency section: p5 / p50 / p95 of each configuration
    assert f"| tiny_int8.tflite | local | 1 | xnnpack | {bench['tiny_int8.tflite']['p5_ms']:.4g} |" in text


def test_console_summary_prints_the_same_ratios(run):
    out, summary, lines = run
    at = lines.index(next(line for line in lines if line.lstrip().startswith("summary")))
    said = {line.split()[0] + " " + line.split()[1]: line for line in lines[at + 1:at + 5]}
    assert "the float32 reference" in said["export float32"]
    rows = table.rows(summary)
    ratio = table.ratios(rows[2], table.reference(rows))
    int8 = said["export int8"]
    assert f"size {table.size_words(ratio['file_bytes'])}" in int8
    assert re.search(r"latency [\d.]+× (slower|faster)|latency same", int8)
    assert f"accuracy {ratio['accuracy']:+.2f} points" in int8
    assert any(line.startswith("  machine: ") for line in lines)
    assert lines[-2] == f"  written: {out / 'report.md'} (3 pictures beside it)"


def test_report_command_rebuilds_the_same_text(run, capsys):
    out, _, _ = run
    first = (out / "report.md").read_bytes()
    for name in os.listdir(out):
        if name.startswith("report"):
            os.unlink(out / name)
    r = call_cli(capsys, "report", out)
    assert r.returncode == 0, r.stderr
    assert (out / "report.md").read_bytes() == first
    assert r.stdout.splitlines()[0] == f"written: {out / 'report.md'}" and len(r.stdout.splitlines()) == 4
    assert all((out / p).stat().st_size > 2000 for p in ("report_size.png", "report_accuracy.png"))
    assert call_cli(capsys, "report", out / "summary.json").returncode == 0     # the file may be named
    assert (out / "report.md").read_bytes() == first


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "missing", "no such folder"),
    (lambda d: d, "holds no summary.json"),
    (lambda d: (d / "summary.json").write_text('{"stages": [') and d, "is not valid JSON: Expecting value at line 1"),
    (lambda d: (d / "summary.json").write_text('{"recipe": "x"}') and d, "is not the summary of a recipe run"),
    (lambda d: (d / "summary.json").write_bytes(b"\xff\xfe\x00") and d, "is not a text file"),
])
def test_bad_input_is_one_line(tmp_path, capsys, make, message):
    folder = make(tmp_path)
    r = call_cli(capsys, "report", folder)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("tfcompress: error: ") and message in r.stderr
    assert not (tmp_path / "report.md").exists()


def test_bad_input_as_a_program_has_no_log_lines(tmp_path):
    r = run_cli("report", tmp_path / "nowhere")
    assert r.returncode == 1 and r.stderr == f"tfcompress: error: no such folder: {tmp_path / 'nowhere'}\n"


def _summary(**over):
    """A summary as an older runner wrote it: no machine, no row_files (exports paired with export rows)."""
    bench = [{"model": m, "device": "local", "threads": 1, "delegate": "xnnpack", "ok": True, "runs": 50,
              "avg_ms": ms * 1.5, "p5_ms": ms * 0.9, "p50_ms": ms, "p95_ms": ms * 2} for m, ms in
             (("o/a_float32.tflite", 2.0), ("o/a_int8.tflite", 3.16))]
    s = {"recipe": "old", "stages": [{"stage": "train", "accuracy": 0.9},
                                     {"stage": "export float32", "accuracy": 0.9, "bytes": 4000},
                                     {"stage": "export int8", "accuracy": 0.885, "bytes": 1000}],
         "files": {}, "sparsity": None, "bench": bench,
         "exports": [{"path": "o/a_float32.tflite", "mode": "float32", "layers": []},
                     {"path": "o/a_int8.tflite", "mode": "int8", "layers": []}]}
    s.update(over)
    return s


def test_an_older_summary_pairs_exports_with_their_rows_and_ratios_say_which_way():
    text, images = run_report.build(_summary())
    assert "**Machine**: not recorded in this summary.json." in text
    int8 = "| export int8 | a_int8.tflite | 0.8850 | -1.50 points | 1,000 | 4× smaller | 3.16 | 1.58× slower |"
    assert int8 in text
    assert [name for name, _ in images] == ["report_size.png", "report_accuracy.png"]  # no layers: no SQNR chart


def test_without_a_float32_file_there_are_no_ratios():
    s = _summary(stages=[{"stage": "export int8", "accuracy": 0.885, "bytes": 1000}],
                 exports=[{"path": "o/a_int8.tflite", "mode": "int8", "layers": []}])
    text, _ = run_report.build(s)
    assert "No float32 file was measured in this run: no ratios" in text
    header, _ = _table(text)
    assert "vs float32" not in header and header[:3] == ["stage", "file", "accuracy"]


@pytest.mark.parametrize("flags,arch,features,says", [
    ("fpu sse2 avx avx2 fma", "x86_64", ["AVX2"], "may be no faster than float32"),
    ("avx2 avx512f avx512_vnni", "x86_64", ["AVX2", "AVX512-VNNI"], "should be faster than float32"),
    ("avx2 avx_vnni", "x86_64", ["AVX2", "AVX-VNNI"], "should be faster than float32"),
    ("fp asimd evtstrm aes asimddp", "aarch64", ["NEON", "dotprod"], "NEON dotprod"),
    ("half thumb fastmult vfp edsp neon vfpv3", "armv7l", ["NEON"], "usually faster than float32 on NEON"),
    ("fpu sse2", "x86_64", [], "may be slower than float32"),
])
def test_machine_features_and_what_they_mean_for_int8(flags, arch, features, says):
    assert machine.cpu_features(flags) == features
    note = machine.int8_note(features)
    assert says in note and note.endswith(".") and note.count(". ") == 0   # one sentence
    line = machine.line({"cpu": "X", "arch": arch, "cores": 4, "features": features, "int8": note})
    assert line.startswith(f"X ({arch}, 4 cores; ") and line.endswith(note)


def test_report_command_needs_no_tensorflow(tmp_path):
    import subprocess
    import sys
    (tmp_path / "summary.json").write_text(json.dumps(_summary()))
    code = ("import sys\nfrom tfcompress.cli import main\nrc = main(['report', sys.argv[1]])\n"
            "print(rc, 'tensorflow' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=root))
    assert proc.stdout.splitlines()[-1] == "0 False", proc.stderr
    assert (tmp_path / "report.md").exists() and (tmp_path / "report_accuracy.png").stat().st_size > 2000


def test_a_step_that_writes_the_same_file_again_still_names_it():
    from types import SimpleNamespace
    from tfcompress.recipe.runner import _measured
    state = SimpleNamespace(sizes=[], reports=[], files={"int8": "o/m_int8.tflite", "keras": "o/m.keras"})
    before = (0, 0, dict(state.files))
    state.reports.append(SimpleNamespace(path="o/m_int8.tflite"))     # an export over the same path
    assert _measured(state, before) == {"file": "o/m_int8.tflite", "mode": "int8"}
    assert _measured(state, (0, 1, dict(state.files))) == {}          # a step that measured no file
    state.files["float32"] = "o/m_float32.tflite"                     # a step that only wrote a file
    assert _measured(state, (0, 1, {"int8": "o/m_int8.tflite"})) == {"file": "o/m_float32.tflite", "mode": "float32"}
