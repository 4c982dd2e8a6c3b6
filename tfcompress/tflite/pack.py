"""Deep Compression coding of a .tflite file's weights (Han et al. 2016), lossless, as a `.tfcz` pack.

Each weight tensor (see `reader.weight_tensors`) is coded on its stored bits, so the round trip is exact
for any dtype (float32 values included: the codebook holds their exact bit patterns):

* positions of the non-zero entries as relative indices of `bits` bits (a gap over 2^bits - 1 gets
  a filler entry holding zero, as in the paper), or `bits = 0`: every entry stored (dense);
* values as indices into the tensor's codebook of distinct stored values, or as raw values when a
  codebook cannot pay (too many distinct values);
* gap and codebook-index streams Huffman-coded (canonical; the code lengths are stored).

The smallest combination is chosen per tensor; a tensor whose coding would not be smaller than its
bytes is stored raw. Everything that is not a coded weight (the flatbuffer, biases, small tensors)
is kept byte for byte and zlib-compressed, so `unpack(pack(f)) == f`.

File layout (little-endian): header `TFCZ`, version, original size and SHA-256, payload size and
CRC32, then a CRC32 of the header; the payload lists (offset, length, coded blob) per weight buffer,
then the zlib'd remainder (the file with those byte ranges cut out).
"""
import dataclasses
import hashlib
import struct
import zlib

import numpy as np

from tfcompress.errors import InputError
from tfcompress.tflite import huffman, reader

MAGIC = b"TFCZ"
VERSION = 1
_HEADER = struct.Struct("<4sBBHQ32sQI")
_CRC = struct.Struct("<I")
_SEGMENT = struct.Struct("<QQQ")
_TENSOR = struct.Struct("<BBBQQI")     # itemsize, bits, value mode, elements, zero code, entries
MAX_BITS = 8                            # widest relative index tried
MAX_CODEBOOK = 4096                     # more distinct values than this: values stored raw
RAW, CODED = 0, 1
VALUES_CODEBOOK, VALUES_RAW = 0, 1


# ---- relative indices ------------------------------------------------------------------------------------

def relative_indices(positions, bits):
    """Positions (sorted, distinct) -> (gaps, filler mask) with every gap below 2^bits.

    A gap is the number of zeros skipped before an entry. A run of zeros longer than 2^bits - 1
    is bridged by filler entries (gap 2^bits - 1, value zero), each standing for 2^bits positions.

    >>> gaps, filler = relative_indices([2, 14], bits=3)
    >>> gaps.tolist(), filler.tolist()
    ([2, 7, 3], [False, True, False])
    >>> positions_of(gaps).tolist()
    [2, 10, 14]
    """
    positions = np.asarray(positions, np.int64)
    top = (1 << bits) - 1
    raw = np.diff(positions, prepend=-1) - 1
    fillers = raw // (top + 1)
    rest = raw - fillers * (top + 1)
    real = np.cumsum(fillers + 1) - 1
    total = int(real[-1]) + 1 if len(real) else 0
    gaps = np.full(total, top, np.int64)
    gaps[real] = rest
    is_filler = np.ones(total, bool)
    is_filler[real] = False
    return gaps, is_filler


def positions_of(gaps):
    """Inverse of `relative_indices`: the position of every entry, fillers included."""
    return np.cumsum(np.asarray(gaps, np.int64) + 1) - 1


# ---- one tensor ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TensorCoding:
    """How one weight buffer was coded and what each part costs, in bytes."""
    name: str
    dtype: str
    shape: list
    elements: int
    stored_bytes: int
    nonzero: int
    stored_raw: bool
    index_bits: int          # 0: dense (no index stream)
    values: str              # "codebook" or "raw"
    codebook_size: int
    fillers: int
    index_bytes: int         # Huffman-coded relative indices
    value_bytes: int         # Huffman-coded codebook indices, or raw values
    codebook_bytes: int      # codebook values + code-length tables + tensor header
    coded_bytes: int

    @property
    def float32_bytes(self):
        return self.elements * 4

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["float32_bytes"] = self.float32_bytes
        d["zero_fraction"] = round(1 - self.nonzero / self.elements, 6) if self.elements else 0.0
        d["ratio"] = round(self.float32_bytes / self.coded_bytes, 3) if self.coded_bytes else None
        return d


def _u(itemsize):
    return np.dtype(f"<u{itemsize}")


def _candidate(stats, bits):
    """Byte costs of one coding choice, from histograms only (nothing is coded here)."""
    n, itemsize, raw_gaps, nz_freqs, z_sym, codebook = stats
    head = 1 + _TENSOR.size
    c = {"bits": bits, "fillers": 0, "index_bytes": 0}
    if bits == 0:
        entries = n
        value_freqs = None if codebook is None else nz_freqs.copy()
        if value_freqs is not None:
            value_freqs[z_sym] += n - len(raw_gaps)
    else:
        span = 1 << bits
        fillers = raw_gaps >> bits
        c["fillers"] = nf = int(fillers.sum())
        gap_freqs = np.bincount(raw_gaps - (fillers << bits), minlength=span)
        gap_freqs[span - 1] += nf
        glen = huffman.code_lengths(gap_freqs)
        c["index_bytes"] = (huffman.coded_bits(gap_freqs, glen) + 7) // 8
        head += span + 4
        entries = len(raw_gaps) + nf
        value_freqs = None
        if codebook is not None:
            value_freqs = nz_freqs.copy()
            value_freqs[z_sym] += nf
    c["entries"] = entries
    options = [("raw", entries * itemsize, 0, None)]
    if value_freqs is not None:
        vlen = huffman.code_lengths(value_freqs)
        options.append(("codebook", (huffman.coded_bits(value_freqs, vlen) + 7) // 8,
                        4 + len(codebook) * (itemsize + 1) + 4, vlen))
    c["values"], c["value_bytes"], book, c["vlen"] = min(options, key=lambda o: o[1] + o[2])
    c["codebook_bytes"] = head + book
    c["total"] = c["index_bytes"] + c["value_bytes"] + head + book
    return c


def encode_tensor(raw, itemsize, zero_code=0):
    """Codes one buffer of `itemsize`-byte values; returns (blob, parts) with parts a dict of sizes."""
    u = np.frombuffer(raw, _u(itemsize))
    z = _u(itemsize).type(zero_code)
    positions = np.flatnonzero(u != z)
    raw_gaps = np.diff(positions, prepend=-1) - 1
    nz_values = u[positions]
    codebook = nz_freqs = nz_syms = z_sym = None
    distinct = np.unique(nz_values)
    if len(distinct) < MAX_CODEBOOK:
        codebook = np.union1d(distinct, [z]).astype(u.dtype)
        z_sym = int(np.searchsorted(codebook, z))
        nz_syms = np.searchsorted(codebook, nz_values)
        nz_freqs = np.bincount(nz_syms, minlength=len(codebook))
    stats = (len(u), itemsize, raw_gaps, nz_freqs, z_sym, codebook)
    best = min((_candidate(stats, b) for b in range(0, MAX_BITS + 1)), key=lambda c: c["total"])
    parts = {"nonzero": len(positions), "codebook_size": 0 if codebook is None else len(codebook)}
    if best["total"] >= len(raw) + 1:
        parts.update(stored_raw=True, index_bits=0, values="raw", fillers=0, index_bytes=0,
                     value_bytes=len(raw), codebook_bytes=1)
        return bytes([RAW]) + bytes(raw), parts
    bits = best["bits"]
    out = [bytes([CODED]), _TENSOR.pack(itemsize, bits, VALUES_CODEBOOK if best["values"] == "codebook"
                                        else VALUES_RAW, len(u), int(z), best["entries"])]
    if bits:
        gaps, is_filler = relative_indices(positions, bits)
        glen = huffman.code_lengths(np.bincount(gaps, minlength=1 << bits))
        data, _ = huffman.encode(gaps, glen)
        out += [glen.astype(np.uint8).tobytes(), _CRC.pack(len(data)), data]
    if best["values"] == "codebook":
        if bits:
            syms = np.full(len(gaps), z_sym, np.int64)
            syms[~is_filler] = nz_syms
        else:
            syms = np.searchsorted(codebook, u)
        data, _ = huffman.encode(syms, best["vlen"])
        out += [_CRC.pack(len(codebook)), codebook.tobytes(), best["vlen"].astype(np.uint8).tobytes(),
                _CRC.pack(len(data)), data]
    elif bits:
        entries = np.full(len(gaps), z, u.dtype)
        entries[~is_filler] = nz_values
        out.append(entries.tobytes())
    else:
        out.append(u.tobytes())
    blob = b"".join(out)
    parts.update(stored_raw=False, index_bits=bits, values=best["values"], fillers=best["fillers"],
                 index_bytes=best["index_bytes"], value_bytes=best["value_bytes"],
                 codebook_bytes=best["codebook_bytes"])
    if len(blob) != best["total"]:
        raise AssertionError(f"coded size {len(blob)} differs from the plan {best['total']}")
    return blob, parts


class _Reader:
    def __init__(self, blob):
        self.blob, self.pos = blob, 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.blob):
            raise ValueError("coded tensor is truncated")
        piece = self.blob[self.pos:self.pos + n]
        self.pos += n
        return piece

    def u32(self):
        return _CRC.unpack(self.take(4))[0]


def decode_tensor(blob):
    """Inverse of `encode_tensor`: the original bytes. Raises ValueError on a malformed blob."""
    r = _Reader(blob)
    mode = r.take(1)[0]
    if mode == RAW:
        return bytes(blob[1:])
    if mode != CODED:
        raise ValueError(f"unknown tensor coding {mode}")
    itemsize, bits, vmode, n, z, count = _TENSOR.unpack(r.take(_TENSOR.size))
    if itemsize not in (1, 2, 4, 8) or bits > 24 or count > max(n, 1) * 2 + 1:
        raise ValueError("bad coded tensor header")
    dt = _u(itemsize)
    if bits:
        glen = np.frombuffer(r.take(1 << bits), np.uint8)
        gaps = huffman.decode(r.take(r.u32()), glen, count)
        pos = positions_of(gaps)
    else:
        if count != n:
            raise ValueError("dense tensor entry count mismatch")
        pos = None
    if vmode == VALUES_CODEBOOK:
        k = r.u32()
        codebook = np.frombuffer(r.take(k * itemsize), dt)
        vlen = np.frombuffer(r.take(k), np.uint8)
        syms = huffman.decode(r.take(r.u32()), vlen, count)
        if count and syms.max() >= k:
            raise ValueError("codebook index out of range")
        values = codebook[syms]
    elif vmode == VALUES_RAW:
        values = np.frombuffer(r.take(count * itemsize), dt)
    else:
        raise ValueError(f"unknown value coding {vmode}")
    if r.pos != len(blob):
        raise ValueError("trailing bytes after a coded tensor")
    if pos is None:
        return values.astype(dt).tobytes()
    if count and (pos[-1] >= n):
        raise ValueError("relative index beyond the tensor")
    out = np.full(n, z, dt)
    out[pos] = values
    return out.tobytes()


# ---- the file --------------------------------------------------------------------------------------------

def _zero_code(t):
    """The stored bits that mean 0.0: the zero point of a quantized integer tensor, else all-zero bits."""
    if t.is_quantized and t.dtype not in reader.FLOAT_TYPES and len(set(t.zero_point.tolist())) == 1:
        dt = reader.numpy_dtype(t.dtype)
        return int(np.array(t.zero_point[0], dt).view(_u(dt.itemsize)))
    return 0


def build(path_or_bytes):
    """Codes a .tflite file; returns (pack bytes, [TensorCoding], remainder zlib bytes)."""
    model = path_or_bytes if isinstance(path_or_bytes, reader.Model) else reader.read(path_or_bytes)
    data = model.data
    codings, segments = [], []
    for t in sorted(reader.weight_tensors(model), key=lambda t: t.data_offset):
        itemsize = reader.numpy_dtype(t.dtype).itemsize
        blob, parts = encode_tensor(t.raw(), itemsize, _zero_code(t))
        segments.append((t.data_offset, t.nbytes, blob))
        codings.append(TensorCoding(name=t.name, dtype=t.dtype, shape=list(t.shape), elements=t.size,
                                    stored_bytes=t.nbytes, coded_bytes=len(blob), **parts))
    pieces, cursor = [], 0
    for off, length, _ in segments:
        pieces.append(data[cursor:off])
        cursor = off + length
    pieces.append(data[cursor:])
    rest = zlib.compress(b"".join(pieces), 9)
    payload = b"".join([_CRC.pack(len(segments))]
                       + [_SEGMENT.pack(off, length, len(blob)) + blob for off, length, blob in segments]
                       + [rest])
    header = _HEADER.pack(MAGIC, VERSION, 0, 0, len(data), hashlib.sha256(data).digest(), len(payload),
                          zlib.crc32(payload))
    return header + _CRC.pack(zlib.crc32(header)) + payload, codings, len(rest)


def pack(path_or_bytes):
    """The `.tfcz` bytes of a .tflite file (a path, its bytes or a `reader.Model`)."""
    return build(path_or_bytes)[0]


def unpack(blob, what="pack"):
    """The original .tflite bytes of a `.tfcz` pack; refuses a damaged or foreign file.

    Raises:
        InputError: not a pack, an unknown version, a checksum mismatch, or a truncated file.
    """
    blob = bytes(blob)
    head = _HEADER.size + _CRC.size
    if len(blob) < head or blob[:4] != MAGIC:
        raise InputError(f"{what} is not a .tfcz pack (no TFCZ header)")
    magic, version, _, _, size, sha, payload_size, payload_crc = _HEADER.unpack_from(blob)
    if _CRC.unpack_from(blob, _HEADER.size)[0] != zlib.crc32(blob[:_HEADER.size]):
        raise InputError(f"{what} is damaged: header checksum mismatch")
    if version != VERSION:
        raise InputError(f"{what} is pack version {version}; this tfcompress reads version {VERSION}")
    payload = blob[head:]
    if len(payload) != payload_size:
        raise InputError(f"{what} is damaged: payload is {len(payload)} bytes, header says {payload_size}")
    if zlib.crc32(payload) != payload_crc:
        raise InputError(f"{what} is damaged: payload checksum mismatch")
    try:
        data = _restore(payload, size)
    except (ValueError, IndexError, struct.error, zlib.error) as e:
        raise InputError(f"{what} is damaged: {e}") from None
    if len(data) != size or hashlib.sha256(data).digest() != sha:
        raise InputError(f"{what}: restored bytes do not match the original's SHA-256")
    return data


def _restore(payload, size):
    r = _Reader(payload)
    segments = []
    for _ in range(r.u32()):
        off, length, n = _SEGMENT.unpack(r.take(_SEGMENT.size))
        raw = decode_tensor(r.take(n))
        if len(raw) != length:
            raise ValueError("a coded tensor decodes to the wrong length")
        segments.append((off, raw))
    rest = zlib.decompress(payload[r.pos:])
    # walk the original coordinates, taking remainder bytes up to each segment
    pieces, src, at = [], 0, 0
    for off, raw in segments:
        if off < at:
            raise ValueError("overlapping segments")
        pieces.append(rest[src:src + off - at])
        src += off - at
        pieces.append(raw)
        at = off + len(raw)
    pieces.append(rest[src:])
    data = b"".join(pieces)
    if len(data) != size:
        raise ValueError("restored length differs from the original")
    return data
