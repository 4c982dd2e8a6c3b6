"""Results for people and machines: the terminal table, JSON, CSV, a latency plot, a progress bar."""
import csv
import io
import json
import sys
import threading

from android_bench.results import FIELDS


def _f(value, digits=2):
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if abs(value) >= 1 or value == 0 else f"{value:.{digits}g}"


def config_key(r):
    return (r.device, r.threads, r.delegate)


def compare_ratios(results):
    """{id(result): avg_ms / avg_ms of the first model} under the same device, threads and delegate."""
    first_model = results[0].model if results else None
    base = {config_key(r): r.avg_ms for r in results if r.model == first_model and r.ok and r.avg_ms}
    out = {}
    for r in results:
        b = base.get(config_key(r))
        if r.ok and r.avg_ms and b:
            out[id(r)] = r.avg_ms / b
    return out


def format_table(results, compare=False):
    """A fixed-width table: one row per (model, device, threads, delegate)."""
    ratios = compare_ratios(results) if compare else {}
    header = ["model", "device", "thr", "delegate", "avg ms", "±95%", "std", "p50", "p95", "init ms", "first ms",
              "peak MB", "delegated"]
    if compare:
        header.append("vs first")
    header.append("status")
    rows = []
    for r in results:
        delegated = "-" if r.delegated_nodes is None else (
            f"{r.delegated_nodes}/{r.total_nodes}" if r.total_nodes is not None else str(r.delegated_nodes))
        row = [str(r.model), str(r.device), str(r.threads), str(r.delegate), _f(r.avg_ms, 3), _f(r.ci95_ms, 3), _f(r.std_ms, 3),
               _f(r.p50_ms, 3), _f(r.p95_ms, 3), _f(r.init_ms), _f(r.first_ms), _f(r.mem_peak_mb, 1), delegated]
        if compare:
            row.append(f"x{ratios[id(r)]:.3g}" if id(r) in ratios else "-")
        row.append("ok" if r.ok else f"FAILED: {r.error}")
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # the status column is last and free
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def to_json(results):
    return json.dumps([r.to_dict() for r in results], indent=2) + "\n"


def to_csv(results):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(FIELDS), lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: ("" if v is None else v) for k, v in r.to_dict().items()})
    return buf.getvalue()


def plot(results, path):
    """Bar chart of avg latency per model, one bar per configuration, std as error bars (PNG, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r.model for r in results))
    configs = list(dict.fromkeys(config_key(r) for r in results))
    width = 0.8 / max(1, len(configs))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(models) * max(1, len(configs)) ** 0.5), 4.5))
    for j, cfg in enumerate(configs):
        xs, ys, es = [], [], []
        for i, model in enumerate(models):
            r = next((r for r in results if r.model == model and config_key(r) == cfg), None)
            if r is not None and r.ok and r.avg_ms is not None:
                xs.append(i + (j - (len(configs) - 1) / 2) * width)
                ys.append(r.avg_ms)
                es.append(r.std_ms or 0.0)
        ax.bar(xs, ys, width, yerr=es, capsize=3, label=f"{cfg[0]} {cfg[1]} thr {cfg[2]}")
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels([str(m).rsplit("/", 1)[-1] for m in models], rotation=15, ha="right")
    ax.set_ylabel("latency per inference (ms, mean ± std)")
    ax.set_title("tfcompress bench")
    ax.legend(fontsize=8)
    fig.tight_layout()
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
