"""Per-layer quantization error of an exported file, and the Markdown export report.

Each TFLite activation tensor is mapped to the Keras layer whose output it is: tensor names hold the
layer names ('model/block0_dw_relu6/Relu6;model/block0_dw_bn/FusedBatchNormV3;model/block0_dw/...';
'quant_<layer>' for QAT models); of the layers a fused op names, the latest in the model whose output
shape matches is the one the tensor holds. Keras outputs come from one sub-model over those layers;
the TFLite values from an interpreter that keeps every intermediate tensor (dequantized).

Per layer: RMSE, SQNR = 10 log10(sum(float^2) / sum((float - tflite)^2)) in dB, and the SQNR of the
noise the layer itself *adds* (`added_db`: its noise-to-signal ratio minus the worst of its nearest
mapped upstream layers', in dB; lower is worse). Error flows downstream, so the layers adding the most
noise are flagged as the worst, not the last ones.
"""
import math

import numpy as np

WORST = 3


def _known_names(model):
    return {l.name: i for i, l in enumerate(model.layers)}


def _candidates(tensor_name, order):
    found = []
    for part in tensor_name.split(";"):
        for piece in part.split("/"):
            name = piece.split(":")[0]
            if name not in order and name.startswith("quant_") and name[6:] in order:
                name = name[6:]
            if name in order and name not in found:
                found.append(name)
    return found


def _shape(shape):
    return tuple(int(d) for d in shape[1:])


def map_tensors(model, tflite_model, fused=None):
    """{Keras layer name: TFLite tensor index} for the layers whose output the file materializes.

    When `fused` is a dict it receives {layer name: [every layer the tensor's op computes]}."""
    from tfcompress.tflite import reader
    order = _known_names(model)
    shapes = {}
    for layer in model.layers:
        try:
            shapes[layer.name] = _shape(layer.output_shape)
        except (AttributeError, RuntimeError, TypeError):
            continue
    g = tflite_model.main
    out = {}
    for op in g.operators:
        for ti in op.outputs:
            if ti < 0:
                continue
            t = g.tensors[ti]
            if t.is_constant or t.dtype not in reader.FLOAT_TYPES + ("int8", "uint8", "int16"):
                continue
            shape = tuple(int(d) for d in t.shape[1:])
            names = [n for n in _candidates(t.name, order) if shapes.get(n) == shape]
            if not names:
                continue
            layer = max(names, key=order.get)
            if layer not in out:
                out[layer] = ti
                if fused is not None:
                    fused[layer] = sorted(_candidates(t.name, order), key=order.get)
    # the file's outputs are often named after the signature ('StatefulPartitionedCall:0'), not the layer
    producer = {o: op for op in g.operators for o in op.outputs}
    outputs = [getattr(t, "_keras_history", None) for t in model.outputs]
    for ti, history in zip(g.outputs, outputs):
        if history is None or history.layer.name in out:
            continue
        op = producer.get(ti)
        if op is not None and op.op == "DEQUANTIZE":
            ti = op.inputs[0]
        if tuple(int(d) for d in g.tensors[ti].shape[1:]) == shapes.get(history.layer.name):
            out[history.layer.name] = ti
            if fused is not None:
                fused[history.layer.name] = [history.layer.name]
    return out


def _sqnr(ref, err):
    signal, noise = float(np.sum(ref.astype(np.float64) ** 2)), float(np.sum(err.astype(np.float64) ** 2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _nsr(sqnr_db):
    """Noise-to-signal power ratio of an SQNR in dB (0 for an exact tensor)."""
    return 0.0 if sqnr_db == math.inf else math.inf if sqnr_db == -math.inf else 10.0 ** (-sqnr_db / 10.0)


def _upstream(model, mapped):
    from tfcompress.graph import inbound_layers
    """{layer: [nearest mapped upstream layer names, or None for the model input]}."""
    ups = {}
    for layer in model.layers:
        found, stack, seen = set(), [layer], set()
        while stack:
            cur = stack.pop()
            inbound = inbound_layers(cur)
            if not inbound:
                found.add(None)
            for prev in inbound:
                if prev.name in seen:
                    continue
                seen.add(prev.name)
                if prev.name in mapped:
                    found.add(prev.name)
                else:
                    stack.append(prev)
        ups[layer.name] = sorted(found, key=lambda n: (n is not None, n or ""))
    return ups


def layer_errors(model, tflite, x, samples=32, worst=WORST):
    """Per-layer error of a TFLite file against the float Keras model it came from.

    Args:
      model: the float tf_keras model (for a QAT model, its float counterpart is used).
      tflite: the .tflite path or bytes.
      x: float inputs; the first `samples` are used.
      samples: how many inputs to compare on. Defaults to `32`.
      worst: how many layers to flag (those losing the most SQNR). Defaults to `3`.

    Returns:
      A list of dicts in model order: layer, class, fused (the Keras layers the tensor's op computes,
      e.g. conv, its BN and its ReLU6), tensor, dtype, scale, zero_point, rmse, max_abs, sqnr_db,
      added_db (SQNR of the noise this layer adds; None: adds none), worst.
    """
    from tfcompress._tf import keras
    from tfcompress.quantization import float_model
    from tfcompress.tflite import reader, runtime
    model = float_model(model)
    m = reader.read(tflite)
    fused = {}
    mapped = map_tensors(model, m, fused)
    x = np.asarray(x, np.float32)[:samples]
    if not mapped or not len(x):
        return []
    names = [l.name for l in model.layers if l.name in mapped]
    sub = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    ref = sub.predict(x, batch_size=64, verbose=0)
    ref = ref if isinstance(ref, list) else [ref]
    it = runtime.Interpreter(tflite, preserve_all_tensors=True)
    input_index = it.input_details()[0]["index"]
    got = {n: [] for n in names}
    got_in = []
    step = len(x) if it.resize(len(x)) else 1
    if step == 1:
        it.resize(1)
    for start in range(0, len(x), step):
        it.invoke_float([x[start:start + step]])
        for n in names:
            got[n].append(it.get_tensor(mapped[n]))
        got_in.append(it.get_tensor(input_index))
    in_sqnr = _sqnr(x, np.concatenate(got_in).reshape(x.shape) - x)
    tensors = m.main.tensors
    rows, sqnr = [], {}
    for n, r in zip(names, ref):
        g = np.concatenate(got[n])
        if g.size != r.size:
            continue
        err = g.reshape(r.shape) - r
        t = tensors[mapped[n]]
        sqnr[n] = _sqnr(r, err)
        rows.append({"layer": n, "class": type(model.get_layer(n)).__name__, "fused": fused.get(n, [n]),
                     "tensor": t.name, "dtype": t.dtype,
                     "scale": float(t.scale[0]) if t.is_quantized else None,
                     "zero_point": int(t.zero_point[0]) if t.is_quantized else None,
                     "rmse": float(np.sqrt(np.mean(err.astype(np.float64) ** 2))),
                     "max_abs": float(np.max(np.abs(err))), "sqnr_db": sqnr[n]})
    ups = _upstream(model, sqnr)
    for row in rows:
        before = [in_sqnr if u is None else sqnr[u] for u in ups.get(row["layer"], [None])] or [in_sqnr]
        added = _nsr(row["sqnr_db"]) - max(_nsr(b) for b in before)
        row["added_db"] = -10.0 * math.log10(added) if added > 0 else math.inf
        row["worst"] = False
    for row in sorted(rows, key=lambda r: r["added_db"])[:worst]:
        if math.isfinite(row["added_db"]):
            row["worst"] = True
    for row in rows:  # JSON has no infinity: None means no error at all (SQNR) or nothing lost
        for key in ("sqnr_db", "added_db"):
            if not math.isfinite(row[key]):
                row[key] = None
    return rows


def worst_layers(rows):
    """Names of the flagged layers, the one adding the most noise first."""
    return [r["layer"] for r in sorted(rows, key=lambda r: math.inf if r["added_db"] is None else r["added_db"])
            if r["worst"]]


def precision_line(rows):
    """'int4: CONV_2D×2, FULLY_CONNECTED×2; int8: RESHAPE×1; float: none' from an ExportReport's
    `precision` rows (QUANTIZE / DEQUANTIZE at the float edges left out)."""
    from collections import Counter
    parts = []
    for kind in ("int4", "int8", "int16", "float"):
        counts = Counter(r["op"] for r in rows if r["precision"] == kind)
        if counts or kind == "float":
            parts.append(f"{kind}: {', '.join(f'{op}×{n}' for op, n in counts.items()) or 'none'}")
    return "; ".join(parts)


def _num(v, fmt):
    if v is None:
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return format(v, fmt)


def to_markdown(report):
    """The ExportReport as Markdown: file facts, accuracy, ReLU6 pins, and the per-layer error table."""
    r = report
    lines = [f"# Export report: `{r.path}`", "",
             "| | |", "|---|---|",
             f"| mode | {r.mode} |", f"| size | {r.bytes:,} bytes |",
             f"| input / output | {r.input_dtype} / {r.output_dtype} |",
             f"| export time | {r.seconds:.2f} s |",
             f"| ops | {', '.join(f'{k}×{v}' for k, v in r.op_counts.items())} |",
             f"| ops computing in float | {', '.join(r.float_ops) if r.float_ops else 'none'} |"]
    if r.agreement is not None or r.max_abs_diff is not None:
        if r.float_accuracy is not None:
            lines.append(f"| accuracy ({r.eval_samples} samples) | float {r.float_accuracy:.4f}, {r.mode} "
                         f"{r.tflite_accuracy:.4f} ({100 * (r.tflite_accuracy - r.float_accuracy):+.2f} points) |")
        if r.agreement is not None:
            lines.append(f"| top-1 agreement float vs TFLite | {r.agreement:.4f} |")
        if r.max_abs_diff is not None:
            lines.append(f"| max abs output difference | {r.max_abs_diff:.6g} |")
    if r.relu6:
        pinned = sum(x["pinned"] for x in r.relu6)
        lines.append(f"| ReLU6 outputs at scale 6/255, zero point -128 | {pinned}/{len(r.relu6)} |")
    if r.precision:
        lines.append(f"| ops by precision | {precision_line(r.precision)} |")
    lines.append("")
    for note in r.notes:
        lines.append(f"- {note}")
    if r.notes:
        lines.append("")
    if r.precision:
        lines += ["## Ops and the precision they compute in", "", "| # | op | output tensor | precision |",
                  "|---|---|---|---|"]
        lines += [f"| {i} | {p['op']} | `{p['tensor']}` | {p['precision']} |" for i, p in enumerate(r.precision)]
        lines.append("")
    if r.layers:
        flagged = worst_layers(r.layers)
        lines += ["## Per-layer error (float Keras layer output vs the TFLite tensor)", ""]
        if flagged:
            lines += [f"Worst layers (most noise added): {', '.join(f'**{n}**' for n in flagged)}", ""]
        lines += ["SQNR: float output vs the file's tensor. Added: SQNR of the noise this layer adds on top of "
                  "its inputs' (lower is worse).", "",
                  "| layer | class | dtype | scale | zero point | RMSE | max abs | SQNR dB | added dB | |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for x in r.layers:
            name = x["layer"] if len(x.get("fused", [])) < 2 else f"{x['layer']} ({' + '.join(x['fused'])})"
            lines.append(f"| {name} | {x['class']} | {x['dtype']} | {_num(x['scale'], '.6g')} | "
                         f"{_num(x['zero_point'], 'd')} | {_num(x['rmse'], '.4g')} | {_num(x['max_abs'], '.4g')} | "
                         f"{_num(x['sqnr_db'], '.1f')} | {_num(x['added_db'], '.1f')} | "
                         f"{'⚠ worst' if x['worst'] else ''} |")
        lines.append("")
    return "\n".join(lines)
