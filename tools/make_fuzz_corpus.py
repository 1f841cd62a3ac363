#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Write the seed corpus of the libFuzzer targets (tests/fuzz/fuzz_npy.cpp and
tests/fuzz/fuzz_safetensors.cpp) into tests/fuzz/corpus/{npy,safetensors}.

Usage (needs only numpy; the Debian /usr/bin/python3 has it):

    /usr/bin/python3 tools/make_fuzz_corpus.py

The seeds are small (a few KB in all): valid files of each supported element type, format
version and shape kind the readers accept, plus a few malformed ones near the checks, so that
the fuzzer starts from inputs that reach deep into the readers. The output is deterministic.
The script only writes the files it names (the `valid-`, `bad-` and `odd-` seeds) and deletes
nothing, so the `regress-` seeds added by hand from fuzzer findings (see docs/fuzzing.md) stay.
"""

import io
import json
import pathlib
import struct
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
NPY_DIR = ROOT / "tests" / "fuzz" / "corpus" / "npy"
ST_DIR = ROOT / "tests" / "fuzz" / "corpus" / "safetensors"


def npy(arr, version=None, fortran=False):
    """The bytes np.save writes for `arr` (at the given format version)."""
    buf = io.BytesIO()
    if fortran:
        arr = np.asfortranarray(arr)
    np.lib.format.write_array(buf, arr, version=version)
    return buf.getvalue()


def npy_raw(header, data=b"", version=1):
    """A .npy file with the header dict text as given (padded the way numpy pads) and `data`."""
    prefix = 10 if version == 1 else 12
    text = header.encode("latin1")
    text += b" " * (63 - (prefix + len(text)) % 64) + b"\n"
    length = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text + data


def npy_seeds():
    k = np.arange(6, dtype=np.float64).reshape(2, 3)
    f4 = (k * 0.5 - 1.0).astype("<f4")
    good = {
        "valid-f4-2x3.npy": npy(f4),
        "valid-f8-3x2.npy": npy(np.ascontiguousarray(k.T / 3.0, dtype="<f8")),
        "valid-f2-2x2-specials.npy": npy(np.array([[0.0, -0.0], [np.inf, np.nan]], dtype="<f2")),
        "valid-f4-1x1.npy": npy(np.array([[42.5]], dtype="<f4")),
        "valid-f4-vector.npy": npy(np.array([1.5, -2.0, 0.0], dtype="<f4")),
        "valid-f8-vector-empty.npy": npy(np.zeros(0, dtype="<f8")),
        "valid-f4-scalar.npy": npy(np.array(7.0, dtype="<f4")),
        "valid-f4-2x3-v2.npy": npy(f4, version=(2, 0)),
        "valid-f4-2x3-v3.npy": npy(f4, version=(3, 0)),
        "valid-i8.npy": npy(np.array([0, -1, 2**62], dtype="<i8")),
        "valid-i4.npy": npy(np.array([4, -7], dtype="<i4")),
        "valid-i2.npy": npy(np.array([-2, 5], dtype="<i2")),
        "valid-u1.npy": npy(np.array([0, 255], dtype="|u1")),
        "valid-u8.npy": npy(np.array([2**63 - 1], dtype="<u8")),
        # Header spellings numpy never writes but fusemix accepts (Python 2 writers, lists).
        "odd-double-quotes-long.npy": npy_raw(
            '{"descr": "<f4", "fortran_order": False, "shape": (1L, 2L)}',
            np.array([1, 2], dtype="<f4").tobytes()),
        "odd-list-shape.npy": npy_raw(
            "{'shape': [2], 'fortran_order': False, 'descr': '<f8',}",
            np.array([1, 2], dtype="<f8").tobytes()),
    }
    for name in ("valid-f4-2x3-v2.npy", "valid-f4-2x3-v3.npy"):
        assert good[name][6] == int(name[-5]), name
    for name, blob in good.items():
        if name.startswith("valid-"):
            np.load(io.BytesIO(blob))  # numpy must accept every valid- seed
    whole = good["valid-f4-2x3.npy"]
    bad = {
        "bad-truncated-data.npy": whole[:-5],
        "bad-trailing-data.npy": whole + b"\0\0\0\0",
        "bad-truncated-header.npy": whole[:40],
        "bad-magic.npy": b"\x93NUMPZ" + whole[6:],
        "bad-version-4.npy": whole[:6] + b"\x04\x00" + whole[8:],
        "bad-fortran.npy": npy(np.array([[1, 2], [3, 4]], dtype="<f4"), fortran=True),
        "bad-big-endian.npy": npy(np.array([[1, 2]], dtype=">f4")),
        "bad-huge-shape.npy": npy_raw(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
            b"\0" * 8),
        "bad-structured-dtype.npy": npy(np.zeros(1, dtype=[("a", "<f4")])),
        "bad-unterminated.npy": npy_raw("{'descr': '<f4, 'fortran_order': False, 'shape': (1,)"),
    }
    return {**good, **bad}


def safetensors(entries, metadata=None, pad=True):
    """entries: (name, dtype, shape, raw bytes); laid out in order as the format says."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_raw(header, data=b""):
    text = header.encode("utf-8")
    return struct.pack("<Q", len(text)) + text + data


def bf16(values):
    bits = np.array(values, dtype="<f4").view("<u4")
    return (bits >> 16).astype("<u2").tobytes()


def safetensors_seeds():
    f32 = np.arange(6, dtype="<f4").reshape(2, 3) * 0.5
    f64 = np.array([0.1, -2.5, 1e300], dtype="<f8")
    f16 = np.array([1.0, -0.5, 65504.0, np.inf], dtype="<f2")
    good = {
        "valid-f32-meta.safetensors": safetensors(
            [("w", "F32", (2, 3), f32.tobytes())], {"format": "pt"}),
        "valid-f64.safetensors": safetensors([("x", "F64", (3,), f64.tobytes())]),
        "valid-f16.safetensors": safetensors([("h", "F16", (2, 2), f16.tobytes())]),
        "valid-bf16.safetensors": safetensors([("b", "BF16", (3,), bf16([1.0, -3.5, 0.15625]))]),
        "valid-mixed.safetensors": safetensors(
            [("a", "F64", (1, 1), f64[:1].tobytes()),
             ("b", "F16", (2,), f16[:2].tobytes()),
             ("c", "BF16", (1,), bf16([2.0])),
             ("d", "F32", (), np.array(42.5, dtype="<f4").tobytes()),
             ("e", "F32", (0, 3), b"")],
            {"format": "pt", "source": "make_fuzz_corpus.py"}),
        "valid-empty.safetensors": safetensors([]),
        "odd-gaps-unpadded.safetensors": safetensors_raw(
            '{"z":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},'
            '"e":{"dtype":"BF16","shape":[3,0],"data_offsets":[4,4]},'
            '"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4],"extra":true}}',
            b"\x00\x3c\x00\xc0" + b"\0" * 4 + b"\x00\x00\x80\x3f" + b"\0" * 4),
    }
    good_bytes = good["valid-f32-meta.safetensors"]
    bad = {
        "bad-short.safetensors": b"\x10\0\0",
        "bad-header-past-end.safetensors": b"\xff\xff\0\0\0\0\0\0{}",
        "bad-json.safetensors": safetensors_raw('{"a": {"dtype": "F32",'),
        "bad-not-object.safetensors": safetensors_raw("[1, 2]"),
        "bad-dtype-i32.safetensors": safetensors([("i", "I32", (2,), b"\0" * 8)]),
        "bad-offsets-past-end.safetensors": good_bytes[:-4],
        "bad-overlap.safetensors": safetensors_raw(
            '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
            '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', b"\0" * 16),
        "bad-reversed.safetensors": safetensors_raw(
            '{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', b"\0" * 8),
        "bad-shape-overflow.safetensors": safetensors_raw(
            '{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}',
            b"\0" * 8),
        "bad-metadata-number.safetensors": safetensors_raw('{"__metadata__":{"step":3}}'),
    }
    return {**good, **bad}


def write(directory, seeds):
    directory.mkdir(parents=True, exist_ok=True)
    for name, blob in sorted(seeds.items()):
        (directory / name).write_bytes(blob)
    total = sum(len(b) for b in seeds.values())
    print(f"{directory.relative_to(ROOT)}: {len(seeds)} seeds, {total} bytes")


def main():
    write(NPY_DIR, npy_seeds())
    write(ST_DIR, safetensors_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
