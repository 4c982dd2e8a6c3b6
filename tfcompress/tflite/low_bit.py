"""Low-bit weights in a file: the int4 export through ai-edge-quantizer, INT4 tensors read back, the
precision each op computes in, and the check that a file's kernels are the grid a QAT model trained.

ai-edge-quantizer leaves tensors that are already quantized as they are, so it cannot turn the int8
file of a QAT model into an int4 one; it quantizes a float model. The route is therefore: the QAT
model's float counterpart with every grid kernel set to the values the forward pass used (levels
-7..7 times the channel's scale), converted to float32, then ai-edge-quantizer's static recipe: int8
activations calibrated on representative data (every ReLU6 output's range set to [0, 6], so its scale
is 6/255 and its zero point -128), CONV_2D and FULLY_CONNECTED weights int4, symmetric, per channel
(or per tensor), every other op int8. Its symmetric min-max scale is max|w| / 7, the scale the grid was
trained on, so the file's int4 levels are the trained levels (`levels` reads them back).

`levels(tensor)` unpacks an INT4 tensor (two values a byte, low nibble first); `op_precisions(model)`
says for every op whether it computes with int4 weights, in int8 or in float; `grid_check(qat, file)`
compares every grid kernel of the file with the QAT model's (integer levels, steps, distinct values).
"""
import numpy as np

from tfcompress.errors import ConversionError, InputError

_INT4_OPS = ("CONV_2D", "FULLY_CONNECTED")
_IGNORED = ("QUANTIZE", "DEQUANTIZE")


def levels(tensor):
    """The int4 values of an INT4 constant tensor, as int8, in the tensor's shape."""
    raw = np.frombuffer(tensor.raw(), dtype=np.uint8)
    nibbles = np.empty(raw.size * 2, dtype=np.int8)
    nibbles[0::2], nibbles[1::2] = raw & 0x0F, raw >> 4
    nibbles = np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)
    return nibbles[:tensor.size].reshape(tensor.shape)


def op_precisions(model):
    """[(Operator, "int4" | "int8" | "int16" | "float" | "other")] for every op of a parsed file.

    int4: an op with an INT4 constant input (its weights); float: a non-constant float input or output;
    int8 / int16: the integer type of its activations. QUANTIZE / DEQUANTIZE at the file's float edges
    are "other" (they convert, they do not compute)."""
    from tfcompress.tflite import reader
    float_ops = {(op.subgraph, op.index) for op in reader.float_ops(model)}
    out = []
    for sg in model.subgraphs:
        for op in sg.operators:
            ins = [sg.tensors[i] for i in op.inputs if i >= 0]
            acts = [t for t in ins + [sg.tensors[i] for i in op.outputs if i >= 0] if not t.is_constant]
            if (op.subgraph, op.index) in float_ops:
                kind = "float"
            elif any(t.is_constant and t.dtype == "int4" for t in ins):
                kind = "int4"
            elif op.op in _IGNORED:
                kind = "other"
            elif any(t.dtype == "int16" for t in acts):
                kind = "int16"
            elif any(t.dtype in ("int8", "uint8") for t in acts):
                kind = "int8"
            else:
                kind = "other"
            out.append((op, kind))
    return out


def _layer_of(tensor_name, names):
    for part in tensor_name.split(";")[0].split("/"):
        part = part[6:] if part.startswith("quant_") and part[6:] in names else part
        if part in names:
            return part
    return None


def _file_layout(values):
    """A Keras kernel in TFLite's layout: output channels first (conv [o, h, w, i], dense [o, i])."""
    return np.moveaxis(values, -1, 0)


def grid_check(qat, tflite):
    """Compares every grid kernel of a file with the grid the QAT model trained.

    Args:
      qat: the QAT model (`tfc.quantize(..., weights=...)`) the file was exported from.
      tflite: the file's path or bytes.

    Returns:
      One dict per grid kernel, in model order: layer, grid, dtype (the file's), levels_equal (the
      file's integers are round(trained values / trained step)), max_abs_diff (dequantized file values
      vs the trained values), max_step_rel_diff, distinct_per_channel (the most in one output channel),
      limit (what the grid allows per channel), on_grid (levels equal and within the limit) and
      step_equal (the file's steps are the trained ones; not where the converter folded a
      BatchNormalization into the kernel, which multiplies each channel's step by its factor).
    """
    from tfcompress.quantization.grids import grid_kernels, levels_per_channel
    from tfcompress.tflite import reader
    kernels = grid_kernels(qat)
    model = reader.read(tflite)
    found = {}
    for t in reader.weight_tensors(model, min_elements=1) + [t for t in model.tensors() if t.dtype == "int4"]:
        layer = _layer_of(t.name, kernels)
        if layer is not None and t.is_quantized and layer not in found \
                and tuple(t.shape) == _file_layout(kernels[layer][0]).shape:   # the kernel, not the bias
            found[layer] = t
    rows = []
    for layer, (values, step, quantizer) in kernels.items():
        t = found.get(layer)
        row = {"layer": layer, "grid": quantizer.weights, "dtype": t.dtype if t else None,
               "limit": levels_per_channel(quantizer.weights, quantizer.exponents), "on_grid": False}
        if t is not None:
            q = levels(t) if t.dtype == "int4" else t.data()
            want, step = _file_layout(values), _file_layout(np.broadcast_to(step, values.shape))
            scale = np.asarray(t.scale, np.float64).reshape((-1,) + (1,) * (q.ndim - 1))
            trained = np.rint(want / step).astype(np.int64)
            per_channel = q.reshape(q.shape[0], -1)
            row.update(levels_equal=bool(q.shape == trained.shape and np.array_equal(q.astype(np.int64), trained)),
                       max_abs_diff=float(np.max(np.abs(q * scale - want))),
                       max_step_rel_diff=float(np.max(np.abs(np.broadcast_to(scale, step.shape) / step - 1.0))),
                       distinct_per_channel=max(int(np.unique(r).size) for r in per_channel))
            row["on_grid"] = row["levels_equal"] and row["distinct_per_channel"] <= row["limit"]
            row["step_equal"] = row["max_step_rel_diff"] < 1e-5
        rows.append(row)
    return rows


def per_channel_dense(qat, data):
    """The file with every per-channel grid Dense kernel written per channel: its FULLY_CONNECTED
    weights the trained levels (output channel first) with the trained steps, its int32 bias
    requantized to input scale x each channel's step. The converter wrote them with one step, the
    largest channel's (it takes no per-channel FULLY_CONNECTED weights from QAT). Unchanged when
    there is none."""
    from tfcompress import relu6
    from tfcompress.quantization.grids import grid_kernels
    import flatbuffers
    schema = relu6._schema()
    dense = {n: (v, s) for n, (v, s, q) in grid_kernels(qat).items()
             if q.per_channel and q.weights != "int4" and v.ndim == 2}
    if not dense:
        return data
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    changed = False
    for graph in model.subgraphs:
        for op in graph.operators:
            if relu6._op_name(model, op) != "FULLY_CONNECTED" or len(op.inputs) < 2:
                continue
            w = graph.tensors[op.inputs[1]]
            name = _layer_of(w.name.decode() if isinstance(w.name, bytes) else w.name, dense)
            if name is None or w.quantization is None or len(w.quantization.scale) != 1:
                continue
            values, step = dense[name]
            step = np.asarray(step, np.float64).reshape(-1)
            levels = np.rint(values.T / step[:, None]).astype(np.int8)
            if tuple(w.shape) != levels.shape:
                continue
            old = float(w.quantization.scale[0])
            model.buffers[w.buffer].data = np.frombuffer(levels.tobytes(), np.uint8)
            w.quantization.scale = step.astype(np.float32)
            w.quantization.zeroPoint = np.zeros(step.size, np.int64)
            w.quantization.quantizedDimension = 0
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                b = graph.tensors[op.inputs[2]]
                bias_scale = float(b.quantization.scale[0])
                real = np.frombuffer(bytes(bytearray(model.buffers[b.buffer].data)), np.int32) * bias_scale
                new_scale = (bias_scale / old) * step   # input scale x each channel's step
                model.buffers[b.buffer].data = np.frombuffer(
                    np.rint(real / new_scale).astype(np.int32).tobytes(), np.uint8)
                b.quantization.scale = new_scale.astype(np.float32)
                b.quantization.zeroPoint = np.zeros(step.size, np.int64)
                b.quantization.quantizedDimension = 0
            changed = True
    if not changed:
        return data
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _recipe(per_channel):
    activation = {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"}

    def entry(op, bits, granularity):
        return {"regex": ".*", "operation": op, "algorithm_key": "min_max_uniform_quantize",
                "op_config": {"activation_tensor_config": activation,
                              "weight_tensor_config": {"num_bits": bits, "symmetric": True,
                                                       "granularity": granularity, "dtype": "INT"},
                              "compute_precision": "INTEGER", "explicit_dequantize": False,
                              "skip_checks": False, "min_weight_elements": 0}}
    granularity = "CHANNELWISE" if per_channel else "TENSORWISE"
    return [entry("*", 8, "CHANNELWISE")] + [entry(op, 4, granularity) for op in _INT4_OPS]


def _grid_float_model(qat):
    """The QAT model's float counterpart with every grid kernel set to its trained grid values."""
    from tfcompress.quantization import float_model
    from tfcompress.quantization.grids import grid_kernels
    plain = float_model(qat)
    for name, (values, _, _) in grid_kernels(qat).items():
        plain.get_layer(name).kernel.assign(values)
    return plain


def _calibration(float_bytes, x, samples):
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_content=float_bytes).get_signature_runner()
    names = list(runner.get_input_details())
    if len(names) != 1:
        raise InputError(f"int4 export takes models with one input. Got: {len(names)}")
    n = min(len(x), samples)
    return {"serving_default": [{names[0]: x[i:i + 1]} for i in range(n)]}


def _pin_relu6(float_bytes, qsvs):
    from tfcompress import relu6
    schema = relu6._schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(float_bytes, 0))
    pinned = []
    for gi, ti in relu6.relu6_tensors(model):
        name = model.subgraphs[gi].tensors[ti].name
        name = name.decode() if isinstance(name, bytes) else name
        if name in qsvs:
            qsvs[name] = {"min": np.array(relu6.RELU6_RANGE[0], np.float32).reshape(qsvs[name]["min"].shape),
                          "max": np.array(relu6.RELU6_RANGE[1], np.float32).reshape(qsvs[name]["max"].shape)}
            pinned.append(name)
    return pinned


def grid_note(qat, data):
    """The export report's line on a grid model's kernels: how many hold exactly the trained grid."""
    rows = grid_check(qat, data)
    if not rows:
        return None
    good = [r for r in rows if r["on_grid"]]
    most = max((r.get("distinct_per_channel", 0) for r in rows), default=0)
    line = (f"{rows[0]['grid']} weights: {len(good)}/{len(rows)} kernels hold exactly the trained grid "
            f"({', '.join(sorted({str(r['dtype']) for r in rows}))}; at most {most} distinct values per channel, "
            f"grid limit {rows[0]['limit']})")
    off = [r["layer"] for r in rows if not r["on_grid"]]
    folded = [r["layer"] for r in rows if r["on_grid"] and not r["step_equal"]]
    return (line + (f"; off the grid: {', '.join(off)}" if off else "")
            + (f"; steps times the folded BatchNormalization factor: {', '.join(folded)}" if folded else ""))


def convert(qat, representative_data, samples=256, input_type=None, output_type=None, quiet=None):
    """The bytes of the int4-weight, int8-activation file of an int4 QAT model, and the ReLU6 tensor
    names pinned to [0, 6]. Input and output are int8. `quiet`: a context manager factory that
    collects what the converters print and yields the file it goes to (`tfc.export` passes its own).

    Raises:
      InputError: no representative data (int8 activations need calibration here), or an input or
        output type other than int8.
      ConversionError: ai-edge-quantizer is missing or fails.
    """
    from tfcompress._tf import tf
    import contextlib
    from tfcompress.quantization.grids import grid_kernels
    for t, what in ((input_type, "input"), (output_type, "output")):
        if t not in (None, tf.int8):
            raise InputError(f"an int4 file has int8 {what}s (ai-edge-quantizer's static recipe). Got: {t.name}")
    per_channel = all(q.per_channel for _, _, q in grid_kernels(qat).values())
    if representative_data is None:
        raise InputError("int4 export needs representative_data: ai-edge-quantizer calibrates the int8 "
                         "activations on a few hundred typical inputs")
    try:
        from ai_edge_quantizer import quantizer as aeq
    except ImportError:
        raise ConversionError("int4 export needs ai-edge-quantizer: pip install ai-edge-quantizer==0.10.0") from None
    x = np.asarray(representative_data[0] if isinstance(representative_data, (list, tuple))
                   else representative_data, np.float32)
    with (quiet or contextlib.nullcontext)() as log:
        try:
            float_bytes = bytes(tf.lite.TFLiteConverter.from_keras_model(_grid_float_model(qat)).convert())
            q = aeq.Quantizer(float_bytes)
            q.load_quantization_recipe(_recipe(per_channel))
            qsvs = q.calibrate(_calibration(float_bytes, x, samples))
            pinned = _pin_relu6(float_bytes, qsvs)
            result = q.quantize(qsvs, enable_progress_report=False)
        except InputError:
            raise
        except Exception as e:
            text = ""
            if log is not None:
                log.seek(0)
                text = log.read().decode("utf-8", "replace")
            first = next((l.strip() for l in f"{e}\n{text}".splitlines() if l.strip()), type(e).__name__)
            raise ConversionError(f"int4 export failed in ai-edge-quantizer: {first[:300]}") from None
    return bytes(result.quantized_model), pinned


def weight_bits(path_or_bytes):
    """Bits per weight of every weight tensor of a file, stored and after Deep Compression's coding.

    The int8 and wider tensors are the ones `tfcompress.tflite.size` codes; INT4 tensors (which it leaves
    in the file's remainder, having no byte view of them) are coded here the same way from their levels.

    Returns:
      (rows, totals): rows of {name, dtype, elements, stored_bits, coded_bits} per weight tensor, and
      the same over all of them (`stored_bits` and `coded_bits` per weight).
    """
    from tfcompress.tflite import pack, reader
    from tfcompress.tflite.size import size_report
    report = size_report(path_or_bytes)
    rows = [{"name": t.name, "dtype": t.dtype, "elements": t.elements, "stored": 8 * t.stored_bytes,
             "coded": 8 * t.coded_bytes} for t in report.tensors]
    for t in reader.read(path_or_bytes).tensors():
        if t.is_constant and t.dtype == "int4":
            blob, _ = pack.encode_tensor(levels(t).astype(np.int8).tobytes(), 1)
            rows.append({"name": t.name, "dtype": "int4", "elements": t.size, "stored": 8 * t.nbytes,
                         "coded": 8 * min(len(blob), t.nbytes + 1)})   # as the pack: raw when coding does not pay
    for r in rows:
        r["stored_bits"] = r["stored"] / r["elements"] if r["elements"] else 0.0
        r["coded_bits"] = r["coded"] / r["elements"] if r["elements"] else 0.0
    n = sum(r["elements"] for r in rows)
    totals = {"elements": n, "stored_bits": sum(r.pop("stored") for r in rows) / n if n else 0.0,
              "coded_bits": sum(r.pop("coded") for r in rows) / n if n else 0.0}
    return rows, totals
