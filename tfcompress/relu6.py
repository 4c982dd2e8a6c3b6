"""ReLU6 range pinning for full-int8 export: the one module that uses TFLite converter internals.

The converter calibrates every activation range from data, ReLU6 outputs included, so a ReLU6 whose
calibration samples peak at 0.4 gets scale 0.4/255 and saturates on real inputs above that. A ReLU6
output is [0, 6] by construction; pinning it gives scale 6/255 and zero point -128 on every device.

Route (TF 2.21): run the converter's calibration alone (`_experimental_calibrate_only`), set the
recorded min/max of every ReLU6 output tensor in the calibrated flatbuffer to [0, 6], then quantize it
with `tensorflow.lite.python.convert.mlir_quantize` as the converter itself would. Private APIs move
between TF releases; anything missing here becomes a ConversionError that says how to export without
pinning.
"""
import numpy as np

from tfcompress._tf import tf
from tfcompress.errors import ConversionError

RELU6_RANGE = (0.0, 6.0)
_BROKEN = ("ReLU6 pinning relies on TFLite converter internals that this TensorFlow ({version}) does not have "
           "({what}); export with relu6_fixed_range=False (--no-relu6-pin) or use TensorFlow 2.21")


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - ai_edge_litert is a dependency
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def calibrate(converter):
    """Runs the converter's calibration only; returns the float flatbuffer with recorded min/max."""
    if not hasattr(converter, "_experimental_calibrate_only"):
        raise ConversionError(_BROKEN.format(version=tf.__version__, what="_experimental_calibrate_only"))
    converter._experimental_calibrate_only = True
    try:
        return bytes(converter.convert())
    finally:
        converter._experimental_calibrate_only = False


def _op_name(model, op):
    schema = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    c = max(code.builtinCode, code.deprecatedBuiltinCode)
    return next(k for k, v in vars(schema.BuiltinOperator).items() if v == c and not k.startswith("_"))


def _constant(model, graph, index):
    t = graph.tensors[index]
    buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
    if buf is None or buf.data is None or len(buf.data) == 0 or t.type != _schema().TensorType.FLOAT32:
        return None
    return np.frombuffer(bytes(bytearray(buf.data)), dtype=np.float32)


def relu6_tensors(model):
    """(subgraph index, tensor index) of every ReLU6 output in a flatbuffer model object (ModelT):
    RELU6 ops, ops with a fused RELU6 activation, and min(max(x, 0), 6) / min(relu(x), 6) chains."""
    schema = _schema()
    found = []
    for gi, graph in enumerate(model.subgraphs):
        producer = {o: op for op in graph.operators for o in op.outputs}
        for op in graph.operators:
            name = _op_name(model, op)
            opts = op.builtinOptions
            fused = getattr(opts, "fusedActivationFunction", None) if opts is not None else None
            if name == "RELU6" or fused == schema.ActivationFunctionType.RELU6:
                found.append((gi, op.outputs[0]))
            elif name == "MINIMUM" and _clips(model, graph, op, producer, 6.0, ("RELU", "MAXIMUM")):
                found.append((gi, op.outputs[0]))
            elif name == "MAXIMUM" and _clips(model, graph, op, producer, 0.0, ("MINIMUM",)):
                found.append((gi, op.outputs[0]))
    return found


def _clips(model, graph, op, producer, bound, inner_names):
    """True when `op` compares with the constant `bound` and its other input comes from the other half
    of a [0, 6] clip."""
    consts = [i for i in op.inputs if _constant(model, graph, i) is not None]
    others = [i for i in op.inputs if i not in consts]
    if len(consts) != 1 or len(others) != 1:
        return False
    c = _constant(model, graph, consts[0])
    if c.size != 1 or float(c[0]) != bound:
        return False
    inner = producer.get(others[0])
    if inner is None:
        return False
    inner_name = _op_name(model, inner)
    if inner_name not in inner_names:
        return False
    if inner_name == "RELU":
        return True
    other_bound = 0.0 if bound == 6.0 else 6.0
    inner_consts = [i for i in inner.inputs if _constant(model, graph, i) is not None]
    return len(inner_consts) == 1 and float(_constant(model, graph, inner_consts[0])[0]) == other_bound


def pin(calibrated, low=RELU6_RANGE[0], high=RELU6_RANGE[1]):
    """Sets the recorded range of every ReLU6 output to [low, high]. Returns (bytes, tensor names)."""
    schema = _schema()
    import flatbuffers
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(calibrated, 0))
    names = []
    for gi, ti in relu6_tensors(model):
        t = model.subgraphs[gi].tensors[ti]
        if t.quantization is None:
            t.quantization = schema.QuantizationParametersT()
        t.quantization.min = np.array([low], dtype=np.float32)
        t.quantization.max = np.array([high], dtype=np.float32)
        names.append(t.name.decode() if isinstance(t.name, bytes) else t.name)
    builder = flatbuffers.Builder(len(calibrated) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), names


def quantize(calibrated, input_type, output_type, disable_per_channel=False):
    """Quantizes a calibrated flatbuffer to full int8 the way TFLiteConverter does after calibration."""
    try:
        from tensorflow.lite.python.convert import deduplicate_readonly_buffers, mlir_quantize
    except ImportError as e:
        raise ConversionError(_BROKEN.format(version=tf.__version__, what=str(e))) from None
    try:
        out = mlir_quantize(calibrated, disable_per_channel, input_data_type=input_type,
                            output_data_type=output_type)
    except TypeError as e:
        raise ConversionError(_BROKEN.format(version=tf.__version__, what=f"mlir_quantize: {e}")) from None
    try:
        out = deduplicate_readonly_buffers(out)
    except Exception:  # an optimisation only; the file is valid without it
        pass
    return bytes(out)
