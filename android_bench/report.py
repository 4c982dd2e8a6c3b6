"""Results for people and machines: the terminal table (with `--compare`'s ratios in words), JSON, CSV, a latency
plot (medians with p5–p95 whiskers, a panel per device), a progress bar."""
import csv
import io
import json
import sys
import threading

from android_bench.results import FIELDS, BenchResult


def _f(value, digits=2):
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if abs(value) >= 1 or value == 0 else f"{value:.{digits}g}"


def config_key(r):
    return (r.device, r.threads, r.delegate)


def latency_ms(r, other=None):
    """The latency a comparison reads: the median (`p50_ms`) when `r` (and `other`, if given) has one, else
    the mean. Latency distributions are skewed (one slow run moves the mean), so the median is preferred."""
    if r.p50_ms is not None and (other is None or other.p50_ms is not None):
        return r.p50_ms
    return r.avg_ms


def ratio_text(ratio, more="slower", less="faster"):
    """A ratio in words that say which way: `1.58× slower` for 1.58, `2.1× faster` for 1 / 2.1 (`more` and
    `less` name the two directions, e.g. `larger` / `smaller`); `same` when equal to 3 digits.

    >>> ratio_text(1.58), ratio_text(1 / 2.1), ratio_text(0.5, "larger", "smaller"), ratio_text(1.0004)
    ('1.58× slower', '2.1× faster', '2× smaller', 'same')
    """
    if ratio is None or ratio != ratio or ratio <= 0:
        return "-"
    times = ratio if ratio >= 1 else 1.0 / ratio
    text = f"{times:.3g}"
    if text == "1":
        return "same"
    return f"{text}× {more if ratio > 1 else less}"


def _first(results):
    first_model = results[0].model if results else None
    return first_model, {config_key(r): r for r in results if r.model == first_model and r.ok and r.avg_ms}


def compare_ratios(results):
    """{id(result): latency / the first model's latency} under the same device, threads and delegate; the
    latency is the median of both when both have one, else the mean (`latency_ms`)."""
    _, base = _first(results)
    out = {}
    for r in results:
        b = base.get(config_key(r))
        if r.ok and b is not None and latency_ms(r, b) and latency_ms(b, r):
            out[id(r)] = latency_ms(r, b) / latency_ms(b, r)
    return out


def comparisons(results):
    """{id(result): {"model", "ratio", "text", "of"}}: each result against the first model (`compare_ratios`),
    the plain ratio, the words (`reference` for the first model itself) and the statistic compared."""
    first_model, base = _first(results)
    ratios = compare_ratios(results)
    out = {}
    for r in results:
        if id(r) in ratios:
            b = base[config_key(r)]
            out[id(r)] = {"model": first_model, "ratio": ratios[id(r)],
                          "text": "reference" if r.model == first_model else ratio_text(ratios[id(r)]),
                          "of": "p50_ms" if r.p50_ms is not None and b.p50_ms is not None else "avg_ms"}
    return out


def _name(model):
    return str(model).rsplit("/", 1)[-1]


def format_table(results, compare=False):
    """A fixed-width table: one row per (model, device, threads, delegate). With `compare`, a column says how
    much slower or faster each model is than the first one, and a last line says what was compared."""
    vs = comparisons(results) if compare else {}
    first_model = results[0].model if results else None
    header = ["model", "device", "thr", "delegate", "avg ms", "±95%", "std", "p5", "p50", "p95", "init ms",
              "first ms", "peak MB", "delegated"]
    if compare:
        header.append(f"vs {_name(first_model)}")
    header.append("status")
    rows = []
    for r in results:
        delegated = "-" if r.delegated_nodes is None else (
            f"{r.delegated_nodes}/{r.total_nodes}" if r.total_nodes is not None else str(r.delegated_nodes))
        row = [str(r.model), str(r.device), str(r.threads), str(r.delegate), _f(r.avg_ms, 3), _f(r.ci95_ms, 3),
               _f(r.std_ms, 3), _f(r.p5_ms, 3), _f(r.p50_ms, 3), _f(r.p95_ms, 3), _f(r.init_ms), _f(r.first_ms),
               _f(r.mem_peak_mb, 1), delegated]
        if compare:
            row.append(vs[id(r)]["text"] if id(r) in vs else "-")
        row.append("ok" if r.ok else f"FAILED: {r.error}")
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # the status column is last and free
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    if compare and results:
        stats = {v["of"] for v in vs.values()}
        what = "median (p50)" if stats == {"p50_ms"} else "median (p50) where both have one, else mean"
        lines.append(f"vs {_name(first_model)}: {what} latency against {_name(first_model)}'s on the same device, "
                     "threads and delegate")
    return "\n".join(lines)


def to_json(results, compare=False):
    """The results as a JSON list of `BenchResult` dicts. With `compare`, each result that has a reference
    also carries `vs_first`: `{"model": the first model, "ratio": latency / its latency, "text": "1.58×
    slower", "of": "p50_ms" or "avg_ms"}` (`from_json` reads both forms back)."""
    vs = comparisons(results) if compare else {}
    return json.dumps([dict(r.to_dict(), **({"vs_first": vs[id(r)]} if id(r) in vs else {})) for r in results],
                      indent=2, ensure_ascii=False) + "\n"


def from_json(text):
    """`BenchResult`s from `to_json`'s text (a `vs_first` comparison is dropped: it is derived, not measured)."""
    return [BenchResult.from_dict({k: v for k, v in d.items() if k != "vs_first"}) for d in json.loads(text)]


def to_csv(results):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(FIELDS), lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: ("" if v is None else v) for k, v in r.to_dict().items()})
    return buf.getvalue()


def plot_data(results):
    """What `plot` draws, from the results alone: one panel per device, in each a group of bars per model and
    a bar per (threads, delegate). A bar is the median (`p50_ms`) and its whisker runs from `p5_ms` to
    `p95_ms`, so it never goes below zero; a result without percentiles gets its mean and no whisker.

    Returns:
      `[{"device", "models": [names], "series": [{"threads", "delegate", "label", "bars": [{"model", "x",
      "value", "stat", "low", "high", "ok"}]}]}]`.
    """
    panels = []
    for device in dict.fromkeys(r.device for r in results):
        mine = [r for r in results if r.device == device]
        models = list(dict.fromkeys(r.model for r in mine))
        configs = list(dict.fromkeys((r.threads, r.delegate) for r in mine))
        width = 0.8 / max(1, len(configs))
        series = []
        for j, (threads, delegate) in enumerate(configs):
            bars = []
            for i, model in enumerate(models):
                r = next((r for r in mine if r.model == model and (r.threads, r.delegate) == (threads, delegate)),
                         None)
                if r is None:
                    continue
                ok = r.ok and latency_ms(r) is not None
                whisker = ok and r.p50_ms is not None and r.p5_ms is not None and r.p95_ms is not None
                bars.append({"model": _name(model), "x": i + (j - (len(configs) - 1) / 2) * width,
                             "value": latency_ms(r) if ok else None, "stat": "p50_ms" if r.p50_ms is not None
                             else "avg_ms", "low": r.p5_ms if whisker else None,
                             "high": r.p95_ms if whisker else None, "ok": ok})
            series.append({"threads": threads, "delegate": delegate, "bars": bars, "width": width,
                           "label": f"{threads} thread{'s' if threads != 1 else ''}, {delegate}"})
        panels.append({"device": device, "models": [_name(m) for m in models], "series": series})
    return panels


def figure(results):
    """The matplotlib figure of `plot_data(results)` (Agg backend); `plot` saves it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    panels = plot_data(results)
    n = max(1, len(panels))
    cols, rows = min(n, 2), -(-n // 2)
    widest = max((len(p["models"]) * max(1, len(p["series"])) for p in panels), default=1)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.5, 0.45 * widest + 2.5) * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        for k, s in enumerate(panel["series"]):
            drawn = [b for b in s["bars"] if b["ok"]]
            xs, ys = [b["x"] for b in drawn], [b["value"] for b in drawn]
            ax.bar(xs, ys, s["width"], color=f"C{k}")
            whiskers = [b for b in drawn if b["low"] is not None]
            if whiskers:  # asymmetric: down to p5, up to p95 (both percentiles, so never below zero)
                below = [b["value"] - b["low"] for b in whiskers]
                above = [b["high"] - b["value"] for b in whiskers]
                ax.errorbar([b["x"] for b in whiskers], [b["value"] for b in whiskers], yerr=[below, above],
                            fmt="none", ecolor="black", elinewidth=1, capsize=3)
            for b in s["bars"]:
                top = b["high"] if b["high"] is not None else b["value"]
                mean = "" if b["stat"] == "p50_ms" else " (mean)"
                text = f"{b['value']:.3g}{mean}" if b["ok"] else "failed"
                ax.annotate(text, (b["x"], top or 0.0), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7, color="firebrick" if not b["ok"] else "black",
                            rotation=90 if len(panel["series"]) > 3 else 0)   # side by side, they would overlap
        ax.set_xticks(range(len(panel["models"])))
        ax.set_xticklabels(panel["models"], rotation=15 if len(panel["models"]) > 2 else 0, ha="right"
                           if len(panel["models"]) > 2 else "center", fontsize=8)
        tops = [b["high"] if b["high"] is not None else b["value"] for s in panel["series"] for b in s["bars"]
                if b["ok"]]
        ax.set_ylim(0, max(tops, default=1.0) * (1.3 if len(panel["series"]) > 3 else 1.15) or 1.0)
        ax.set_title(str(panel["device"]), fontsize=10)
        handles = [Patch(color=f"C{k}", label=s["label"]) for k, s in enumerate(panel["series"])]
        ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False,
                  ncol=min(4, len(handles)))
    for ax in axes[:, 0]:
        ax.set_ylabel("ms per inference: median, whiskers p5–p95")
    fig.suptitle("tfcompress bench", fontsize=11)
    fig.tight_layout()
    return fig


def plot(results, path):
    """Saves `figure(results)` as a PNG at `path` (Agg): median latency bars with p5–p95 whiskers, one panel
    per device, one bar per (threads, delegate)."""
    fig = figure(results)
    import matplotlib.pyplot as plt
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


class Progress:
    """Progress on stderr: a redrawn bar on a terminal, one plain line per finished run otherwise."""

    def __init__(self, total, stream=None, tty=None):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.lock = threading.Lock()  # devices report from their own threads

    def __call__(self, r):
        with self.lock:
            self._report(r)

    def _report(self, r):
        self.done += 1
        what = f"{str(r.model).rsplit('/', 1)[-1]} {r.device} thr={r.threads} {r.delegate}"
        status = f"{r.avg_ms:.3f} ms" if r.ok and r.avg_ms is not None else "failed"
        if self.tty:
            filled = int(30 * self.done / max(1, self.total))
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {what}: {status}"
                              "\x1b[K")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"[{self.done}/{self.total}] {what}: {status}\n")
        self.stream.flush()
