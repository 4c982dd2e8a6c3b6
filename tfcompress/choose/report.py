"""`SensitivityReport`: the curves of a sensitivity scan, as a table, a PNG and JSON.

One *unit* per scanned layer (weight granularity) or channel group (channel granularity, keyed by the
name of the group's first producer layer, which is also the key `tfc.prune_channels(model, {key: ratio})`
takes). Each unit holds the ratios it was pruned at (the fraction of its weights or channels actually
removed, after rounding) and the metric measured there, everything else in the model untouched. The
report also holds what `tfc.allocate` needs to count params and MACs exactly (`tfcompress.choose.costs`),
so a report loaded from JSON allocates without the model.

Example:

>>> r = SensitivityReport("weight", baseline=0.9, sparsities=[0.5, 0.9], units={
...     "fc1": {"size": 100, "per_weight": 1.0, "ratios": [0.5, 0.9], "scores": [0.9, 0.6]}})
>>> print(r.table())
unit    size   0.50   0.90
fc1      100  0.900  0.600
baseline 0.9000 (accuracy); ratios are the fractions of weights removed
>>> SensitivityReport.from_json(r.to_json()).units["fc1"]["scores"]
[0.9, 0.6]
"""
import json
import os

from tfcompress.errors import InputError

FORMAT = "tfcompress.sensitivity/1"
GRANULARITIES = ("weight", "channel")


class SensitivityReport:
    """Per-unit sensitivity curves and the facts needed to allocate ratios from them.

    Args:
      granularity: `"weight"` or `"channel"`.
      baseline: the metric of the unpruned model.
      sparsities: the levels asked for.
      units: `{key: {"size", "ratios", "scores", ...}}` in scan order.
      metric: the metric's name. Defaults to `"accuracy"`.
      cost: the channel params/MACs polynomial (`costs.channel_polynomial`). Defaults to `None`.
      settings: the other scan settings (criterion, round_to, finetune_steps, model name). Defaults to `None`.
    """

    def __init__(self, granularity, baseline, sparsities, units, metric="accuracy", cost=None, settings=None):
        if granularity not in GRANULARITIES:
            raise InputError(f"granularity must be 'weight' or 'channel'. Got: {granularity!r}")
        self.granularity = granularity
        self.baseline = float(baseline)
        self.sparsities = [float(s) for s in sparsities]
        self.units = dict(units)
        self.metric = metric
        self.cost = cost
        self.settings = dict(settings or {})

    # ------------------------------------------------------------ reading

    def done(self, key):
        u = self.units.get(key)
        return u is not None and len(u.get("scores", ())) == len(self.sparsities)

    @property
    def complete(self):
        return all(self.done(k) for k in self.units)

    def curve(self, key):
        """(ratios, metric drops from the baseline) of a unit, starting at (0, 0)."""
        u = self.units[key]
        return [0.0] + list(u["ratios"]), [0.0] + [self.baseline - s for s in u["scores"]]

    def table(self):
        """The curves as text: a row per unit, a column per level."""
        what = "weights" if self.granularity == "weight" else "channels"
        width = max([4] + [len(k) for k in self.units])
        lines = [f"{'unit':<{width}}{'size':>8}" + "".join(f"{s:>7.2f}" for s in self.sparsities)]
        for key, u in self.units.items():
            cells = "".join(f"{v:>7.3f}" for v in u.get("scores", ()))
            lines.append(f"{key:<{width}}{u['size']:>8}" + cells)
        lines.append(f"baseline {self.baseline:.4f} ({self.metric}); ratios are the fractions of {what} removed")
        return "\n".join(lines)

    def plot(self, path, threshold=0.01, title=None):
        """Writes a PNG: the metric against the ratio removed, one curve per unit, the baseline minus
        `threshold` drawn as a dashed line (None: no line). Returns the path."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from tfcompress.fileio import atomic_path
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key in self.units:
            if not self.units[key].get("scores"):
                continue
            ratios, drops = self.curve(key)
            ax.plot(ratios[:len(drops)], [self.baseline - d for d in drops], marker="o", ms=3, label=key)
        if threshold is not None:
            ax.axhline(self.baseline - threshold, color="k", ls="--", lw=1,
                       label=f"baseline - {threshold:g}")
        what = "weights" if self.granularity == "weight" else "channels"
        ax.set_xlabel(f"fraction of the unit's {what} removed (the rest of the model untouched)")
        ax.set_ylabel(self.metric)
        ax.set_title(title or f"sensitivity ({self.granularity} granularity)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if len(self.units) > 8 else 1)
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
        return path

    # ------------------------------------------------------------ JSON

    def to_dict(self):
        return {"format": FORMAT, "granularity": self.granularity, "metric": self.metric,
                "baseline": self.baseline, "sparsities": self.sparsities, "settings": self.settings,
                "units": self.units, "cost": self.cost}

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InputError(f"not a sensitivity report (expected format {FORMAT!r}). Got: "
                             f"{d.get('format') if isinstance(d, dict) else type(d).__name__!r}")
        return cls(d["granularity"], d["baseline"], d["sparsities"], d["units"], d.get("metric", "accuracy"),
                   d.get("cost"), d.get("settings"))

    @classmethod
    def from_json(cls, text):
        try:
            d = json.loads(text)
        except ValueError as e:
            raise InputError(f"a sensitivity report must be JSON: {e}") from None
        return cls.from_dict(d)

    @classmethod
    def load(cls, path):
        """Reads a report written by `save` (or by a scan given `path=`)."""
        if not os.path.isfile(path):
            raise InputError(f"no sensitivity report at {path}")
        with open(path) as f:
            return cls.from_json(f.read())

    def save(self, path, inputs=()):
        from tfcompress.fileio import write_text
        return write_text(path, self.to_json(), inputs)


def load_report(path):
    """The `SensitivityReport` saved at `path`."""
    return SensitivityReport.load(path)
