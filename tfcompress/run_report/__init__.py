"""The report of a recipe run: `OUT/report.md` and the PNGs beside it, built from `OUT/summary.json` alone.

`tfcompress run` writes it at the end of every run; `tfcompress report OUT` (or `write(OUT)`) rebuilds it,
and the same summary.json gives the same text byte for byte (nothing in it comes from anywhere else: the
machine line is the one the run recorded). What it holds:

- one table over the stages: accuracy, sparsity, clusters, file / gzip / coded bytes and median latency,
  each also against the run's float32 file in words (`1.99× smaller`, `1.38× faster`, `-0.22 points`);
- the latency of every benchmarked configuration (p5 / p50 / p95);
- PNGs: size per stage, accuracy against size and against latency, and the per-layer SQNR of each int8
  export (from its export report);
- the machine: its CPU, the features that decide int8 speed, and what they mean for int8 against float32.

`table` reads the facts and words them, `charts` draws them. Imports no TensorFlow.
"""
import json
import os

from tfcompress.errors import InputError

REPORT = "report.md"
SUMMARY = "summary.json"
QUANTIZED = ("int8", "int16x8")   # exports whose per-layer noise is drawn


def load_summary(folder):
    """The summary dict of a run folder (or of a summary.json path).

    Raises:
      InputError: the folder does not exist, holds no summary.json, or it is not a run's summary.
    """
    path = os.path.join(folder, SUMMARY) if os.path.isdir(folder) else folder
    if not os.path.exists(folder):
        raise InputError(f"no such folder: {folder}")
    if not os.path.isfile(path) or os.path.basename(path) != SUMMARY:
        raise InputError(f"{folder} holds no {SUMMARY}: give the output folder of `tfcompress run RECIPE -o OUT`")
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a text file") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("stages"), list) or not all(
            isinstance(r, dict) for r in summary["stages"]):
        raise InputError(f"{path} is not the summary of a recipe run (it has no list of stage rows)")
    return summary


def _quantized_exports(summary):
    """[(image file name, export dict)] of the exports whose per-layer noise the report draws."""
    out, used = [], set()
    for e in summary.get("exports") or []:
        if isinstance(e, dict) and e.get("mode") in QUANTIZED and e.get("layers"):
            stem = os.path.splitext(os.path.basename(str(e.get("path") or e["mode"])))[0]
            image, k = f"report_sqnr_{stem}.png", 2
            while image in used:
                image, k = f"report_sqnr_{stem}_{k}.png", k + 1
            used.add(image)
            out.append((image, e))
    return out


def _machine_line(summary):
    from tfcompress import machine
    facts = summary.get("machine")
    if not isinstance(facts, dict):
        return "**Machine**: not recorded in this summary.json."
    return f"**Machine**: {machine.line(facts)}"


def _noise_lines(image, export):
    from tfcompress.report import worst_layers
    from tfcompress.run_report.table import name, points
    layers = export["layers"]
    lines = [f"## Quantization noise per layer: `{name(export.get('path'))}`", ""]
    said = []
    if export.get("float_accuracy") is not None and export.get("tflite_accuracy") is not None:
        said.append(f"Accuracy: float {export['float_accuracy']:.4f}, {export['mode']} {export['tflite_accuracy']:.4f} "
                    f"({points(100 * (export['tflite_accuracy'] - export['float_accuracy']))}).")
    finite = [x for x in layers if x.get("sqnr_db") is not None]
    if finite:
        low = min(finite, key=lambda x: x["sqnr_db"])
        said.append(f"Lowest SQNR: {low['layer']}, {low['sqnr_db']:.1f} dB.")
    worst = worst_layers(layers)
    if worst:
        said.append(f"Adding the most noise: {', '.join(worst)}.")
    if said:
        lines += [" ".join(said), ""]
    return lines + [f"![Per-layer SQNR of {name(export.get('path'))}]({image})", ""]


def build(summary):
    """The report of a summary dict: `(markdown text, [(image file name, draw(path))])`; `write` saves both."""
    from tfcompress.run_report import charts, table
    rows = table.rows(summary)
    ref = table.reference(rows)
    lines = [f"# Run report: {summary.get('recipe', '?')}", "", _machine_line(summary), ""]
    timed = next((r.latency for r in rows if r.latency is not None), None)
    if ref is not None:
        latency = " latency against its median on the same device, threads and delegate," if timed else ""
        lines += [f"Against `{table.name(ref.file)}` (stage `{ref.stage}`): sizes against its {ref.file_bytes:,} "
                  f"bytes,{latency} accuracy in points.", ""]
    else:
        lines += ["No float32 file was measured in this run: no ratios (add `- export: {mode: float32}`).", ""]
    if timed is not None:
        stat = "the median (p50)" if timed.p50_ms is not None else "the mean (the tool printed no percentiles)"
        lines += [f"p50 ms: {stat} of {timed.runs or 'the'} timed runs, {table.config_text(timed)}.", ""]
    lines += table.markdown_table(rows, ref) + [""]
    images = []
    latency = table.latency_lines(rows, ref)
    if latency:
        lines += ["## Latency", ""] + latency + [""]
    if charts.sized(rows):
        images += [("report_size.png", lambda p: charts.size_chart(rows, ref, p)),
                   ("report_accuracy.png", lambda p: charts.accuracy_chart(rows, ref, p))]
        lines += ["## Size and accuracy", "", "![Size per stage](report_size.png)", "",
                  f"![Accuracy against size{' and against latency' if timed else ''}](report_accuracy.png)", ""]
    for image, export in _quantized_exports(summary):
        images.append((image, lambda p, e=export: charts.sqnr_chart(e, p)))
        lines += _noise_lines(image, export)
    return "\n".join(lines), images


def write(folder, summary=None):
    """Writes `folder/report.md` and its PNGs (atomically); returns `(report path, [image paths])`.

    Args:
      folder: the run's output folder.
      summary: the summary dict. Defaults to `None`: read from `folder/summary.json`.

    Raises:
      InputError: see `load_summary`.
    """
    from tfcompress.fileio import write_text
    if summary is None:
        summary = load_summary(folder)
    text, images = build(summary)
    paths = [draw(os.path.join(folder, image)) for image, draw in images]
    return write_text(os.path.join(folder, REPORT), text), paths
