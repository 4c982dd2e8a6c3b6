"""The pictures of a run report (matplotlib, Agg): size per stage, accuracy against size and against latency,
and the per-layer quantization noise (SQNR) of an int8 export. Each function draws from the report's `Row`s
or an export report dict of summary.json, and saves a PNG atomically."""
from android_bench.report import latency_ms, ratio_text
from tfcompress.report import worst_layers
from tfcompress.run_report.table import config_text, latency_ratio, name, ratios, size_words

_KINDS = (("file_bytes", "file"), ("gzip_bytes", "gzip -9"), ("coded_bytes", "Deep Compression coded"))


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    from tfcompress.fileio import atomic_path
    plt = _plt()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def _kb(n):
    return n / 1024.0


def sized(table):
    """The rows that measured a file's size."""
    return [r for r in table if r.file_bytes is not None]


def size_chart(table, ref, path):
    """Horizontal bars: the bytes of every stage that measured a file (file, gzip and coded where measured),
    each labelled with its size against the float32 file."""
    plt = _plt()
    from matplotlib.patches import Patch
    rows = sized(table)
    kinds = [(k, label) for k, label in _KINDS if any(getattr(r, k) is not None for r in rows)]
    bars = sum(sum(getattr(r, k) is not None for k, _ in kinds) for r in rows)
    fig, ax = plt.subplots(figsize=(7.5, 1.3 + 0.34 * bars + 0.2 * len(rows)))
    for i, r in enumerate(rows):
        mine = [(j, k) for j, (k, _) in enumerate(kinds) if getattr(r, k) is not None]
        height = 0.8 / len(mine)
        for n, (j, key) in enumerate(mine):
            y, v = i + (n - (len(mine) - 1) / 2) * height, getattr(r, key)
            ax.barh(y, _kb(v), height, color=f"C{j}")
            vs = "" if ref is None else " (float32)" if r is ref and key == "file_bytes" else \
                f" ({size_words(ratios(r, ref)[key])})"
            ax.annotate(f"{v:,} B{vs}", (_kb(v), y), xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r.stage for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(_kb(getattr(r, k)) for r in rows for k, _ in kinds if getattr(r, k) is not None) * 1.45)
    ax.set_xlabel("KB")
    ax.set_title("Size per stage" + ("" if ref is None else f" (against {name(ref.file)})"), fontsize=10)
    if len(kinds) > 1:
        ax.legend(handles=[Patch(color=f"C{j}", label=label) for j, (_, label) in enumerate(kinds)], fontsize=8,
                  loc="lower right")
    return _save(fig, path)


def _points(rows):
    """One point per file: [(label, the first row that measured it)], the stage names joined."""
    files = {}
    for r in rows:
        files.setdefault(r.file or r.stage, []).append(r)
    return [(" / ".join(x.stage for x in same), same[0]) for same in files.values()]


def accuracy_chart(table, ref, path):
    """Accuracy against file size, and against median latency (p5–p95 whiskers) where the run benchmarked."""
    plt = _plt()
    points = _points([r for r in sized(table) if r.accuracy is not None])
    timed = [(label, r) for label, r in points if r.latency is not None]
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(10.0 if timed else 5.5, 4.0), squeeze=False)
    ax = axes[0][0]
    for k, (label, r) in enumerate(points):
        ax.scatter(_kb(r.file_bytes), 100 * r.accuracy, color="C3" if r is ref else "C0", zorder=3)
        if ref is not None and r is not ref:
            label = f"{label} ({size_words(ratios(r, ref)['file_bytes'])})"
        ax.annotate(label, (_kb(r.file_bytes), 100 * r.accuracy), xytext=(4, 4 if k % 2 == 0 else -12),
                    textcoords="offset points", fontsize=8)
    ax.set_xlabel("file size (KB)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy against size", fontsize=10)
    if timed:
        ax = axes[0][1]
        for k, (label, r) in enumerate(timed):
            b = r.latency
            x = latency_ms(b)
            err = None
            if b.p5_ms is not None and b.p95_ms is not None and x == b.p50_ms:
                err = [[x - b.p5_ms], [b.p95_ms - x]]
            ax.errorbar([x], [100 * r.accuracy], xerr=err, fmt="o", color="C3" if r is ref else "C0", capsize=3)
            vs = latency_ratio(r, ref)
            label = label if vs is None or r is ref else f"{label} ({ratio_text(vs)})"
            ax.annotate(label, (x, 100 * r.accuracy), xytext=(4, 4 if k % 2 == 0 else -12),
                        textcoords="offset points", fontsize=8)
        ax.set_xlim(left=0)
        ax.set_xlabel(f"ms per inference: median, whiskers p5–p95\n{config_text(timed[0][1].latency)}")
        ax.set_title("accuracy against latency", fontsize=10)
    for ax in axes[0]:
        ax.margins(x=0.25, y=0.2)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def sqnr_chart(export, path):
    """Per-layer SQNR (dB, higher is better) of one export report, in model order; the layers adding the most
    noise in red, exact tensors (no noise at all) marked."""
    plt = _plt()
    layers = export.get("layers") or []
    worst = set(worst_layers(layers))
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.24 * len(layers)))
    ys = list(range(len(layers)))
    values = [x.get("sqnr_db") for x in layers]
    ax.barh([y for y, v in zip(ys, values) if v is not None], [v for v in values if v is not None],
            color=["C3" if x["layer"] in worst else "C0" for x, v in zip(layers, values) if v is not None])
    for y, x, v in zip(ys, layers, values):
        ax.annotate("exact" if v is None else f"{v:.1f}", (0 if v is None else v, y), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7)
    ax.set_yticks(ys)
    ax.set_yticklabels([x["layer"] for x in layers], fontsize=7)
    ax.invert_yaxis()
    finite = [v for v in values if v is not None]
    ax.set_xlim(0, (max(finite) if finite else 1.0) * 1.15)
    ax.set_xlabel("SQNR (dB): float Keras output against the int8 tensor; higher is better")
    title = f"Quantization noise per layer: {name(export.get('path'))}"
    ax.set_title(title + ("\nred: the layers adding the most noise" if worst else ""), fontsize=10)
    return _save(fig, path)
