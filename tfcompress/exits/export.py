"""`tfc.export_exits`: a model with early exits as one .tflite file with one signature per stage.

Stage i (`stage_<i>`) reads its input `x` (the image for stage 0, stage i-1's `features` after) and
returns `logits` (exit i) and `features` (the input of stage i+1); the last stage returns the final
output's `logits`. A runner invokes stage after stage and stops at the first confident exit, so the
layers after an exit only run for the samples that need them.

int8 (the default) is full integer in every signature: int8 inputs and outputs, every ReLU6 output
pinned to scale 6/255 and zero point -128 (the same calibrate, pin, quantize route as `tfc.export`,
`tfcompress/relu6.py`). TF 2.21's converter calibrates and quantizes several signatures of one file
together: the representative data is fed per signature (`(key, {input: array})` samples). Each stage's
input range is set to the range of the features the previous stage writes before quantizing, so the
int8 features pass from stage to stage as they are, without requantizing.

A QAT model (`tfc.quantize` of a model with exits, trained) converts from its learned ranges instead:
each stage is `tfc.quantize` of the float stage holding the QAT model's weights and ranges, and a later
stage's input range is set to the quantization the previous stage's features got in a first conversion,
then the stages are converted again. The file then computes what the QAT Keras model computes (to an
output step or so), which is what makes its exit decisions the Keras model's.
"""
import numpy as np

from tfcompress._tf import tf
from tfcompress.errors import ConversionError, InputError
from tfcompress.exits.heads import exit_points
from tfcompress.fileio import check_output, write_bytes
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.graph.split import submodel
from tfcompress.graph.walk import require_graph
from tfcompress.quantization.objects import is_quantized
from tfcompress.quantization.unwrap import float_model

MODES = ("int8", "float32")


def stage_models(model):
    """The stages of a model with exits, as Keras models: stage i maps its input to `[exit i, cut i]`, the
    last maps the last cut to the final output.

    Returns:
      A list of `len(exits) + 1` functional models.
    """
    model = require_graph(tf_keras_model(model), "export_exits")
    if is_quantized(model):
        return [_requantized(s, model, i > 0) for i, s in enumerate(stage_models(_plain(model)))]
    at, exits, final = exit_points(model)
    if len(model.inputs) != 1:
        raise InputError(f"export_exits needs a model with one input. Got: {len(model.inputs)}")
    starts = [model.inputs[0]._keras_history.layer.name] + at
    stages = [submodel(model, [starts[i]], [exits[i], at[i]], name=f"stage_{i}") for i in range(len(at))]
    stages.append(submodel(model, [starts[-1]], [final], name=f"stage_{len(at)}"))
    return stages


def backbone(model):
    """The model without its exits: input to final output, the same layers and weights."""
    model = require_graph(tf_keras_model(model), "backbone")
    if is_quantized(model):
        return _requantized(backbone(_plain(model)), model)
    _, _, final = exit_points(model)
    return submodel(model, [model.inputs[0]._keras_history.layer.name], [final], name=f"{model.name}_backbone")


def _plain(model):
    """The float model under a QAT model, without the input QuantizeLayer's identity (`tfc.quantize`
    adds its own to every part); the model itself when it is not quantized."""
    from tfcompress.graph import Rewrite
    from tfcompress.quantization.objects import QuantizeLayer
    if not is_quantized(model):
        return model
    rewrite = Rewrite(float_model(model))
    for layer in model.layers:
        if isinstance(layer, QuantizeLayer):
            rewrite.remove(layer.name)
    return rewrite.apply()


def _requantized(part, qat, new_input=False):
    """`tfc.quantize(part)` holding the QAT model's trained weights and ranges, layer by layer (the names
    agree: `part` is a piece of `float_model(qat)`). With `new_input` the input's QuantizeLayer keeps its
    own range: a stage's input range is the previous stage's features range, set by `_align_qat`."""
    from tfcompress.quantization import quantize
    from tfcompress.quantization.objects import QuantizeLayer
    out = quantize(part)
    by_name = {l.name: l for l in qat.layers if not isinstance(l, QuantizeLayer)}
    source = next(l for l in qat.layers if isinstance(l, QuantizeLayer))
    for layer in out.layers:
        if not layer.weights or (new_input and isinstance(layer, QuantizeLayer)):
            continue
        src = source if isinstance(layer, QuantizeLayer) else by_name.get(layer.name)
        if src is None or [w.shape for w in src.weights] != [w.shape for w in layer.weights]:
            raise ConversionError(f"export_exits: the QAT model has no layer like {layer.name!r} of stage "
                                  f"{part.name!r}; quantize the model with tfc.quantize after tfc.add_exits")
        layer.set_weights(src.get_weights())
    return out


def _align_qat(stages, data):
    """Sets each later stage's input QuantizeLayer range to the quantization of the previous stage's
    `features` in the converted file `data` (so the int8 features pass on as they are); True if any
    changed."""
    from tfcompress.exits.runner import load_interpreter
    from tfcompress.quantization.objects import QuantizeLayer
    it = load_interpreter(data)
    changed = False
    for i, stage in enumerate(stages[1:], 1):
        scale, zero = it.get_signature_runner(f"stage_{i - 1}").get_output_details()["features"]["quantization"]
        layer = next(l for l in stage.layers if isinstance(l, QuantizeLayer))
        lo, hi = (-128 - zero) * scale, (127 - zero) * scale
        for v in layer.weights:
            target = lo if v.name.endswith("_min:0") else hi if v.name.endswith("_max:0") else None
            if target is not None and abs(float(v.numpy()) - target) > 1e-9 * max(1.0, abs(target)):
                v.assign(np.float32(target))
                changed = True
    return changed


def _functions(stages):
    fns = []
    for i, stage in enumerate(stages):
        spec = tf.TensorSpec([1] + list(stage.inputs[0].shape[1:]), tf.float32, name="x")
        last = i == len(stages) - 1

        def call(x, stage=stage, last=last):
            out = stage(x, training=False)
            return {"logits": out} if last else {"logits": out[0], "features": out[1]}
        call.__name__ = f"stage_{i}"   # from_concrete_functions names each signature after its function
        fn = tf.function(call, input_signature=[spec])
        fns.append(fn.get_concrete_function())
    return fns


def _representative(stages, data, samples):
    if data is None:
        raise InputError("int8 export_exits needs representative_data: a few hundred typical inputs")
    x = np.asarray(data, np.float32)[:samples]
    if len(x) == 0:
        raise InputError("representative_data is empty")
    inputs = [x]
    for stage in stages[:-1]:
        inputs.append(np.asarray(stage.predict(inputs[-1], batch_size=64, verbose=0)[1], np.float32))

    def gen():
        for n in range(len(x)):
            for i, xs in enumerate(inputs):
                yield (f"stage_{i}", {"x": xs[n:n + 1]})
    return gen


def _signature_tensors(model, key, side):
    """{name: (subgraph index, tensor index)} of a signature's inputs or outputs in a ModelT."""
    for sig in model.signatureDefs or []:
        name = sig.signatureKey.decode() if isinstance(sig.signatureKey, bytes) else sig.signatureKey
        if name == key:
            maps = sig.inputs if side == "inputs" else sig.outputs
            return {(m.name.decode() if isinstance(m.name, bytes) else m.name): (sig.subgraphIndex, m.tensorIndex)
                    for m in maps}
    raise ConversionError(f"the converted file has no signature {key!r}")


def align_boundaries(calibrated, n_stages):
    """Sets each stage's recorded input range to the range of the previous stage's `features` output.

    Returns:
      The calibrated flatbuffer bytes, changed.
    """
    from tfcompress import relu6
    import flatbuffers
    schema = relu6._schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(calibrated, 0))
    for i in range(1, n_stages):
        gi, ti = _signature_tensors(model, f"stage_{i - 1}", "outputs")["features"]
        gj, tj = _signature_tensors(model, f"stage_{i}", "inputs")["x"]
        src, dst = model.subgraphs[gi].tensors[ti].quantization, model.subgraphs[gj].tensors[tj]
        if src is None or src.min is None or src.max is None:
            raise ConversionError(f"stage_{i - 1}: no calibrated range for its features output")
        if dst.quantization is None:
            dst.quantization = schema.QuantizationParametersT()
        dst.quantization.min = np.array(src.min, np.float32)
        dst.quantization.max = np.array(src.max, np.float32)
    builder = flatbuffers.Builder(len(calibrated) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _convert(stages, mode, representative_data, samples, pin, qat=False):
    from tfcompress import relu6
    from tfcompress.exporting import _captured_output, _read_log
    fns = _functions(stages)
    holder = tf.Module()
    holder.stages = stages
    conv = tf.lite.TFLiteConverter.from_concrete_functions(fns, holder)
    names = []
    with _captured_output() as log:
        try:
            if mode == "float32":
                return bytes(conv.convert()), names
            if qat:     # the learned ranges are the int8 parameters: no calibration, ReLU6 fixed by the scheme
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.inference_input_type = conv.inference_output_type = tf.int8
                return bytes(conv.convert()), names
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = _representative(stages, representative_data, samples)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
            calibrated = relu6.calibrate(conv)
            if pin:
                calibrated, names = relu6.pin(calibrated)
            calibrated = align_boundaries(calibrated, len(stages))
            return relu6.quantize(calibrated, tf.int8, tf.int8), names
        except (ConversionError, InputError):
            raise
        except Exception as e:
            first = next((l.strip() for l in str(e).splitlines() if l.strip()), type(e).__name__)
            tail = _read_log(log).strip().splitlines()[-1:] or [""]
            raise ConversionError(f"export_exits {mode} conversion failed: {first[:300]} {tail[0][:200]}") from None


def export_exits(model, path, mode="int8", representative_data=None, samples=256, relu6_fixed_range=True):
    """Writes a model with early exits as one .tflite file with a signature per stage.

    Example:

    ```python
    report = tfc.export_exits(ee, "exits.tflite", representative_data=x_train[:256])
    runner = tfcompress.exits.Runner("exits.tflite", policy)
    ```

    Args:
      model: a model from `tfc.add_exits` (or a copy of one: exits are found by their names), or
        `tfc.quantize` of one (QAT: int8 from its learned ranges, no representative data needed).
      path: the output `.tflite` path; written atomically.
      mode: `int8` (full integer, ReLU6 pinned) or `float32`. Defaults to `int8`.
      representative_data: model inputs to calibrate on (int8, not QAT). Defaults to `None`.
      samples: how many of them to use. Defaults to `256`.
      relu6_fixed_range: pin ReLU6 outputs to [0, 6] (int8). Defaults to `True`.

    Returns:
      An `ExportReport` of the file (ops, float ops, dtypes, ReLU6 scales); `notes` list the signatures.

    Raises:
      InputError: bad mode, missing data, a model without exits, or an exit whose stage a connection
        crosses.
      ConversionError: the converter failed, or an int8 stage is not integer-only.
    """
    from tfcompress.exporting import describe
    from tfcompress.stripping import strip
    if mode not in MODES:
        raise InputError(f"export_exits mode must be one of {', '.join(MODES)}. Got: {mode!r}")
    path = check_output(path)
    model = strip(require_graph(tf_keras_model(model), "export_exits"))
    qat = mode == "int8" and is_quantized(model)
    stages = stage_models(model if qat else _plain(model))
    pin = mode == "int8" and relu6_fixed_range and not qat
    data, names = _convert(stages, mode, representative_data, samples, pin, qat)
    if qat and _align_qat(stages, data):     # a second pass with the stages' input ranges set
        data, names = _convert(stages, mode, representative_data, samples, pin, qat)
    report = describe(path, mode, data, pinned_names=names if pin else None)
    if mode == "int8" and report.float_ops:
        raise ConversionError(f"int8 export_exits is not integer-only: {', '.join(report.float_ops)}")
    write_bytes(path, data)
    report.relu6_fixed_range = pin or qat     # QAT: the scheme fixes ReLU6 at [0, 6]
    report.notes.extend(_signature_notes(data))
    return report


def _signature_notes(data):
    from tfcompress.exits.runner import load_interpreter
    it = load_interpreter(data)
    notes = []
    for key in sorted(it.get_signature_list(), key=lambda k: int(k.rsplit("_", 1)[1])):
        runner = it.get_signature_runner(key)
        ins = {n: (str(np.dtype(d["dtype"])), tuple(int(s) for s in d["shape"]))
               for n, d in runner.get_input_details().items()}
        outs = {n: (str(np.dtype(d["dtype"])), tuple(int(s) for s in d["shape"]))
                for n, d in runner.get_output_details().items()}
        notes.append(f"signature {key}: inputs {ins}, outputs {outs}")
    return notes
