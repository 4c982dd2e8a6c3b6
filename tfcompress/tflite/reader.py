"""Facts of a .tflite flatbuffer: subgraphs, operators, tensors, quantization, weights and sparsity.

Parsing lives in `tfcompress.tflite.flatbuffer` (re-exported here: `read`, `Model`, `Tensor`, ...); this
module answers the usual questions about a parsed `Model` (`op_counts`, `float_ops`, `tensor_by_name`,
`op_outputs`, `op_inputs`, `weight_tensors`) and builds `inspect(path)`, the JSON-ready summary
(`tfcompress.inspect`), and `format_table(inspect(path))`, its text form. No TensorFlow is imported.
"""
from collections import Counter

from tfcompress.tflite.flatbuffer import (  # noqa: F401  (re-exported: callers import them from here)
    CUSTOM, FLOAT_TYPES, IDENTIFIER, Buffer, Model, Operator, Subgraph, Tensor, _bytes_of, check_identifier,
    numpy_dtype, read, schema)


# ---- questions about a Model -----------------------------------------------------------------------------

def op_counts(model, subgraph=None):
    """{op name: count} over every subgraph, or over one when `subgraph` is given."""
    sgs = model.subgraphs if subgraph is None else [model.subgraphs[subgraph]]
    return dict(Counter(op.op for sg in sgs for op in sg.operators).most_common())


def tensor_by_name(model, name, subgraph=0):
    """The tensor called `name` in `subgraph`; raises KeyError listing nothing when it is missing."""
    for t in model.subgraphs[subgraph].tensors:
        if t.name == name:
            return t
    raise KeyError(f"no tensor named {name!r} in subgraph {subgraph}")


def op_outputs(model, subgraph=0):
    """[(Operator, [output Tensor, ...]), ...] in execution order: what each op produces."""
    sg = model.subgraphs[subgraph]
    return [(op, [sg.tensors[i] for i in op.outputs if i >= 0]) for op in sg.operators]


def op_inputs(model, op):
    """The input tensors of `op` (omitted optional inputs left out)."""
    sg = model.subgraphs[op.subgraph]
    return [sg.tensors[i] for i in op.inputs if i >= 0]


def float_ops(model):
    """Operators that compute in float: a non-constant input or output is float32 / float16.

    Left out: QUANTIZE whose input is a model input and DEQUANTIZE whose output is a model output (the
    float interface of an integer model), and DEQUANTIZE of a constant (float16 or int8 weights
    expanded for a float op, which is itself listed). For a full-int8 file the result should be [].
    """
    found = []
    for sg in model.subgraphs:
        for op in sg.operators:
            ins = [sg.tensors[i] for i in op.inputs if i >= 0]
            outs = [sg.tensors[i] for i in op.outputs if i >= 0]
            if op.op == "QUANTIZE" and all(t.index in sg.inputs for t in ins):
                continue
            if op.op == "DEQUANTIZE" and (all(t.index in sg.outputs for t in outs)
                                          or all(t.is_constant for t in ins)):
                continue
            if any(t.dtype in ("float32", "float16") and not t.is_constant for t in ins + outs):
                found.append(op)
    return found


def weight_tensors(model, min_elements=1024):
    """Constant numeric tensors that hold weights: 2 or more dims, or `min_elements` or more values.

    One tensor per buffer (buffers shared by several tensors count once); sparse-format tensors are left
    out (their buffer holds only the kept values). Biases (1-D, small) are not weights here.
    """
    seen, found = set(), []
    for t in model.tensors():
        if not t.is_constant or t.buffer in seen or t.is_sparse or numpy_dtype(t.dtype) is None:
            continue
        if t.dtype in ("bool", "complex64", "complex128"):
            continue
        if len(t.shape) >= 2 or t.size >= min_elements:
            if t.nbytes == t.size * numpy_dtype(t.dtype).itemsize:
                seen.add(t.buffer)
                found.append(t)
    return found


# ---- inspect ---------------------------------------------------------------------------------------------

def _quant(t):
    if not t.is_quantized:
        return None
    return {"scale": [float(v) for v in t.scale], "zero_point": [int(v) for v in t.zero_point],
            "quantized_dimension": t.quantized_dimension}


def _io(t):
    d = {"name": t.name, "index": t.index, "dtype": t.dtype, "shape": list(t.shape),
         "shape_signature": list(t.shape_signature)}
    q = _quant(t)
    if q:
        d.update(scale=q["scale"][0], zero_point=q["zero_point"][0])
    return d


def inspect(path):
    """JSON-ready facts of a .tflite file: ops, inputs/outputs, tensors, quantization, weight sparsity.

    Keys: file, file_bytes, version, description, subgraphs, inputs, outputs, op_counts, float_ops,
    tensors (one row per tensor), weights (one row per weight tensor: bytes, zero_fraction),
    weight_bytes, weight_elements, zero_fraction (over all weights).

    Raises:
        InputError: the file is missing or not a valid .tflite file.
    """
    model = path if isinstance(path, Model) else read(path)
    tensors = []
    for t in model.tensors():
        zf = t.zero_fraction if t.is_constant else None
        tensors.append({"subgraph": t.subgraph, "index": t.index, "name": t.name, "dtype": t.dtype,
                        "shape": list(t.shape), "quantization": _quant(t), "buffer": t.buffer,
                        "constant": t.is_constant, "bytes": t.nbytes,
                        "zero_fraction": None if zf is None else round(zf, 6)})
    weights = weight_tensors(model)
    zeros = sum(round(t.zero_fraction * t.size) for t in weights)
    elements = sum(t.size for t in weights)
    return {
        "file": model.path,
        "file_bytes": model.file_size,
        "version": model.version,
        "description": model.description,
        "subgraphs": len(model.subgraphs),
        "signatures": model.signature_keys,
        "inputs": [_io(t) for t in model.inputs],
        "outputs": [_io(t) for t in model.outputs],
        "op_counts": op_counts(model),
        "float_ops": [{"subgraph": op.subgraph, "index": op.index, "op": op.op} for op in float_ops(model)],
        "tensors": tensors,
        "weights": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "bytes": t.nbytes,
                     "zero_fraction": round(t.zero_fraction, 6)} for t in weights],
        "weight_bytes": sum(t.nbytes for t in weights),
        "weight_elements": elements,
        "zero_fraction": round(zeros / elements, 6) if elements else 0.0,
    }


def _fmt_q(io):
    return f"  scale={io['scale']:.6g} zp={io['zero_point']}" if "scale" in io else ""


def format_table(info):
    """A plain-text report of `inspect(...)` for people."""
    lines = [f"{info['file'] or '<bytes>'}: {info['file_bytes']:,} bytes, schema v{info['version']}, "
             f"{info['subgraphs']} subgraph(s)"]
    for kind in ("inputs", "outputs"):
        for io in info[kind]:
            lines.append(f"  {kind[:-1]:6} {io['name']}  {io['dtype']} {io['shape']}{_fmt_q(io)}")
    lines.append("")
    lines.append("ops:")
    for name, n in info["op_counts"].items():
        lines.append(f"  {n:5d}  {name}")
    if info["float_ops"]:
        names = Counter(o["op"] for o in info["float_ops"])
        lines.append("ops computing in float: " + ", ".join(f"{k} x{v}" for k, v in names.items()))
    else:
        lines.append("ops computing in float: none")
    lines.append("")
    lines.append(f"weights: {len(info['weights'])} tensors, {info['weight_elements']:,} values, "
                 f"{info['weight_bytes']:,} bytes, {100 * info['zero_fraction']:.1f}% zeros")
    if info["weights"]:
        width = min(48, max(len(w["name"]) for w in info["weights"]))
        lines.append(f"  {'tensor':{width}}  {'dtype':8} {'shape':18} {'bytes':>10} {'zeros':>7}")
        for w in info["weights"]:
            name = w["name"] if len(w["name"]) <= width else "…" + w["name"][-(width - 1):]
            lines.append(f"  {name:{width}}  {w['dtype']:8} {str(w['shape']):18} {w['bytes']:>10,} "
                         f"{100 * w['zero_fraction']:6.1f}%")
    return "\n".join(lines)
