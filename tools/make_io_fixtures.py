#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Write the small .npy and .safetensors fixtures used by tests/unit/test_npy.cpp and
tests/unit/test_safetensors.cpp.

Usage (needs only numpy; the Debian /usr/bin/python3 has it):

    /usr/bin/python3 tools/make_io_fixtures.py            # (re)write tests/fixtures/{npy,safetensors}
    /usr/bin/python3 tools/make_io_fixtures.py --verify a.npy b.npy ...

The output is deterministic: every array is computed from closed-form values, so rerunning the
script with the same numpy gives the same bytes. `--verify` checks files written by fusemix's
`write_npy`: numpy must load each one, and `np.save` of the loaded array must reproduce the file
byte for byte.
"""

import argparse
import io
import json
import pathlib
import struct
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
NPY_DIR = ROOT / "tests" / "fixtures" / "npy"
ST_DIR = ROOT / "tests" / "fixtures" / "safetensors"


def grid_f4():
    """3x5 float32, (i*5 + j) * 0.25 - 1.5: exact in binary32, easy to rebuild in C++."""
    k = np.arange(15, dtype=np.float64).reshape(3, 5)
    return (k * 0.25 - 1.5).astype(np.float32)


def grid_f8():
    """3x5 float64, (i*5 + j) / 3: the C++ test computes k / 3.0 and gets the same doubles."""
    return np.arange(15, dtype=np.float64).reshape(3, 5) / 3.0


def half_specials():
    """2x6 float16 covering zeros, normals, extremes, subnormals, infinities and NaN."""
    return np.array(
        [[0.0, -0.0, 1.0, -2.5, 65504.0, -65504.0],
         [2.0**-24, 2.0**-14, 1023 * 2.0**-24, np.inf, -np.inf, np.nan]],
        dtype=np.float16)


def save_npy(name, arr, version=None):
    path = NPY_DIR / name
    if version is None:
        np.save(path, arr)
    else:
        with open(path, "wb") as f:
            np.lib.format.write_array(f, arr, version=version)
    back = np.load(path)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert np.array_equal(back, arr, equal_nan=arr.dtype.kind == "f")
    return path


def make_npy():
    NPY_DIR.mkdir(parents=True, exist_ok=True)
    written = [
        save_npy("f4_3x5.npy", grid_f4()),
        save_npy("f8_3x5.npy", grid_f8()),
        save_npy("f2_specials.npy", half_specials()),
        save_npy("f4_3x5_v2.npy", grid_f4(), version=(2, 0)),
        save_npy("f4_3x5_v3.npy", grid_f4(), version=(3, 0)),
        save_npy("f4_vector.npy", np.array([1.5, -2.0, 0.0, 3.25], dtype=np.float32)),
        save_npy("i8_index.npy", np.array([0, 0, 1, 2, 5, 3], dtype=np.int64)),
        save_npy("i4_index.npy", np.array([4, -7, 2147483647, -2147483648], dtype=np.int32)),
        save_npy("u8_index.npy", np.array([0, 9, 2**63 - 1], dtype=np.uint64)),
    ]
    # The version 2.0 and 3.0 files must really carry those versions (numpy picks 1.0 by default).
    for path, major in ((NPY_DIR / "f4_3x5_v2.npy", 2), (NPY_DIR / "f4_3x5_v3.npy", 3)):
        assert path.read_bytes()[6] == major, path
    return written


def safetensors_bytes(tensors, metadata):
    """Lay out (name, dtype, shape, raw bytes) in the given order, as the safetensors format says:
    u64 little-endian header length, JSON header padded with spaces to a multiple of 8, data."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def bf16_bytes(values):
    """bfloat16 is the top half of binary32; the values chosen have a zero bottom half."""
    bits = np.array(values, dtype=np.float32).view(np.uint32)
    assert np.all(bits & 0xFFFF == 0), "value not exactly representable in bfloat16"
    return (bits >> 16).astype("<u2").tobytes()


def make_safetensors():
    ST_DIR.mkdir(parents=True, exist_ok=True)
    f64 = np.array([[0.1, -2.5, 1.0 / 3.0], [1e-3, 123456.789, -0.0]], dtype="<f8")
    f16 = np.array([1.0, -0.5, 65504.0, 2.0**-24, np.inf], dtype="<f2")
    bf16 = [1.0, -3.5, 0.15625, 2.0**-130]
    tensors = [
        ("a_f64", "F64", (2, 3), f64.tobytes()),
        ("b_f16", "F16", (5,), f16.tobytes()),
        ("c_bf16", "BF16", (2, 2), bf16_bytes(bf16)),
        ("d_f32_scalar", "F32", (), np.array(42.5, dtype="<f4").tobytes()),
        ("e_f32_empty", "F32", (0, 3), b""),
    ]
    blob = safetensors_bytes(tensors, {"format": "pt", "source": "make_io_fixtures.py"})
    path = ST_DIR / "mixed_dtypes.safetensors"
    path.write_bytes(blob)
    # Read it back by hand to check the layout.
    n = struct.unpack("<Q", blob[:8])[0]
    assert n % 8 == 0
    header = json.loads(blob[8:8 + n])
    begin, end = header["a_f64"]["data_offsets"]
    assert np.array_equal(np.frombuffer(blob[8 + n + begin:8 + n + end], "<f8").reshape(2, 3), f64)
    return [path]


def verify(paths):
    """Check that numpy loads each file and that np.save of it gives the same bytes."""
    ok = True
    for p in map(pathlib.Path, paths):
        try:
            arr = np.load(p)
            buf = io.BytesIO()
            np.save(buf, arr)
            same = buf.getvalue() == p.read_bytes()
        except Exception as e:  # noqa: BLE001 - report any failure to load
            print(f"FAIL {p}: {e}")
            ok = False
            continue
        print(f"{'OK  ' if same else 'DIFF'} {p}: {arr.dtype.str} {arr.shape}")
        ok = ok and same
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify", nargs="+", metavar="NPY",
                        help="check files written by fusemix instead of writing fixtures")
    args = parser.parse_args()
    if args.verify:
        return 0 if verify(args.verify) else 1
    for p in make_npy() + make_safetensors():
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
