"""Parsing a .tflite flatbuffer into dataclasses: `Model`, `Subgraph`, `Operator`, `Tensor`, `Buffer`.

Reads the file with the flatbuffer schema only (numpy + flatbuffers, no TensorFlow), so it works on a
board that has just a LiteRT runtime. Buffers stored outside the flatbuffer (files over 2 GB, where
`Buffer.offset`/`Buffer.size` point into the file) are read from the file as well.

`read(path)` gives a `Model`. `tfcompress.tflite.reader` re-exports everything here together with the
questions asked of a model (`op_counts`, `float_ops`, ...) and the `inspect` report; import from there.
"""
import dataclasses
import importlib
import os
import struct

import numpy as np

from tfcompress.errors import InputError

_SCHEMAS = ("ai_edge_litert.schema_py_generated", "tflite_runtime.schema_py_generated",
            "tensorflow.lite.python.schema_py_generated")


def _load_schema():
    for name in _SCHEMAS:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("no TFLite flatbuffer schema found; install ai-edge-litert (pip install ai-edge-litert)")


schema = _load_schema()

IDENTIFIER = b"TFL3"
CUSTOM = schema.BuiltinOperator.CUSTOM
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
# numpy dtypes (little-endian, as stored); types without one (string, int4, bfloat16...) have no array view
_NUMPY = {"float32": "<f4", "float16": "<f2", "float64": "<f8", "int8": "i1", "uint8": "u1",
          "int16": "<i2", "uint16": "<u2", "int32": "<i4", "uint32": "<u4", "int64": "<i8",
          "uint64": "<u8", "bool": "?", "complex64": "<c8", "complex128": "<c16"}
FLOAT_TYPES = ("float32", "float16", "float64", "bfloat16")


@dataclasses.dataclass
class Tensor:
    """One tensor of a subgraph. `data()` reads its constant bytes (None for activations)."""
    subgraph: int
    index: int
    name: str
    dtype: str
    shape: tuple
    shape_signature: tuple            # -1 marks a dynamic dimension; equals `shape` when the file has none
    scale: np.ndarray | None          # None when the tensor has no quantization parameters
    zero_point: np.ndarray | None
    quantized_dimension: int
    buffer: int
    is_constant: bool                 # has data in its buffer
    nbytes: int                       # bytes of data in the file (0 for activations)
    data_offset: int | None           # where the data starts in the file
    is_sparse: bool = False           # TFLite sparse format: the buffer holds only the kept values
    is_variable: bool = False
    _model: "Model" = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def size(self):
        return int(np.prod(self.shape)) if len(self.shape) else 1

    @property
    def is_quantized(self):
        return self.scale is not None and len(self.scale) > 0

    def raw(self):
        """The stored bytes of a constant tensor (b"" for activations)."""
        if not self.is_constant:
            return b""
        return self._model.data[self.data_offset:self.data_offset + self.nbytes]

    def data(self):
        """The stored values as a numpy array of `shape` (None for activations and unviewable types)."""
        if not self.is_constant or self.dtype not in _NUMPY or self.is_sparse:
            return None
        dt = np.dtype(_NUMPY[self.dtype])
        if self.nbytes != self.size * dt.itemsize:
            return None
        arr = np.frombuffer(self._model.data, dtype=dt, count=self.size, offset=self.data_offset)
        return arr.reshape(self.shape)

    def dequantized(self):
        """Constant values as float32 (scale and zero point applied per channel when quantized)."""
        q = self.data()
        if q is None:
            return None
        if not self.is_quantized or self.dtype in FLOAT_TYPES:
            return q.astype(np.float32)
        scale, zp = self._broadcast(self.scale), self._broadcast(self.zero_point)
        return ((q.astype(np.float64) - zp) * scale).astype(np.float32)

    def _broadcast(self, values):
        values = np.asarray(values)
        if values.size <= 1 or len(self.shape) == 0:
            return values.reshape(()) if values.size else np.zeros(())
        shape = [1] * len(self.shape)
        shape[self.quantized_dimension] = values.size
        return values.reshape(shape)

    @property
    def zero_fraction(self):
        """Fraction of stored values that mean exactly 0.0 (q == zero_point; for floats value == 0)."""
        q = self.data()
        if q is None or q.size == 0:
            return None
        if self.dtype in FLOAT_TYPES or not self.is_quantized:
            return float(np.count_nonzero(q == 0) / q.size)
        return float(np.count_nonzero(q == self._broadcast(self.zero_point)) / q.size)


@dataclasses.dataclass
class Operator:
    subgraph: int
    index: int
    op: str                 # BuiltinOperator name, or the custom code of a custom op
    opcode_index: int
    builtin_code: int
    inputs: tuple           # tensor indices; -1 marks an omitted optional input
    outputs: tuple
    is_custom: bool = False


@dataclasses.dataclass
class Subgraph:
    index: int
    name: str
    tensors: list
    operators: list
    inputs: tuple
    outputs: tuple


@dataclasses.dataclass
class Buffer:
    index: int
    offset: int | None      # absolute position of the data in the file, None when empty
    size: int
    external: bool          # stored outside the flatbuffer (Buffer.offset/size)


@dataclasses.dataclass
class Model:
    """Facts of one .tflite file. `data` is the whole file."""
    path: str | None
    data: bytes = dataclasses.field(repr=False)
    version: int
    description: str
    subgraphs: list
    buffers: list
    signature_keys: list

    @property
    def file_size(self):
        return len(self.data)

    @property
    def main(self):
        return self.subgraphs[0]

    @property
    def inputs(self):
        return [self.main.tensors[i] for i in self.main.inputs]

    @property
    def outputs(self):
        return [self.main.tensors[i] for i in self.main.outputs]

    @property
    def input_dtypes(self):
        return [t.dtype for t in self.inputs]

    @property
    def output_dtypes(self):
        return [t.dtype for t in self.outputs]

    def tensors(self):
        """Every tensor of every subgraph."""
        return [t for sg in self.subgraphs for t in sg.tensors]

    def operators(self):
        return [op for sg in self.subgraphs for op in sg.operators]


def _bytes_of(path_or_bytes):
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return None, bytes(path_or_bytes)
    path = os.fspath(path_or_bytes)
    if not os.path.exists(path):
        raise InputError(f"no such file: {path}")
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder, not a .tflite file")
    try:
        with open(path, "rb") as f:
            return path, f.read()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None


def check_identifier(data, what="input"):
    """Raises InputError unless `data` starts like a TFLite flatbuffer (identifier TFL3 at bytes 4..8)."""
    if len(data) == 0:
        raise InputError(f"{what} is empty (0 bytes), not a .tflite file")
    if len(data) < 16 or data[4:8] != IDENTIFIER:
        raise InputError(f"{what} is not a TFLite model (no 'TFL3' flatbuffer identifier at bytes 4..8)")


def read(path_or_bytes, name=None):
    """Parses a .tflite file (a path or its bytes) into a `Model`.

    Args:
        path_or_bytes: a path, or the file's bytes.
        name: what to call the input in error messages. Defaults to `None` (the path, or "input").

    Raises:
        InputError: the file is missing, empty, not a TFLite flatbuffer, truncated or corrupt.
    """
    path, data = _bytes_of(path_or_bytes)
    what = name or path or "input"
    check_identifier(data, what)
    try:
        return _parse(path, data)
    except InputError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError, OverflowError) as e:
        raise InputError(f"{what} is not a valid TFLite model: the flatbuffer is truncated or corrupt") from None


def _count(n, data, what):
    # a corrupt length could make us loop for ages; every element takes at least 4 bytes
    if n < 0 or n * 4 > len(data):
        raise ValueError(f"{what} count {n} does not fit the file")
    return n


def _ints(obj, name, data):
    n = _count(getattr(obj, name + "Length")(), data, name)
    if n == 0:
        return ()
    return tuple(int(v) for v in getattr(obj, name + "AsNumpy")())


def _text(b):
    return b.decode("utf-8") if b else ""


def _parse(path, data):
    m = schema.Model.GetRootAs(data, 0)
    buffers = []
    for i in range(_count(m.BuffersLength(), data, "buffers")):
        b = m.Buffers(i)
        off, size, external = None, 0, False
        n = b.DataLength()
        if n:
            o = b._tab.Offset(4)
            off, size = b._tab.Vector(o), n
        elif hasattr(b, "Offset") and b.Offset() > 1:
            off, size, external = int(b.Offset()), int(b.Size()), True
        if off is not None and (off < 0 or off + size > len(data)):
            raise ValueError(f"buffer {i} data beyond the end of the file")
        buffers.append(Buffer(i, off, size, external))

    codes = []
    for i in range(_count(m.OperatorCodesLength(), data, "operator codes")):
        oc = m.OperatorCodes(i)
        code = max(int(oc.DeprecatedBuiltinCode()), int(oc.BuiltinCode()))
        custom = _text(oc.CustomCode()) if code == CUSTOM else None
        codes.append((code, custom))

    model = Model(path=path, data=data, version=int(m.Version()), description=_text(m.Description()),
                  subgraphs=[], buffers=buffers, signature_keys=[])
    for s in range(_count(m.SubgraphsLength(), data, "subgraphs")):
        sg = m.Subgraphs(s)
        tensors = [_tensor(model, s, i, sg.Tensors(i), buffers, data)
                   for i in range(_count(sg.TensorsLength(), data, "tensors"))]
        ops = []
        for i in range(_count(sg.OperatorsLength(), data, "operators")):
            op = sg.Operators(i)
            idx = int(op.OpcodeIndex())
            code, custom = codes[idx]
            ins, outs = _ints(op, "Inputs", data), _ints(op, "Outputs", data)
            for t in ins + outs:
                if t >= len(tensors) or t < -1:
                    raise ValueError(f"operator {i} names tensor {t}")
            name = custom if custom is not None else _OP_NAMES.get(code, f"BUILTIN_{code}")
            ops.append(Operator(s, i, name, idx, code, ins, outs, custom is not None))
        ins, outs = _ints(sg, "Inputs", data), _ints(sg, "Outputs", data)
        for t in ins + outs:
            if not 0 <= t < len(tensors):
                raise ValueError(f"subgraph {s} input/output names tensor {t}")
        model.subgraphs.append(Subgraph(s, _text(sg.Name()), tensors, ops, ins, outs))
    if not model.subgraphs:
        raise ValueError("no subgraph")
    for i in range(_count(m.SignatureDefsLength(), data, "signatures")):
        model.signature_keys.append(_text(m.SignatureDefs(i).SignatureKey()))
    return model


def _tensor(model, s, i, t, buffers, data):
    q = t.Quantization()
    scale = zp = None
    qdim = 0
    if q is not None and q.ScaleLength():
        scale = q.ScaleAsNumpy().astype(np.float64)
        zp = (q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(len(scale), np.int64))
        qdim = int(q.QuantizedDimension())
    b = int(t.Buffer())
    if not 0 <= b < max(len(buffers), 1):
        raise ValueError(f"tensor {i} names buffer {b}")
    buf = buffers[b] if buffers else Buffer(0, None, 0, False)
    shape = _ints(t, "Shape", data)
    return Tensor(subgraph=s, index=i, name=_text(t.Name()), dtype=_TYPE_NAMES.get(t.Type(), f"type{t.Type()}"),
                  shape=shape, shape_signature=_ints(t, "ShapeSignature", data) or shape,
                  scale=scale, zero_point=zp, quantized_dimension=qdim, buffer=b,
                  is_constant=buf.size > 0, nbytes=buf.size, data_offset=buf.offset,
                  is_sparse=t.Sparsity() is not None, is_variable=bool(t.IsVariable()), _model=model)


def numpy_dtype(dtype_name):
    """The little-endian numpy dtype of a TFLite type name, or None (string, int4, bfloat16...)."""
    return np.dtype(_NUMPY[dtype_name]) if dtype_name in _NUMPY else None

