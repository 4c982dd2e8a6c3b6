"""Recipe stages for Deep Compression: cluster (weight sharing with fine-tuning), quantize_clusters
(QAT that keeps clusters and zeros) and size (the Deep Compression size report of an exported file).

```yaml
steps:
  - cluster: {clusters: {fc1: 16, fc2: 16}, preserve_sparsity: true, epochs: 8, learning_rate: 0.0002}
  - strip
  - quantize_clusters: {epochs: 4, learning_rate: 0.0001}
  - export: {mode: int8}
  - size: {label: int8}                    # the last exported int8 file
  - size: {label: float, export: float32}  # or export the current model first, then measure it
```
"""
import dataclasses
import json
import os
import typing

from tfcompress.errors import InputError
from tfcompress.recipe.registry import register_stage
from tfcompress.recipe.state import TrainConfig, accuracy, fit, record

_INITS = ("kmeans++", "linear", "density", "random")   # tfcompress.clustering.INITS, without loading TensorFlow
_MODES = ("int8", "int16x8", "float16", "dynamic", "float32")      # tfcompress.exporting.MODES


@dataclasses.dataclass
class ClusterConfig(TrainConfig):
    clusters: typing.Union[int, dict] = 16       # or {layer name: k}
    init: str = "kmeans++"
    preserve_sparsity: bool = True
    per_channel: bool = False
    layers: typing.Optional[list] = None
    epochs: int = 5
    learning_rate: float = 2e-4

    def __post_init__(self):
        super().__post_init__()
        ks = self.clusters.values() if isinstance(self.clusters, dict) else [self.clusters]
        low = 3 if self.preserve_sparsity else 2
        for k in ks:
            if isinstance(k, bool) or not isinstance(k, int) or k < low:
                raise InputError(f"clusters must be an integer >= {low} (or {{layer: k}} of such). Got: {k!r}")
        if self.init not in _INITS:
            raise InputError(f"init must be one of {', '.join(_INITS)}. Got: {self.init!r}")


def _kernels(model):
    from tfcompress.clustering import kernel_of
    return {l.name: kernel_of(l).numpy() for l in model.layers if kernel_of(l) is not None}


@register_stage("cluster", ClusterConfig)
def cluster(state, config):
    """Clusters the model's weights (`tfc.cluster`) and fine-tunes; records accuracy and the most clusters."""
    from tfcompress.clustering import cluster as cluster_model, distinct_values
    from tfcompress.stripping import strip
    state.model = cluster_model(state.model, clusters=config.clusters, init=config.init,
                                   preserve_sparsity=config.preserve_sparsity, per_channel=config.per_channel,
                                   layers=config.layers)
    fit(state, config)
    plain = strip(state.model)
    counts = {name: distinct_values(k, axis=-1 if config.per_channel and k.ndim == 4 else None)
              for name, k in _kernels(plain).items()}
    state.clusters = counts
    record(state, "cluster", accuracy=accuracy(state, plain), max_clusters=max(counts.values()))


@dataclasses.dataclass
class QuantizeClustersConfig(TrainConfig):
    preserve_sparsity: bool = True
    epochs: int = 3
    learning_rate: float = 1e-4


@register_stage("quantize_clusters", QuantizeClustersConfig)
def quantize_clusters(state, config):
    """QAT that keeps the clusters (and zeros), then fine-tunes; records its accuracy."""
    from tfcompress.clustering import quantize_preserving_clusters
    state.model = quantize_preserving_clusters(state.model, preserve_sparsity=config.preserve_sparsity)
    fit(state, config)
    record(state, "quantize_clusters", accuracy=accuracy(state))


@dataclasses.dataclass
class SizeConfig:
    mode: str = "int8"                  # which exported file: state.files[mode]
    label: typing.Optional[str] = None  # the row's name; defaults to the mode
    export: typing.Optional[str] = None  # export the current model in this mode first (e.g. float32)
    samples: int = 256

    def __post_init__(self):
        if self.export is not None:
            if self.export not in _MODES:
                raise InputError(f"export must be one of {', '.join(_MODES)}. Got: {self.export!r}")
            self.mode = self.export


@register_stage("size", SizeConfig)
def size(state, config):
    """Size report (file, gzip, Deep-Compression coding) of an exported file; `state.sizes` collects them."""
    from tfcompress.fileio import write_text
    from tfcompress.tflite.size import format_table, size_report
    label = config.label or config.mode
    name = state.recipe.name
    file_accuracy = None
    if config.export:
        from tfcompress.exporting import export as export_model
        path = os.path.join(state.out, f"{name}_{label}_{config.export}.tflite")
        x, _ = state.train
        report = export_model(state.model, path, mode=config.export, representative_data=x[:config.samples],
                              eval_data=state.test, samples=config.samples)
        state.files[config.export] = path
        file_accuracy = report.tflite_accuracy
    elif config.mode not in state.files:
        raise InputError(f"size: no {config.mode} file exported before this step; add an export step with "
                         f"mode: {config.mode} before it, or give export: {config.mode}")
    else:
        path = state.files[config.mode]
        file_accuracy = next((r.tflite_accuracy for r in reversed(state.reports) if r.path == path), None)
    report = size_report(path)
    state.echo("\n".join("  " + line for line in format_table(report).splitlines()))
    d = report.to_dict()
    d.update(label=label, accuracy=file_accuracy)
    state.sizes.append(d)
    write_text(os.path.join(state.out, f"{name}_size_{label}.json"), json.dumps(d, indent=2))
    record(state, f"size {label}", accuracy=file_accuracy, file_bytes=report.file_bytes,
           gzip_bytes=report.gzip_bytes, coded_bytes=report.coded_bytes, ratio=round(report.ratio or 0.0, 2))
