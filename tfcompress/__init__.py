"""tfcompress: make tf-keras models smaller and faster inside `fit`, export TFLite, measure on device.

Modules never share a public function's name (`tfcompress.stripping` holds `strip`,
`tfcompress.exporting` holds `export`): importing a submodule sets it as an attribute of the package,
which would shadow the function. Public names are loaded on first use, so `import tfcompress` (and the `tfcompress bench` command) does
not pay for TensorFlow until a name that needs it is touched.
"""
import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "Error": "tfcompress.errors",
    "InputError": "tfcompress.errors",
    "ConversionError": "tfcompress.errors",
    "UnsupportedModelError": "tfcompress.errors",
    "ConstantSparsity": "tfcompress.schedules",
    "PolynomialDecay": "tfcompress.schedules",
    "IterativeSteps": "tfcompress.schedules",
    "prune": "tfcompress.pruning.magnitude",
    "CompressionCallback": "tfcompress.callbacks",
    "strip": "tfcompress.stripping",
    "load_model": "tfcompress.saving",
    "export": "tfcompress.exporting",
    "ExportReport": "tfcompress.exporting",
    "inspect": "tfcompress.tflite.reader",
    "size_report": "tfcompress.tflite.size",
    "cluster": "tfcompress.clustering",
    "quantize": "tfcompress.quantization",
    "register_quantize_config": "tfcompress.quantization",
    "Distiller": "tfcompress.distillation",
    "prune_channels": "tfcompress.pruning.channels",
    "channel_groups": "tfcompress.pruning.channels",
    "recalibrate_batchnorm": "tfcompress.pruning.batchnorm",
    "from_keras3": "tfcompress.graph.keras3",
    "to_keras3": "tfcompress.graph.keras3",
    "add_exits": "tfcompress.exits.heads",
    "calibrate_exits": "tfcompress.exits.calibration",
    "export_exits": "tfcompress.exits.export",
    "ExitPolicy": "tfcompress.exits.policy",
    "lottery_ticket": "tfcompress.pruning.lottery",
    "adjust_dropout": "tfcompress.pruning.dropout",
    "low_rank": "tfcompress.architecture.factorize",
    "separable": "tfcompress.architecture.separate",
    "equalize": "tfcompress.quantization.equalize",
    "LatencyTable": "tfcompress.latency",
    "netadapt": "tfcompress.choose.netadapt",
    "NetAdaptHistory": "tfcompress.choose.netadapt",
    "sensitivity_scan": "tfcompress.choose.scan",
    "SensitivityReport": "tfcompress.choose.report",
    "allocate": "tfcompress.choose.budget",
}
# submodules reachable as `tfc.<name>`; "regularizers" is `tfcompress.pruning.regularizers`
_SUBMODULES = ("models", "data", "analysis", "regularizers", "pruning", "quantization", "clustering",
               "distillation", "graph")

__all__ = sorted(_PUBLIC) + list(_SUBMODULES)


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name == "regularizers":
        value = importlib.import_module("tfcompress.pruning.regularizers")
    elif name in _SUBMODULES:
        value = importlib.import_module(f"tfcompress.{name}")
    else:
        raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
