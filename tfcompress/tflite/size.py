"""How small a .tflite file gets: raw, gzip -9, and the Deep Compression coding of its weights.

The coding (Han et al. 2016, see `tfcompress.tflite.pack`) is real: `write_pack` writes it as a
`.tfcz` file and `unpack_file` restores the .tflite byte for byte.

Weights are the constant tensors with 2 or more dims (conv, depthwise and dense kernels, embeddings) or
with 1024 or more values; biases and small constants stay in the zlib'd remainder. The ratio is the
one the paper reports: float32 bytes of the weights (elements x 4) over their coded bytes, codebooks,
code-length tables and per-tensor headers included.

`size_report(path)` is `tfcompress.size_report`; `format_table(report)` prints it, `report.to_dict()`
is what `tfcompress size --json` writes.
"""
import dataclasses
import gzip
import os

from tfcompress.errors import InputError
from tfcompress.fileio import write_bytes
from tfcompress.tflite import pack as _pack
from tfcompress.tflite import reader


@dataclasses.dataclass
class SizeReport:
    """Sizes of one .tflite file, in bytes. `tensors` holds one `pack.TensorCoding` per weight buffer."""
    path: str | None
    file_bytes: int
    gzip_bytes: int
    weight_bytes: int          # weights as stored in the file
    float32_bytes: int         # the same weights as float32: elements x 4
    coded_bytes: int           # Deep Compression coding of the weights, everything included
    index_bytes: int
    value_bytes: int
    codebook_bytes: int
    other_bytes: int           # the rest of the file (flatbuffer, biases, small tensors)
    other_zlib_bytes: int
    pack_bytes: int            # the whole .tfcz file: header + coded weights + zlib'd rest
    tensors: list

    @property
    def ratio(self):
        """float32 weight bytes / coded weight bytes (Deep Compression's "compression rate")."""
        return self.float32_bytes / self.coded_bytes if self.coded_bytes else None

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tensors"}
        d["ratio"] = None if self.ratio is None else round(self.ratio, 3)
        d["stored_ratio"] = round(self.weight_bytes / self.coded_bytes, 3) if self.coded_bytes else None
        d["gzip_ratio"] = round(self.file_bytes / self.gzip_bytes, 3) if self.gzip_bytes else None
        d["pack_ratio"] = round(self.file_bytes / self.pack_bytes, 3) if self.pack_bytes else None
        d["tensors"] = [t.to_dict() for t in self.tensors]
        return d


def _report(path, data):
    model = reader.read(data, name=path)
    model.path = path
    blob, codings, rest = _pack.build(model)
    weight = sum(t.stored_bytes for t in codings)
    report = SizeReport(
        path=path, file_bytes=len(data), gzip_bytes=len(gzip.compress(data, 9, mtime=0)),
        weight_bytes=weight, float32_bytes=sum(t.float32_bytes for t in codings),
        coded_bytes=sum(t.coded_bytes for t in codings), index_bytes=sum(t.index_bytes for t in codings),
        value_bytes=sum(t.value_bytes for t in codings), codebook_bytes=sum(t.codebook_bytes for t in codings),
        other_bytes=len(data) - weight, other_zlib_bytes=rest, pack_bytes=len(blob), tensors=codings)
    return report, blob


def _read(path_or_bytes):
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return None, bytes(path_or_bytes)
    path, data = reader._bytes_of(path_or_bytes)
    return path, data


def size_report(path):
    """File, gzip -9 and Deep-Compression coded sizes of a .tflite file (a path or its bytes).

    Raises:
        InputError: the file is missing or not a valid .tflite file.
    """
    path, data = _read(path)
    reader.check_identifier(data, path or "input")
    return _report(path, data)[0]


def write_pack(src, dst):
    """Codes the .tflite file `src` into the `.tfcz` file `dst` (atomic; never over `src`).

    Returns:
        The `SizeReport` of `src`.
    """
    path, data = _read(src)
    reader.check_identifier(data, path or "input")
    report, blob = _report(path, data)
    write_bytes(dst, blob, inputs=(path,) if path else ())
    return report


def unpack_file(src, dst):
    """Restores the .tflite file packed in `src` into `dst` (verified against the stored SHA-256)."""
    src = os.fspath(src)
    if not os.path.isfile(src):
        raise InputError(f"no such file: {src}")
    with open(src, "rb") as f:
        data = _pack.unpack(f.read(), what=src)
    write_bytes(dst, data, inputs=(src,))
    return dst


@dataclasses.dataclass
class ClusterCount:
    """Distinct stored values of one weight tensor: in the whole tensor and the most in one channel.

    The channel axis is the tensor's quantized dimension when it is quantized per channel, else axis 0
    (TFLite stores conv and fully connected kernels output channel first).
    """
    name: str
    shape: list
    axis: int
    per_tensor: int
    per_channel: int

    def to_dict(self):
        return dataclasses.asdict(self)


def cluster_counts(path):
    """`ClusterCount` of every weight tensor of a .tflite file (a path or its bytes): how many shared
    values clustering left in it.

    Raises:
        InputError: the file is missing or not a valid .tflite file.
    """
    import numpy as np
    path, data = _read(path)
    reader.check_identifier(data, path or "input")
    out = []
    for t in reader.weight_tensors(reader.read(data, name=path)):
        q = t.data()
        if q is None:
            continue
        axis = t.quantized_dimension if t.is_quantized and len(t.scale) > 1 else 0
        q = np.moveaxis(q, axis, 0).reshape(q.shape[axis], -1) if q.ndim else q.reshape(1, 1)
        per_channel = max(int(np.unique(row).size) for row in q) if q.size else 0
        out.append(ClusterCount(name=t.name, shape=list(t.shape), axis=int(axis),
                                per_tensor=int(np.unique(q).size), per_channel=per_channel))
    return out


def check_clusters(path, clusters):
    """Raises `InputError` naming the first weight tensor with more than `clusters` distinct values in a
    channel; returns the counts otherwise."""
    if isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 1:
        raise InputError(f"clusters must be a positive integer. Got: {clusters!r}")
    counts = cluster_counts(path)
    over = [c for c in counts if c.per_channel > clusters]
    if over:
        c = over[0]
        raise InputError(f"{path or 'input'}: tensor {c.name!r} holds {c.per_channel} distinct values in one "
                         f"channel, more than {clusters}" + (f" ({len(over) - 1} more tensors too)" if len(over) > 1
                                                                else ""))
    return counts


def _kb(n):
    return f"{n:,}"


def format_table(report):
    """A plain-text size report for people."""
    r = report
    lines = [f"{r.path or '<bytes>'}",
             f"  file            {_kb(r.file_bytes):>12} bytes",
             f"  gzip -9         {_kb(r.gzip_bytes):>12} bytes  ({r.file_bytes / r.gzip_bytes:.2f}x)",
             f"  .tfcz pack      {_kb(r.pack_bytes):>12} bytes  ({r.file_bytes / r.pack_bytes:.2f}x)"
             f"  = coded weights {_kb(r.coded_bytes)} + rest (zlib) {_kb(r.other_zlib_bytes)} + header"]
    if not r.tensors:
        lines.append("  no weight tensors (constants with >= 2 dims or >= 1024 values)")
        return "\n".join(lines)
    lines += ["",
              f"weights: {len(r.tensors)} tensors, stored {_kb(r.weight_bytes)} bytes, as float32 "
              f"{_kb(r.float32_bytes)} bytes, coded {_kb(r.coded_bytes)} bytes "
              f"(index {_kb(r.index_bytes)}, values {_kb(r.value_bytes)}, codebooks+tables {_kb(r.codebook_bytes)})"
              f" -> {r.ratio:.1f}x smaller than float32"]
    names = [_short(t.name) for t in r.tensors]
    width = min(40, max(len(n) for n in names))
    lines.append(f"  {'tensor':{width}} {'dtype':7} {'elements':>9} {'zeros':>6} {'idx':>4} {'values':>10} "
                 f"{'stored':>9} {'index':>8} {'vals':>8} {'books':>6} {'coded':>9} {'vs f32':>7}")
    for t, name in zip(r.tensors, names):
        name = name if len(name) <= width else "…" + name[-(width - 1):]
        values = "raw" if t.stored_raw else (f"cb{t.codebook_size}" if t.values == "codebook" else "raw vals")
        idx = "-" if t.stored_raw or not t.index_bits else f"{t.index_bits}b"
        zeros = 100 * (1 - t.nonzero / t.elements) if t.elements else 0.0
        lines.append(f"  {name:{width}} {t.dtype:7} {t.elements:>9,} {zeros:5.1f}% {idx:>4} {values:>10} "
                     f"{t.stored_bytes:>9,} {t.index_bytes:>8,} {t.value_bytes:>8,} {t.codebook_bytes:>6,} "
                     f"{t.coded_bytes:>9,} {t.float32_bytes / t.coded_bytes:6.1f}x")
    return "\n".join(lines)


def _short(name):
    """The converter names a fused weight 'model/layer/MatMul;model/layer/.../FakeQuant...': keep the first
    part, the one that names the layer."""
    return name.split(";")[0] or name
