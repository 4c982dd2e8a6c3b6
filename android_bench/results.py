"""`BenchResult`: one model, on one device, with one thread count and one delegate."""
import dataclasses
import math

# Fields in the order the JSON, the CSV and the table use.
FIELDS = ("model", "device", "runner", "threads", "delegate", "ok", "error", "runs",
          "init_ms", "first_ms", "warmup_avg_ms", "avg_ms", "ci95_ms", "std_ms", "min_ms", "max_ms", "p5_ms",
          "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mem_init_mb", "mem_overall_mb", "mem_peak_mb",
          "delegated_nodes", "total_nodes")


@dataclasses.dataclass
class BenchResult:
    """Latency and memory of one benchmark configuration; `None` wherever the tool did not say.

    Times are milliseconds, memory is MB. `ci95_ms` is the half-width of the 95 % confidence interval of
    `avg_ms` (batch means; printed by the edge runner and LocalRunner, not by benchmark_model). `ok` is False when the run failed; `error` then says why
    in one line. `op_profile` (per-op rows when op profiling was on) is kept out of the JSON.
    """
    model: str = None
    device: str = None
    runner: str = None
    threads: int = None
    delegate: str = None
    ok: bool = True
    error: str = None
    runs: int = None
    init_ms: float = None
    first_ms: float = None
    warmup_avg_ms: float = None
    avg_ms: float = None
    ci95_ms: float = None
    std_ms: float = None
    min_ms: float = None
    max_ms: float = None
    p5_ms: float = None
    p50_ms: float = None
    p90_ms: float = None
    p95_ms: float = None
    p99_ms: float = None
    mem_init_mb: float = None
    mem_overall_mb: float = None
    mem_peak_mb: float = None
    delegated_nodes: int = None
    total_nodes: int = None
    op_profile: list = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self):
        out = {}
        for name in FIELDS:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data):
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown BenchResult fields: {sorted(unknown)}")
        return cls(**{k: data[k] for k in FIELDS if k in data})

    def failed(self, error):
        """This result marked failed with a one-line `error`; the numbers measured so far stay."""
        self.ok = False
        self.error = " ".join(str(error).split()) or "failed"
        return self
