"""Shared PyTorch-side helpers for the fusemix tools.

- The authors' adapter module structure (``Block``, ``make_proj``), whose
  parameter names are the ones fusemix reads and writes:
  ``{i}.ln.*``, ``{i}.fn.0.*``, ``{i}.fn.3.*``, ``{depth}.*`` (final LN),
  ``{depth+1}.*`` (final Linear), under the prefix ``vis_proj.`` / ``text_proj.``.
- A minimal safetensors writer and reader (numpy only; the safetensors
  package is not needed).
- The symmetric InfoNCE loss and the LayerNorm perturbation used by the
  fixture scripts.

torch is imported lazily by the module-building helpers, so the safetensors
functions work with numpy alone.  Used by tools/make_parity_fixtures.py,
tools/make_training_fixtures.py and tools/check_pytorch_load.py.
"""

import json
import re
import struct

import numpy as np

try:  # torch is optional for the safetensors helpers
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - callers that need torch check for it
    torch = None
    nn = None
    F = None


# --------------------------------------------------------------------------
# Modules (structure and attribute names follow the reference implementation)
# --------------------------------------------------------------------------
if nn is not None:
    class Block(nn.Module):
        def __init__(self, d, expansion, p):
            super().__init__()
            # attribute order matters for parameter registration: fn then ln
            self.fn = nn.Sequential(
                nn.Linear(d, expansion * d),
                nn.GELU(),  # exact erf form
                nn.Dropout(p),
                nn.Linear(expansion * d, d),
            )
            self.ln = nn.LayerNorm(d, eps=1e-5)

        def forward(self, x):
            return x + self.fn(self.ln(x))


def make_proj(d, out, depth, expansion, p):
    """Sequential(Block x depth, LayerNorm(d), Linear(d, out))."""
    return nn.Sequential(
        *[Block(d, expansion, p) for _ in range(depth)],
        nn.LayerNorm(d, eps=1e-5),
        nn.Linear(d, out),
    )


def perturb_layernorms(module):
    """LayerNorm weight <- 1 + 0.1 randn, bias <- 0.1 randn (in module order)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))


def symmetric_infonce(x, y, temp):
    """Raw adapter outputs x, y (B x D); L2-normalise, logits / temp, mean CE both ways."""
    sx = F.normalize(x, dim=-1, eps=1e-12)
    sy = F.normalize(y, dim=-1, eps=1e-12)
    logits = sx @ sy.t() / temp
    labels = torch.arange(x.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def sigmoid_loss(x, y, logit_scale, logit_bias):
    """SigLIP's pairwise sigmoid loss over raw adapter outputs x, y (B x D): L2-normalise,
    logits = exp(logit_scale) * sx @ sy.T + logit_bias, labels +1 on the diagonal and -1 elsewhere,
    -sum(logsigmoid(labels * logits)) / B."""
    sx = F.normalize(x, dim=-1, eps=1e-12)
    sy = F.normalize(y, dim=-1, eps=1e-12)
    logits = logit_scale.exp() * sx @ sy.t() + logit_bias
    labels = 2 * torch.eye(x.shape[0], dtype=x.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / x.shape[0]


def infer_proj_config(state, prefix=""):
    """Infer (d, out, depth, expansion) from adapter parameter names and shapes.

    ``state``: dict name -> array-like with ``.shape``; only names starting with
    ``prefix`` are considered (the prefix is stripped).  Raises ValueError when
    the names do not form an adapter.
    """
    names = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not names:
        raise ValueError("no tensors under prefix %r" % prefix)
    indices = set()
    for k in names:
        m = re.match(r"^(\d+)\.", k)
        if not m:
            raise ValueError("unexpected tensor name %r" % (prefix + k))
        indices.add(int(m.group(1)))
    last = max(indices)
    depth = last - 1
    if depth < 0:
        raise ValueError("need at least a final LayerNorm and Linear under %r" % prefix)
    for key in ("%d.weight" % depth, "%d.bias" % depth, "%d.weight" % last):
        if key not in names:
            raise ValueError("missing %r" % (prefix + key))
    d = int(names["%d.weight" % depth].shape[0])
    out = int(names["%d.weight" % last].shape[0])
    expansion = 4
    if depth > 0:
        w0 = names.get("0.fn.0.weight")
        if w0 is None:
            raise ValueError("missing %r" % (prefix + "0.fn.0.weight"))
        if w0.shape[0] % d != 0:
            raise ValueError("%s0.fn.0.weight has %d rows, not a multiple of d=%d"
                             % (prefix, w0.shape[0], d))
        expansion = int(w0.shape[0]) // d
    return d, out, depth, expansion


# --------------------------------------------------------------------------
# Minimal safetensors writer / reader (the safetensors package is not needed)
# --------------------------------------------------------------------------
_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_READ_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 below
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}


def write_safetensors(path, tensors, dtype, metadata=None):
    """tensors: dict name -> numpy array; dtype: 'F32' or 'F64'.

    Tensors are laid out contiguously in sorted-name order; header metadata
    ``{"format": "pt"}`` unless ``metadata`` is given; header padded with
    spaces to a multiple of 8.
    """
    np_dtype = _DTYPES[dtype]
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        src = np.asarray(tensors[name])
        # ascontiguousarray turns a 0-d array into shape (1,): keep the real shape
        arr = np.ascontiguousarray(src, dtype=np_dtype).reshape(src.shape)
        raw = arr.tobytes(order="C")
        header[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = metadata if metadata is not None else {"format": "pt"}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((-len(hbytes)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path, strict=True):
    """Returns (dict name -> numpy array, metadata or None).

    strict=True (for files this project writes): only F32/F64, header length a
    multiple of 8, tensors contiguous in sorted-name order, no trailing bytes.
    strict=False (any valid safetensors file, e.g. one written by fusemix or
    the safetensors package): tensors in any order, also F16/BF16 (BF16 is
    returned as float32) and integer dtypes; offsets must lie inside the data.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError("%s: header length %d exceeds file size" % (path, n))
    if strict:
        assert n % 8 == 0, "header length not a multiple of 8"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    out = {}
    expect = 0
    for name in sorted(k for k in header if k != "__metadata__"):
        info = header[name]
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        if strict:
            assert b == expect, "tensors not contiguous in sorted order"
            expect = e
            dt = _DTYPES[info["dtype"]]
        else:
            if info["dtype"] not in _READ_DTYPES:
                raise ValueError("%s: %s has unsupported dtype %s" % (path, name, info["dtype"]))
            dt = _READ_DTYPES[info["dtype"]]
            if not (0 <= b <= e <= len(body)):
                raise ValueError("%s: %s has offsets outside the data" % (path, name))
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if e - b != count * dt.itemsize:
                raise ValueError("%s: %s: %d bytes for shape %s and dtype %s"
                                 % (path, name, e - b, list(shape), info["dtype"]))
        arr = np.frombuffer(body[b:e], dtype=dt).reshape(shape)
        if not strict and info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
    if strict:
        assert expect == len(body), "trailing bytes after tensor data"
    return out, header.get("__metadata__")
