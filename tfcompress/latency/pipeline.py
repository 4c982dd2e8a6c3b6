"""The whole path to a latency target: NetAdapt on the device's table, QAT, the int8 file, the benchmark.

`optimize` runs `tfc.netadapt`, then quantization-aware training (`tfc.quantize`), exports full int8 with
every ReLU6 pinned (`tfc.export`) and measures the file against the unpruned model's int8 file in
interleaved rounds on every device. `OptimizeReport` holds every kept candidate (accuracy and measured
latency), formats a table and plots accuracy against measured latency (PNG).
"""
import dataclasses
import json
import os
import tempfile

import numpy as np

from tfcompress.errors import InputError


@dataclasses.dataclass
class OptimizeReport:
    """What `optimize` measured. Latencies in ms per device; accuracies on the test split unless named."""
    path: str
    devices: list
    base_ms: dict
    final_ms: dict
    speedup: dict
    base_accuracy: float
    base_int8_accuracy: float
    int8_accuracy: float
    history: dict
    export: dict = None

    def to_dict(self):
        return dataclasses.asdict(self)

    def kept(self):
        """[(label, validation accuracy, {device: measured ms})]: the start and every kept candidate."""
        h = self.history
        rows = [("start", h["base"]["accuracy"], h["base"]["measured_ms"])]
        rows += [(f"{r['iteration']}: {r['group']} {r['kept']}/{r['size']}", r["accuracy"], r["measured_ms"])
                 for r in h["iterations"]]
        return rows

    def format(self):
        lines = [f"{'candidate':<28}{'val acc':>9}" + "".join(f"{d + ' ms':>16}" for d in self.devices)]
        for label, acc, ms in self.kept():
            lines.append(f"{label:<28}{acc:>9.4f}" + "".join(f"{ms[d]:>16.4f}" for d in self.devices))
        lines.append("")
        lines.append(f"test accuracy: float {self.base_accuracy:.4f}, unpruned int8 {self.base_int8_accuracy:.4f}, "
                     f"optimized int8 {self.int8_accuracy:.4f} "
                     f"({100 * (self.int8_accuracy - self.base_int8_accuracy):+.2f} points)")
        for d in self.devices:
            lines.append(f"{d}: unpruned int8 {self.base_ms[d]:.4f} ms, {os.path.basename(self.path)} "
                         f"{self.final_ms[d]:.4f} ms: {self.speedup[d]:.2f}x faster (medians of interleaved rounds)")
        return "\n".join(lines)

    def plot(self, path):
        """Validation accuracy against measured latency of every kept candidate, one curve per device (PNG)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from tfcompress.fileio import atomic_path
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        rows = self.kept()
        for d in self.devices:
            ax.plot([ms[d] for _, _, ms in rows], [100 * a for _, a, _ in rows], "o-", label=f"{d} (NetAdapt)")
            ax.plot([self.final_ms[d] * rows[0][2][d] / self.base_ms[d]], [100 * self.int8_accuracy], "*",
                    markersize=12, label=f"{d}: final int8 (test accuracy)")
        ax.set_xlabel("measured latency (ms, int8 file)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("kept candidates: accuracy against measured latency")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        return path


def optimize(model, data, out, target_ms=None, speedup=None, device="local", qat_epochs=3, qat_lr=1e-4,
             batch_size=64, binary=None, config=None, cache=None, rounds=5, history=None, verbose=1, **netadapt_kw):
    """NetAdapt to the target on the device, QAT, full-int8 export (ReLU6 pinned) to `out`, benchmark.

    Args:
      model: a trained tf-keras (or Keras 3) classifier.
      data: `((x_train, y_train), (x_test, y_test))` or a data spec (`"digits"`).
      out: the `.tflite` file to write.
      target_ms, speedup, device, binary, config, cache, rounds, history: as for `tfc.netadapt`.
      qat_epochs: epochs of quantization-aware training after NetAdapt. Defaults to `3`.
      qat_lr: its learning rate. Defaults to `1e-4`.
      batch_size: Defaults to `64`.
      verbose: Defaults to `1`.
      **netadapt_kw: any other `tfc.netadapt` argument (`step`, `decay`, `finetune_steps`, ...).

    Returns:
      `(model, OptimizeReport)`: the QAT model and the report.
    """
    from tfcompress import latency
    from tfcompress._tf import keras
    from tfcompress.exporting import export
    from tfcompress.graph.keras3 import tf_keras_model
    from tfcompress.choose.netadapt import _compile, netadapt
    from tfcompress.pruning.lottery import split_data
    from tfcompress.quantization import quantize
    from tfcompress.fileio import check_output
    from tfcompress.evaluation import keras_accuracy
    if not str(out).endswith(".tflite"):
        raise InputError(f"the output is a .tflite file; name it .tflite. Got: {out}")
    check_output(out)
    model = tf_keras_model(model)
    (x, y), (xt, yt) = split_data(data, model)
    small, hist = netadapt(model, ((x, y), (xt, yt)), target_ms=target_ms, speedup=speedup, device=device,
                           binary=binary, config=config, cache=cache, rounds=rounds, history=history,
                           batch_size=batch_size, verbose=verbose, **netadapt_kw)
    qat = quantize(small)
    keras.utils.set_random_seed(0)
    _compile(qat, qat_lr)
    qat.fit(x, y, epochs=qat_epochs, batch_size=batch_size, verbose=1 if verbose > 1 else 0)
    rep = export(qat, out, eval_data=(xt, yt), layer_samples=0)
    devices = hist.settings["devices"]
    runners = latency.make_runners(devices, binary=binary)
    with tempfile.TemporaryDirectory() as folder:
        base = os.path.join(folder, "unpruned_int8.tflite")
        base_rep = export(model, base, representative_data=x[:256], eval_data=(xt, yt), layer_samples=0)
        cfg = config or latency.bench_config()
        ms = latency.measure(runners, [p for _ in range(rounds) for p in (base, out)], cfg)
    med = {d: np.median(np.array(v).reshape(rounds, 2), axis=0) for d, v in ms.items()}
    report = OptimizeReport(path=out, devices=devices, base_ms={d: float(m[0]) for d, m in med.items()},
                            final_ms={d: float(m[1]) for d, m in med.items()},
                            speedup={d: float(m[0] / m[1]) for d, m in med.items()},
                            base_accuracy=float(keras_accuracy(model, xt, yt)),
                            base_int8_accuracy=float(base_rep.tflite_accuracy), int8_accuracy=float(rep.tflite_accuracy),
                            history=json.loads(json.dumps(hist.to_dict(), default=float)), export=rep.to_dict())
    return qat, report
