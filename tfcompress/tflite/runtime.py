"""Run a .tflite file on the host with whichever runtime is installed, float data in and out.

Runtime order: LiteRT (`ai_edge_litert.interpreter`), then `tflite_runtime.interpreter`, then
`tensorflow.lite` (TensorFlow is imported only in that last case). Inputs are quantized with the
model input's scale and zero point, outputs dequantized, so callers always see float32.

`run(path, x)` gives float32 outputs whatever the file's input/output types; for per-layer error
reports, `Interpreter(path, preserve_all_tensors=True)`, `invoke_float([x])`, then `get_tensor(i)`
returns any intermediate tensor dequantized.
"""
import importlib
import os

import numpy as np

from tfcompress.errors import InputError

_BACKENDS = (("ai_edge_litert", "ai_edge_litert.interpreter"),
             ("tflite_runtime", "tflite_runtime.interpreter"),
             ("tensorflow", None))
_backend = None


def _load():
    global _backend
    if _backend is None:
        for name, module in _BACKENDS:
            try:
                if module is None:
                    from tfcompress._tf import tf
                    mod = tf.lite
                else:
                    mod = importlib.import_module(module)
                _backend = (name, mod)
                break
            except ImportError:
                continue
        else:
            raise InputError("no TFLite runtime installed; pip install ai-edge-litert")
    return _backend


def runtime_name():
    """'ai_edge_litert', 'tflite_runtime' or 'tensorflow': the runtime `Interpreter` uses."""
    return _load()[0]


def quantize(x, detail):
    """Float data -> the input's stored type, with its scale and zero point (or a plain cast)."""
    dtype = np.dtype(detail["dtype"])
    scale, zp = detail.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        q = np.round(np.asarray(x, np.float64) / scale + zp)
        return np.clip(q, info.min, info.max).astype(dtype)
    return np.asarray(x).astype(dtype)


def dequantize(q, detail):
    """A tensor as stored -> float32, per channel when the tensor has per-channel parameters."""
    q = np.asarray(q)
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), np.float64)
    zps = np.asarray(params.get("zero_points", []), np.float64)
    if not np.issubdtype(q.dtype, np.integer) or scales.size == 0:
        scale, zp = detail.get("quantization", (0.0, 0))
        if np.issubdtype(q.dtype, np.integer) and scale:
            return ((q.astype(np.float64) - zp) * scale).astype(np.float32)
        return q.astype(np.float32)
    if scales.size > 1 and q.ndim:
        shape = [1] * q.ndim
        shape[params.get("quantized_dimension", 0)] = scales.size
        scales, zps = scales.reshape(shape), zps.reshape(shape)
    else:
        scales, zps = scales.reshape(-1)[0], (zps.reshape(-1)[0] if zps.size else 0.0)
    return ((q.astype(np.float64) - zps) * scales).astype(np.float32)


class Interpreter:
    """A TFLite interpreter with float-in / float-out helpers.

    Args:
        path_or_bytes: a .tflite path or its bytes.
        num_threads: threads for the kernels. Defaults to `1`.
        use_xnnpack: apply the default XNNPACK delegate. Defaults to `True`; forced off when
            `preserve_all_tensors` is set, since a delegate hides the intermediates it fuses.
        preserve_all_tensors: keep every intermediate tensor readable after `invoke`. Defaults to `False`.

    Raises:
        InputError: the file is missing or the runtime cannot load it.
    """

    def __init__(self, path_or_bytes, num_threads=1, use_xnnpack=True, preserve_all_tensors=False):
        name, mod = _load()
        kwargs = {"num_threads": num_threads}
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            kwargs["model_content"] = bytes(path_or_bytes)
            self.path = None
        else:
            self.path = os.fspath(path_or_bytes)
            if not os.path.isfile(self.path):
                raise InputError(f"no such file: {self.path}")
            kwargs["model_path"] = self.path
        if preserve_all_tensors:
            kwargs["experimental_preserve_all_tensors"] = True
            use_xnnpack = False
        if not use_xnnpack:
            kwargs["experimental_op_resolver_type"] = mod.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES \
                if name == "tensorflow" else mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self._it = mod.Interpreter(**kwargs)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise InputError(f"cannot load {self.path or 'the model'}: {str(e).splitlines()[0]}") from None
        self.runtime = name
        self._details = None
        self.preserve_all_tensors = preserve_all_tensors

    @property
    def interpreter(self):
        """The runtime's own interpreter object."""
        return self._it

    def input_details(self):
        return self._it.get_input_details()

    def output_details(self):
        return self._it.get_output_details()

    def tensor_details(self):
        return self._it.get_tensor_details()

    def get_tensor(self, index, dequantize_=True):
        """Tensor `index` after the last invoke, dequantized to float32 unless `dequantize_=False`."""
        if self._details is None:
            self._details = {d["index"]: d for d in self._it.get_tensor_details()}
        detail = self._details.get(index)
        if detail is None:
            raise KeyError(f"no tensor {index}")
        value = self._it.get_tensor(index)
        return dequantize(value, detail) if dequantize_ else value

    def resize(self, batch):
        """Sets the batch dimension of every input; returns False when the model cannot take it."""
        details = self._it.get_input_details()
        if all(d["shape"][0] == batch for d in details if len(d["shape"])):
            return True
        if any(not len(d["shape"]) or d.get("shape_signature", d["shape"])[0] != -1 for d in details):
            return False  # batch fixed in the graph: resizing could give silently wrong shapes
        try:
            for d in details:
                self._it.resize_tensor_input(d["index"], [batch] + list(d["shape"][1:]))
            self._it.allocate_tensors()
            return True
        except (ValueError, RuntimeError):
            return False

    def invoke_float(self, xs):
        """Runs one batch: float inputs (a list, one per model input) -> float32 outputs (a list)."""
        ins = self._it.get_input_details()
        if len(xs) != len(ins):
            raise InputError(f"the model has {len(ins)} inputs; got {len(xs)} arrays")
        for d, x in zip(ins, xs):
            self._it.set_tensor(d["index"], quantize(x, d))
        self._it.invoke()
        return [dequantize(self._it.get_tensor(d["index"]), d) for d in self._it.get_output_details()]


def run(model, x, batch=None, num_threads=1, use_xnnpack=True):
    """Runs a .tflite model over float data; returns float32 outputs.

    Inputs of type float32, float16, int8, uint8 or int16 are quantized with the input's scale and zero
    point; outputs are dequantized. When the batch dimension is dynamic in the file (shape signature
    -1), the data runs in chunks of `batch` rows; when it is fixed at 1, sample by sample.

    Args:
        model: a path, the file's bytes or an `Interpreter`.
        x: an array (one input; a list of samples is taken as one array) or a list of arrays (one per
            input), first axis the samples.
        batch: rows per invoke when the batch dimension can be resized. Defaults to `None` (64).
        num_threads, use_xnnpack: passed to `Interpreter` when `model` is not one.

    Returns:
        One float32 array when the model has one output, else a list of them.
    """
    it = model if isinstance(model, Interpreter) else Interpreter(model, num_threads, use_xnnpack)
    details = it.input_details()
    if len(details) > 1 or (isinstance(x, (list, tuple)) and len(x) == 1
                            and np.ndim(x[0]) == len(details[0]["shape"])):
        xs = [np.asarray(a) for a in x]
    else:
        xs = [np.asarray(x)]   # one input: a list of samples is an array too
    n = len(xs[0])
    if any(len(a) != n for a in xs):
        raise InputError("all inputs must have the same number of samples")
    chunk = batch or 64
    if n == 0:
        return []
    if not it.resize(min(chunk, n)):
        fixed = it.input_details()[0]["shape"][0] if len(it.input_details()[0]["shape"]) else 1
        chunk = fixed
    outs = []
    for start in range(0, n, chunk):
        part = [a[start:start + chunk] for a in xs]
        rows = len(part[0])
        if rows != chunk and not it.resize(rows):
            pad = chunk - rows  # fixed batch larger than the tail: pad and drop
            part = [np.concatenate([p, np.repeat(p[-1:], pad, axis=0)]) for p in part]
        outs.append([o[:rows] for o in it.invoke_float(part)])
    result = [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]
    return result[0] if len(result) == 1 else result
