"""Canonical Huffman coding of small-alphabet symbol streams (numpy in, bytes out).

A code is given by its code lengths alone (one per symbol, 0 for an unused symbol), which is all a
decoder needs to store: codes are assigned canonically (shorter first, then by symbol). Lengths are
limited to `MAX_LENGTH` bits so the decoder can use a flat lookup table.

Example:

>>> symbols = np.array([0, 0, 0, 0, 1, 1, 2, 3])
>>> lengths = code_lengths(np.bincount(symbols))
>>> lengths.tolist()
[1, 2, 3, 3]
>>> data, nbits = encode(symbols, lengths)
>>> nbits, decode(data, lengths, len(symbols)).tolist()
(14, [0, 0, 0, 0, 1, 1, 2, 3])
"""
import heapq

import numpy as np

MAX_LENGTH = 16


def _lengths(freqs):
    """Huffman code lengths of the used symbols (freqs > 0), unbounded."""
    used = np.flatnonzero(freqs)
    lengths = np.zeros(len(freqs), np.int64)
    if len(used) == 1:
        lengths[used] = 1  # a lone symbol still takes one bit, so the stream length is explicit
        return lengths
    if len(used) == 0:
        return lengths
    heap = [(int(freqs[s]), i) for i, s in enumerate(used)]
    heapq.heapify(heap)
    parent = [-1] * (2 * len(used) - 1)
    node = len(used)
    while len(heap) > 1:
        f1, a = heapq.heappop(heap)
        f2, b = heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (f1 + f2, node))
        node += 1
    depth = [0] * len(parent)
    for i in range(len(parent) - 2, -1, -1):  # parents have larger ids: walk from the root down
        depth[i] = depth[parent[i]] + 1
    lengths[used] = depth[:len(used)]
    return lengths


def code_lengths(freqs, max_length=MAX_LENGTH):
    """Code lengths (0 for unused symbols) of a Huffman code for `freqs`, none over `max_length` bits.

    When the optimal code is too deep, the frequencies are flattened (halved, kept >= 1) and the code
    rebuilt: slightly worse than package-merge, exact enough for weight streams.
    """
    freqs = np.asarray(freqs, np.int64)
    if np.count_nonzero(freqs) > (1 << max_length):
        raise ValueError(f"alphabet of {np.count_nonzero(freqs)} symbols does not fit {max_length}-bit codes")
    while True:
        lengths = _lengths(freqs)
        if lengths.max(initial=0) <= max_length:
            return lengths
        freqs = np.where(freqs > 0, (freqs + 1) // 2, 0)


def kraft_sum(lengths):
    """sum(2^-length) over used symbols; a prefix code has <= 1."""
    lengths = np.asarray(lengths)
    return float(np.sum(2.0 ** -lengths[lengths > 0]))


def canonical_codes(lengths):
    """The canonical code of each symbol (as an int, `lengths[s]` bits, MSB first)."""
    lengths = np.asarray(lengths, np.int64)
    codes = np.zeros(len(lengths), np.int64)
    order = sorted((int(l), s) for s, l in enumerate(lengths) if l > 0)
    code, prev = 0, 0
    for length, s in order:
        code <<= length - prev
        codes[s] = code
        code += 1
        prev = length
    return codes


def coded_bits(freqs, lengths):
    """Bits of the coded stream for symbol counts `freqs`."""
    return int(np.dot(np.asarray(freqs, np.int64), np.asarray(lengths, np.int64)[:len(freqs)]))


def encode(symbols, lengths):
    """Codes `symbols` (ints indexing `lengths`); returns (bytes, number of bits)."""
    symbols = np.asarray(symbols, np.int64)
    lengths = np.asarray(lengths, np.int64)
    if symbols.size == 0:
        return b"", 0
    if np.any(lengths[symbols] == 0):
        raise ValueError("a symbol to encode has no code (length 0)")
    codes = canonical_codes(lengths)
    ls = lengths[symbols]
    nbits = int(ls.sum())
    width = 16 if lengths.max() <= 16 else 32
    # left-align every code in a `width`-bit word, expand to bits, keep the first `length` of each row
    aligned = (codes[symbols] << (width - ls)).astype(f">u{width // 8}")
    rows = np.unpackbits(aligned.view(np.uint8)).reshape(len(symbols), width)
    bits = rows[np.arange(width) < ls[:, None]]
    return np.packbits(bits).tobytes(), nbits


def decode(data, lengths, count):
    """Decodes `count` symbols from `data`; raises ValueError on a stream that does not fit the code."""
    lengths = np.asarray(lengths, np.int64)
    if count == 0:
        return np.zeros(0, np.int64)
    maxlen = int(lengths.max(initial=0))
    if maxlen == 0 or maxlen > 25:
        raise ValueError("bad code lengths")
    if kraft_sum(lengths) > 1.0:
        raise ValueError("code lengths are not a prefix code")
    codes = canonical_codes(lengths)
    size = 1 << maxlen
    sym = np.full(size, -1, np.int64)
    ln = np.zeros(size, np.int64)
    for s in np.flatnonzero(lengths):
        shift = maxlen - int(lengths[s])
        lo = int(codes[s]) << shift
        sym[lo:lo + (1 << shift)] = s
        ln[lo:lo + (1 << shift)] = lengths[s]
    buf = np.frombuffer(bytes(data) + b"\0\0\0\0", np.uint8).astype(np.uint32)
    words = ((buf[:-3] << 24) | (buf[1:-2] << 16) | (buf[2:-1] << 8) | buf[3:]).tolist()
    sym_l, ln_l = sym.tolist(), ln.tolist()
    base, mask, limit = 32 - maxlen, size - 1, len(data) * 8
    out = [0] * count
    p = 0
    try:
        for i in range(count):
            w = (words[p >> 3] >> (base - (p & 7))) & mask
            out[i] = sym_l[w]
            p += ln_l[w]
    except IndexError:
        raise ValueError("coded stream is shorter than its symbol count") from None
    if p > limit or min(out) < 0:
        raise ValueError("coded stream is shorter than its symbol count")
    return np.asarray(out, np.int64)
