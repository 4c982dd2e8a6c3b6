"""The facts of a run report, read from a recipe run's summary.json: one `Row` per stage row, each with the file
it measured (if any), its latency there, and its ratios against the run's float32 file; the Markdown table
and the console lines that say them.

Every ratio is against the *reference*: the first float32 .tflite file the run measured (an `export` with
`mode: float32`, or a `size` step that exported float32). Sizes are compared with its file bytes, latency
with its median under the same device, threads and delegate, accuracy as a difference in points.
"""
import dataclasses
import os
import typing

from android_bench.report import latency_ms, ratio_text
from android_bench.results import BenchResult


@dataclasses.dataclass
class Row:
    """One stage row of summary.json and what the report says of it (`None` where the run did not measure)."""
    stage: str
    accuracy: typing.Optional[float] = None
    sparsity: typing.Optional[float] = None
    clusters: typing.Optional[int] = None
    file_bytes: typing.Optional[int] = None
    gzip_bytes: typing.Optional[int] = None
    coded_bytes: typing.Optional[int] = None
    file: typing.Optional[str] = None
    mode: typing.Optional[str] = None
    bench: list = dataclasses.field(default_factory=list)   # BenchResults of `file`, ok ones only

    @property
    def latency(self):
        """The first benchmark configuration of the row's file (the one the table shows), or None."""
        return self.bench[0] if self.bench else None


def _row_files(summary):
    """[{"file", "mode"}] aligned with the stage rows: what the runner recorded, or, for a summary written
    without it, each `export MODE` row paired with the export reports in order."""
    stages = summary.get("stages") or []
    recorded = summary.get("row_files")
    if isinstance(recorded, list) and len(recorded) == len(stages):
        return [r if isinstance(r, dict) else {} for r in recorded]
    exports = iter(summary.get("exports") or [])
    out = []
    for row in stages:
        e = next(exports, None) if str(row.get("stage", "")).startswith("export ") else None
        out.append({"file": e.get("path"), "mode": e.get("mode")} if e else {})
    return out


def rows(summary):
    """The `Row`s of a summary dict, in stage order."""
    bench = [BenchResult.from_dict(b) for b in summary.get("bench") or [] if isinstance(b, dict)]
    out = []
    for row, where in zip(summary.get("stages") or [], _row_files(summary)):
        file = where.get("file")
        out.append(Row(stage=str(row.get("stage")), accuracy=row.get("accuracy", row.get("distilled")),
                       sparsity=row.get("sparsity"), clusters=row.get("max_clusters"),
                       file_bytes=row.get("bytes", row.get("file_bytes")), gzip_bytes=row.get("gzip_bytes"),
                       coded_bytes=row.get("coded_bytes"), file=file, mode=where.get("mode"),
                       bench=[b for b in bench if file and b.model == file and b.ok and latency_ms(b)]))
    return out


def reference(table):
    """The reference row: the first that measured a float32 .tflite file, or None."""
    return next((r for r in table if r.mode == "float32" and r.file_bytes), None)


def _same_config(ref, result):
    return next((b for b in ref.bench if (b.device, b.threads, b.delegate) ==
                 (result.device, result.threads, result.delegate)), None)


def latency_ratio(row, ref, result=None):
    """The row's latency (its first configuration, or `result`) / the reference's under the same
    configuration (medians when both have one), or None."""
    result = result or row.latency
    base = _same_config(ref, result) if ref is not None and result is not None else None
    if base is None:
        return None
    return latency_ms(result, base) / latency_ms(base, result)


def ratios(row, ref):
    """{"accuracy": points, "file_bytes" / "gzip_bytes" / "coded_bytes": bytes / the reference's file bytes,
    "latency": latency ratio} against the reference; only what both measured."""
    if ref is None:
        return {}
    out = {}
    if row.accuracy is not None and ref.accuracy is not None:
        out["accuracy"] = 100.0 * (row.accuracy - ref.accuracy)
    for key in ("file_bytes", "gzip_bytes", "coded_bytes"):
        if getattr(row, key) is not None:
            out[key] = getattr(row, key) / ref.file_bytes
    lat = latency_ratio(row, ref)
    if lat is not None:
        out["latency"] = lat
    return out


def points(delta):
    return f"{delta:+.2f} points"


def size_words(ratio):
    return ratio_text(ratio, "larger", "smaller")


def _is_ref(row, ref):
    return ref is not None and row is ref


def cells(row, ref):
    """{column: text} of a row for the table: values as summary.json holds them, ratios in words."""
    r = ratios(row, ref)
    c = {"stage": row.stage}
    if row.file:
        c["file"] = name(row.file)
    if row.accuracy is not None:
        c["accuracy"] = f"{row.accuracy:.4f}"
        c["Δ accuracy"] = "reference" if _is_ref(row, ref) else points(r["accuracy"]) if "accuracy" in r else ""
    if row.sparsity is not None:
        c["sparsity"] = f"{row.sparsity:.4f}"
    if row.clusters is not None:
        c["clusters"] = str(row.clusters)
    for key, column in (("file_bytes", "file bytes"), ("gzip_bytes", "gzip bytes"), ("coded_bytes", "coded bytes")):
        if getattr(row, key) is not None:
            c[column] = f"{getattr(row, key):,}"
            c[f"{column} vs float32"] = ("reference" if _is_ref(row, ref) and key == "file_bytes"
                                       else size_words(r[key]) if key in r else "")
    if row.latency is not None:
        c["p50 ms"] = f"{latency_ms(row.latency):.4g}"
        c["latency vs float32"] = ("reference" if _is_ref(row, ref) else
                                   ratio_text(r["latency"]) if "latency" in r else "")
    return c


COLUMNS = ("stage", "file", "accuracy", "Δ accuracy", "sparsity", "clusters", "file bytes", "file bytes vs float32",
           "gzip bytes", "gzip bytes vs float32", "coded bytes", "coded bytes vs float32", "p50 ms",
           "latency vs float32")
_HEADERS = {"Δ accuracy": "vs float32", "file bytes vs float32": "vs float32", "gzip bytes vs float32": "vs float32",
            "coded bytes vs float32": "vs float32", "latency vs float32": "vs float32"}


def markdown_table(table, ref):
    """The stage table as Markdown lines; columns that no row fills are left out."""
    body = [cells(r, ref) for r in table]
    columns = [c for c in COLUMNS if any(c in b for b in body)]
    if ref is None:
        columns = [c for c in columns if not c.endswith("vs float32") and c != "Δ accuracy"]
    lines = ["| " + " | ".join(_HEADERS.get(c, c) for c in columns) + " |",
             "|" + "|".join("---" if c in ("stage", "file") else "---:" for c in columns) + "|"]
    lines += ["| " + " | ".join(b.get(c, "") for c in columns) + " |" for b in body]
    return lines


def name(path):
    return os.path.basename(str(path)) if path else "?"


def config_text(result):
    threads = f"{result.threads} thread{'' if result.threads == 1 else 's'}"
    return f"{threads}, {result.delegate}, on {result.device}"


def latency_lines(table, ref):
    """The latency table: every configuration of every measured file, p5 / p50 / p95 and against float32."""
    seen, lines = set(), []
    for row in table:
        for b in row.bench:
            key = (b.model, b.device, b.threads, b.delegate)
            if key in seen:
                continue
            seen.add(key)
            vs = "reference" if ref is not None and b.model == ref.file else ratio_text(latency_ratio(row, ref, b))
            lines.append(f"| {name(b.model)} | {b.device} | {b.threads} | {b.delegate} | {_ms(b.p5_ms)} | "
                         f"{_ms(b.p50_ms)} | {_ms(b.p95_ms)} | {_ms(b.avg_ms)} | {b.runs or ''} | "
                         f"{vs if ref is not None else ''} |")
    if not lines:
        return []
    return ["| file | device | threads | delegate | p5 ms | p50 ms | p95 ms | mean ms | runs | vs float32 |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"] + lines


def _ms(v):
    return "" if v is None else f"{v:.4g}"


def console_suffix(row, ref):
    """What the console summary adds to a row: `vs float32: 1.99× smaller, 1.38× faster, -0.22 points`."""
    if ref is None:
        return ""
    if row is ref:
        return "  | the float32 reference"
    r = ratios(row, ref)
    said = []
    if "file_bytes" in r:
        said.append(f"size {size_words(r['file_bytes'])}")
    if "coded_bytes" in r:
        said.append(f"coded {size_words(r['coded_bytes'])}")
    if "latency" in r:
        said.append(f"latency {ratio_text(r['latency'])}")
    if "accuracy" in r:
        said.append(f"accuracy {points(r['accuracy'])}")
    return f"  | vs float32: {', '.join(said)}" if said else ""
