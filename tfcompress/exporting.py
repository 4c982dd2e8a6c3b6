"""TFLite export in every mode, with ReLU6 pinning for full int8, and the ExportReport that proves it.

Modes: `int8` (full integer, the default; needs representative data), `int16x8` (int16 activations,
int8 weights), `float16` (float16 weights), `dynamic` (int8 weights, float activations) and `float32`.
"""
import contextlib
import dataclasses
import os
import re
import tempfile
import time
import warnings

import numpy as np

from tfcompress._tf import keras, tf
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.errors import ConversionError, InputError
from tfcompress.evaluation import evaluate_tflite
from tfcompress.fileio import check_output, write_bytes

MODES = ("int8", "int16x8", "float16", "dynamic", "float32")
_IO_TYPES = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32, "int16": tf.int16}
RELU6_SCALE = 6.0 / 255.0


@dataclasses.dataclass
class ExportReport:
    """What an exported file holds and how well it agrees with the Keras model."""
    path: str
    mode: str
    bytes: int
    op_counts: dict
    float_ops: list
    input_dtype: str
    output_dtype: str
    relu6: list = dataclasses.field(default_factory=list)   # [{tensor, scale, zero_point, pinned}]
    relu6_fixed_range: bool = True
    float_accuracy: float = None
    tflite_accuracy: float = None
    agreement: float = None
    max_abs_diff: float = None
    eval_samples: int = 0
    seconds: float = 0.0
    notes: list = dataclasses.field(default_factory=list)
    layers: list = dataclasses.field(default_factory=list)  # per-layer error, filled by the report module
    precision: list = dataclasses.field(default_factory=list)  # per op: {op, tensor, precision: int4|int8|float|...}

    def to_dict(self):
        return dataclasses.asdict(self)

    @property
    def relu6_all_pinned(self):
        return all(r["pinned"] for r in self.relu6)

    def format(self):
        lines = [f"{self.path}: {self.mode}, {self.bytes:,} bytes, input {self.input_dtype}, "
                 f"output {self.output_dtype}, exported in {self.seconds:.1f} s"]
        ops = ", ".join(f"{k}×{v}" for k, v in self.op_counts.items())
        lines.append(f"  ops: {ops}")
        lines.append(f"  ops computing in float: {', '.join(self.float_ops) if self.float_ops else 'none'}")
        if self.precision:
            from tfcompress.report import precision_line
            lines.append(f"  ops by precision: {precision_line(self.precision)}")
        if self.relu6:
            pinned = sum(r["pinned"] for r in self.relu6)
            lines.append(f"  ReLU6 outputs: {len(self.relu6)}, pinned to [0, 6] (scale 6/255, zero point -128): "
                         f"{pinned}/{len(self.relu6)}")
            for r in self.relu6:
                if not r["pinned"]:
                    lines.append(f"    not pinned: {r['tensor']} scale {r['scale']:.6g} zero point {r['zero_point']}")
        if self.agreement is not None and self.float_accuracy is not None:
            lines.append(f"  accuracy on {self.eval_samples} samples: float {self.float_accuracy:.4f}, "
                         f"{self.mode} {self.tflite_accuracy:.4f} "
                         f"({100 * (self.tflite_accuracy - self.float_accuracy):+.2f} points); "
                         f"top-1 agreement {self.agreement:.4f}")
        elif self.agreement is not None:
            lines.append(f"  top-1 agreement with the Keras model on {self.eval_samples} samples: "
                         f"{self.agreement:.4f}; max |float - tflite| {self.max_abs_diff:.6g}")
        elif self.max_abs_diff is not None:
            lines.append(f"  max |float - tflite| on {self.eval_samples} samples: {self.max_abs_diff:.6g}")
        if self.layers:
            worst = sorted((r for r in self.layers if r.get("worst")), key=lambda r: r["added_db"])
            if worst:
                lines.append("  layers adding the most quantization noise: " + ", ".join(
                    f"{r['layer']} (SQNR {r['sqnr_db']:.1f} dB)" if r.get("sqnr_db") is not None else r["layer"]
                    for r in worst))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


@contextlib.contextmanager
def _captured_output():
    """Collects what the converter's C++ code prints, so a failure can quote it and a success is quiet."""
    log = tempfile.TemporaryFile(mode="w+b")
    saved = []
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(log.fileno(), fd)
            except OSError:
                pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield log
    finally:
        for fd, old in saved:
            os.dup2(old, fd)
            os.close(old)


def _read_log(log):
    log.seek(0)
    return log.read().decode("utf-8", "replace")


def _representative(data, samples):
    if data is None:
        raise InputError("int8 and int16x8 export need representative_data: a few hundred typical inputs")
    xs = data if isinstance(data, (list, tuple)) else [data]
    xs = [np.asarray(x, dtype=np.float32) for x in xs]
    n = min(len(xs[0]), samples) if samples else len(xs[0])
    if n == 0:
        raise InputError("representative_data is empty")

    def gen():
        for i in range(n):
            yield [x[i:i + 1] for x in xs]
    return gen, n


def _layers_in(names, model):
    """Keras layer names found in TF / TFLite tensor or node names ('model/layer/Op;model/...')."""
    known = {l.name for l in model.layers}
    found = []
    for name in names:
        for part in re.split(r"[/;:@]", name):
            if part in known and part not in found:
                found.append(part)
    return found


def _tf_ops_of(model, op_types):
    """Names of the nodes of the given TF op types in the model's traced graph."""
    try:
        fn = tf.function(lambda *xs: model(*xs, training=False))
        spec = [tf.TensorSpec(i.shape, i.dtype) for i in model.inputs]
        graph = fn.get_concrete_function(*spec).graph
    except Exception:  # the graph is only used to name the layer; the error is raised regardless
        return []
    return [op.name for op in graph.get_operations() if op.type in op_types]


def _unconvertible(text, model):
    """(ops, layers) for ops the converter has no builtin for ('TF Select ops: Erf, ...')."""
    ops = []
    for line in re.findall(r"TF Select ops: ([^\n]+)", text):
        ops += [o.strip() for o in line.split(",") if o.strip()]
    ops += re.findall(r"'tf\.([A-Za-z0-9_]+)' op is neither a custom op nor a flex op", text)
    ops = list(dict.fromkeys(ops))
    return ops, _layers_in(_tf_ops_of(model, set(ops)), model) if ops else []


def _convert(converter, model, mode, pin, input_type, output_type):
    from tfcompress import relu6
    try:
        with _captured_output() as log:
            try:
                if pin:
                    calibrated = relu6.calibrate(converter)
                    pinned_bytes, names = relu6.pin(calibrated)
                    per_tensor = getattr(converter, "_experimental_disable_per_channel", False)
                    return relu6.quantize(pinned_bytes, input_type, output_type, per_tensor), names, ""
                return bytes(converter.convert()), [], ""
            except Exception as e:
                e.log = _read_log(log)
                raise
    except ConversionError:
        raise
    except Exception as e:
        text = f"{e}\n{getattr(e, 'log', '')}"
        ops, layers = _unconvertible(text, model)
        if ops:
            where = f"layer {', '.join(layers)}" if layers else "the model"
            raise ConversionError(f"{mode} export failed: {where} uses TensorFlow op {', '.join(ops)}, which has no "
                                  "TFLite builtin kernel; replace the layer with supported ops") from None
        first = next((l.strip() for l in str(e).splitlines() if l.strip()), type(e).__name__)
        raise ConversionError(f"{mode} conversion failed: {first[:300]}") from None


def _converter(model, mode, representative_data, samples, input_type, output_type):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float32":
        return conv
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        conv.target_spec.supported_types = [tf.float16]
    elif mode in ("int8", "int16x8"):
        gen, _ = _representative(representative_data, samples)
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if mode == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = input_type
        conv.inference_output_type = output_type
    return conv


def _io_type(name, mode, what):
    default = {"int8": "int8", "int16x8": "int16"}.get(mode, "float32")
    name = default if name is None else name
    allowed = {"int8": ("int8", "uint8", "float32"), "int16x8": ("int16", "float32")}.get(mode, ("float32",))
    if name not in allowed:
        raise InputError(f"{what} type for mode {mode} must be one of {', '.join(allowed)}. Got: {name!r}")
    return _IO_TYPES[name]


def export(model, path, mode="int8", representative_data=None, eval_data=None, input_type=None,
           output_type=None, relu6_fixed_range=True, samples=256, eval_samples=None, layer_samples=32,
           per_channel=True, bias_correction=False):
    """Converts a Keras model to a TFLite file and reports what it holds.

    Compression wrappers are stripped first (pruned zeros and clusters kept). In `int8` mode every
    ReLU6 output is pinned to [0, 6] (scale 6/255, zero point -128) unless `relu6_fixed_range=False`.

    A model wrapped by `tfc.quantize` (QAT) converts to int8 from its learned ranges (no representative
    data needed; ReLU6 ranges are fixed by the QAT scheme); layers kept float with `skip` stay float in
    the file. In the other modes a QAT model is exported from its float weights.

    Example:

    ```python
    report = tfc.export(model, "model.tflite", representative_data=x_train[:256],
                        eval_data=(x_test, y_test))
    print(report.format())
    ```

    Args:
      model: a tf_keras model.
      path: the output `.tflite` path; written atomically.
      mode: `int8`, `int16x8`, `float16`, `dynamic` or `float32`. Defaults to `int8`.
      representative_data: inputs for calibration (`int8`, `int16x8`). Defaults to `None`.
      eval_data: `(x, y)` (or `x` alone) to compare the file with the Keras model. Defaults to `None`.
      input_type, output_type: `int8`, `uint8` or `float32` for int8 mode (`int16`/`float32` for
        int16x8). Defaults to `None`: int8 (int16) for integer modes, float32 otherwise.
      relu6_fixed_range: pin ReLU6 outputs in int8 mode. Defaults to `True`.
      samples: how many representative samples to calibrate on. Defaults to `256`.
      eval_samples: cap on evaluation samples. Defaults to `None` (all).
      layer_samples: with `eval_data`, how many samples the per-layer error report (`report.layers`)
        compares on; 0 skips it. Defaults to `32`.
      per_channel: one weight scale per output channel (`True`) or one per weight tensor (`False`, what
        several DSP and NPU delegates require) in post-training int8 / int16x8. Defaults to `True`.
      bias_correction: before converting, correct every layer's bias for the mean shift its weight
        quantization causes, measured on `representative_data` (`tfcompress.quantization.bias_correction`;
        BatchNormalization folded first). Defaults to `False`.

    Returns:
      An `ExportReport`.

    Raises:
      InputError: bad mode, types, missing data, or an output folder that does not exist.
      ConversionError: the converter failed; an op with no integer kernel is named with its layer.
    """
    model = tf_keras_model(model)
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    path = check_output(path)
    in_t, out_t = _io_type(input_type, mode, "input"), _io_type(output_type, mode, "output")
    from tfcompress.stripping import strip
    model = strip(model)
    from tfcompress import quantization
    qat = quantization.is_quantized(model)
    notes, float_layers, trained = [], [], model
    if qat:
        float_layers = [l.name for l in model.layers
                        if not isinstance(l, (quantization.QuantizeWrapper, quantization.QuantizeLayer,
                                              keras.layers.InputLayer))]
        if mode != "int8":
            model = quantization.float_model(model)
            notes.append(f"QAT model: {mode} export uses its float weights (the learned int8 ranges apply to "
                         "int8 only)")
    if bias_correction or not per_channel:
        from tfcompress.quantization.bias_correction import check_export, export_model
        notes.extend(check_export(mode, qat, representative_data, bias_correction, per_channel))
        if bias_correction:
            model, note = export_model(model, representative_data, per_channel, samples)
            notes.append(note)
    started = time.perf_counter()
    if qat and mode == "int8":
        converter = _qat_converter(model, in_t, out_t, allow_float=bool(float_layers))
        pin = False
    else:
        converter = _converter(model, mode, representative_data, samples, in_t, out_t)
        converter._experimental_disable_per_channel = not per_channel
        pin = mode == "int8" and relu6_fixed_range
    from tfcompress.quantization.grids import stored_grids, weights_of
    with stored_grids(model) if qat and mode == "int8" else contextlib.nullcontext(weights_of(model)) as grid:
        if grid == "int4":   # int4 weights: ai-edge-quantizer, from the trained grid (tfcompress.tflite.low_bit)
            from tfcompress.tflite import low_bit
            (data, pinned), pin = low_bit.convert(model, representative_data, samples, in_t, out_t,
                                                  quiet=_captured_output), True
        else:
            data, pinned, _ = _convert(converter, model, mode, pin, in_t, out_t)
            if grid != "int8":   # Dense grids per channel: the converter wrote them with one step
                from tfcompress.tflite.low_bit import per_channel_dense
                data = per_channel_dense(model, data)
    seconds = time.perf_counter() - started
    report = describe(path, mode, data, pinned_names=pinned if pin else None)
    report.notes.extend(notes)
    if grid != "int8":
        from tfcompress.tflite.low_bit import grid_note
        report.notes.append(grid_note(model, data))
    if qat and mode == "int8" and float_layers:
        report.notes.append(f"kept float by choice (quantize skip): {', '.join(float_layers)}")
    elif mode == "int8" and report.float_ops:
        # the quantizer leaves ops without an int8 kernel in float between QUANTIZE/DEQUANTIZE
        from tfcompress.tflite import reader
        m = reader.read(data)
        bad = [(op.op, m.subgraphs[op.subgraph].tensors[op.outputs[0]].name) for op in reader.float_ops(m)
               if op.op not in ("QUANTIZE", "DEQUANTIZE")] or [(o, o) for o in report.float_ops]
        layers = _layers_in([n for _, n in bad], model)
        raise ConversionError(
            f"int8 export is not integer-only: layer {', '.join(layers) or '?'} uses op "
            f"{', '.join(dict.fromkeys(o for o, _ in bad))}, which has no int8 kernel in TFLite; export with "
            "mode='int16x8', 'dynamic' or 'float16', or replace the layer")
    write_bytes(path, data)
    report.relu6_fixed_range = bool(pin) or (qat and mode == "int8")
    report.seconds = seconds
    if eval_data is not None:
        evaluate(report, trained if mode == "int8" else model, data, eval_data, eval_samples)
        if layer_samples:
            from tfcompress import report as layer_report
            x = eval_data[0] if isinstance(eval_data, tuple) else eval_data
            try:
                report.layers = layer_report.layer_errors(model, data, x, samples=layer_samples)
            except Exception as e:  # the file is written and evaluated; the per-layer view is extra
                report.notes.append(f"per-layer error report unavailable: {type(e).__name__}: "
                                    f"{str(e).splitlines()[0][:160] if str(e) else ''}")
    return report


def _qat_converter(model, input_type, output_type, allow_float=False):
    """Converter for a QAT model: the fake-quant ranges it learned become the int8 parameters.

    No representative data: the converter refuses `TFLITE_BUILTINS_INT8` without it even for a QAT
    graph, so the integer-only check after conversion enforces it instead (unless layers were kept
    float on purpose)."""
    del allow_float  # float kernels are allowed by the default op set; the check after conversion decides
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type = input_type
    conv.inference_output_type = output_type
    return conv


def describe(path, mode, data, pinned_names=None):
    """An ExportReport of a file's facts (no evaluation)."""
    from tfcompress.tflite import reader
    m = reader.read(data)
    names = set(pinned_names) if pinned_names is not None else _relu6_names(data)
    relu = []
    for t in m.tensors():
        if t.name in names and t.scale is not None and len(t.scale):
            scale, zp = float(t.scale[0]), int(t.zero_point[0])
            relu.append({"tensor": t.name, "scale": scale, "zero_point": zp,
                         "pinned": abs(scale - RELU6_SCALE) <= 1e-6 * RELU6_SCALE and zp == -128})
    fl = [f"{op.op} ({m.subgraphs[op.subgraph].tensors[op.outputs[0]].name})" for op in reader.float_ops(m)]
    return ExportReport(path=os.fspath(path), mode=mode, bytes=len(data), op_counts=reader.op_counts(m),
                        float_ops=fl if mode in ("int8", "int16x8") else [],
                        input_dtype=",".join(m.input_dtypes), output_dtype=",".join(m.output_dtypes), relu6=relu,
                        precision=_precision(m))


def _precision(m):
    from tfcompress.tflite.low_bit import op_precisions
    return [{"op": op.op, "tensor": m.subgraphs[op.subgraph].tensors[op.outputs[0]].name if op.outputs else "",
             "precision": kind} for op, kind in op_precisions(m)]


def _relu6_names(data):
    from tfcompress import relu6
    schema = relu6._schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    out = set()
    for gi, ti in relu6.relu6_tensors(model):
        name = model.subgraphs[gi].tensors[ti].name
        out.add(name.decode() if isinstance(name, bytes) else name)
    return out


def evaluate(report, model, data, eval_data, limit=None):
    """Fills accuracy / agreement (classifiers) and the max abs difference into `report`.

    Args:
      report: the `ExportReport` to fill.
      model: the Keras model the file was exported from.
      data: the file's bytes.
      eval_data: `(x, y)`, or `x` alone (agreement and difference only).
      limit: evaluate on the first `limit` samples. Defaults to `None` (all).

    Returns:
      `report`.
    """
    x, y = (eval_data if isinstance(eval_data, tuple) else (eval_data, None))
    x = np.asarray(x, dtype=np.float32)[:limit]
    y = None if y is None else np.asarray(y)[:limit]
    result = evaluate_tflite(data, x, y, reference=model)
    report.eval_samples = result.samples
    report.agreement = result.agreement
    report.float_accuracy = result.float_accuracy
    report.tflite_accuracy = result.accuracy
    report.max_abs_diff = result.max_abs_diff
    return report
