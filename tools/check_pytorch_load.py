#!/usr/bin/python3
"""Check that adapter weights written by fusemix load into the authors' PyTorch modules.

Reads a safetensors file (own reader, no safetensors package), infers depth,
dimensions and expansion of one adapter from the names and shapes under
`vis_proj.` (--side x) or `text_proj.` (--side y), builds the reference module
`nn.Sequential(Block x depth, LayerNorm(d), Linear(d, out))`, loads the
weights with `load_state_dict(strict=True)` (prefix stripped, so a wrong name
or shape fails loudly), runs it in eval mode on the inputs in float32 and
compares with the embeddings computed by fusemix (`fusemix embed`).

Embeddings are compared raw (fusemix embed does not normalise by default);
with --normalized the PyTorch output is L2-normalised first.  If the file has
a `temp` entry it is loaded and printed.

Prints the max relative error  max|a - b| / max|b|  (a = PyTorch, b = given).
Exit status: 0 within --tol, 1 outside it or on any error, 77 if torch (or
numpy) cannot be imported (ctest SKIP_RETURN_CODE).

Usage:
  /usr/bin/python3 tools/check_pytorch_load.py --model adapters.safetensors \\
      --side x|y --in Z.npy --embeddings S.npy [--tol 1e-4] [--normalized]
"""

import argparse
import os
import sys

SKIP = 77


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="safetensors file with the adapter weights")
    ap.add_argument("--side", required=True, choices=("x", "y"),
                    help="x: vis_proj.*, y: text_proj.*")
    ap.add_argument("--in", dest="inputs", required=True, help="inputs Z, .npy [N, d]")
    ap.add_argument("--embeddings", required=True, help="expected outputs S, .npy [N, out]")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="max allowed max|a-b|/max|b| (default 1e-4)")
    ap.add_argument("--normalized", action="store_true",
                    help="S is L2-normalised: normalise the PyTorch output too")
    args = ap.parse_args(argv)

    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print("SKIP: cannot import torch/numpy (%s); use Debian's /usr/bin/python3 "
              "with python3-torch python3-numpy" % e)
        return SKIP

    sys.dont_write_bytecode = True  # no tools/__pycache__ in the work tree
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fusemix_torch import infer_proj_config, make_proj, read_safetensors

    prefix = "vis_proj." if args.side == "x" else "text_proj."
    try:
        tensors, meta = read_safetensors(args.model, strict=False)
    except Exception as e:  # noqa: BLE001 - report any parse failure
        print("FAIL: cannot read %s: %s" % (args.model, e))
        return 1
    print("%s: %d tensors, metadata %s" % (args.model, len(tensors), meta))
    others = [k for k in tensors
              if not (k.startswith("vis_proj.") or k.startswith("text_proj.")
                      or k in ("temp", "logit_scale", "logit_bias"))]
    if others:
        print("note: tensors outside vis_proj./text_proj. and the loss's scalars: %s"
              % ", ".join(sorted(others)))

    try:
        d, out, depth, expansion = infer_proj_config(tensors, prefix)
    except ValueError as e:
        print("FAIL: %s" % e)
        return 1
    print("side %s (%s*): d=%d out=%d depth=%d expansion=%d"
          % (args.side, prefix, d, out, depth, expansion))

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    proj = make_proj(d, out, depth, expansion, 0.6).float()
    state = {k[len(prefix):]: torch.from_numpy(np.array(v, dtype=np.float32))
             for k, v in tensors.items() if k.startswith(prefix)}
    try:
        proj.load_state_dict(state, strict=True)
    except RuntimeError as e:
        print("FAIL: load_state_dict(strict=True): %s" % e)
        return 1
    print("load_state_dict(strict=True): ok, %d tensors" % len(state))
    proj.eval()

    if "temp" in tensors:
        t = np.asarray(tensors["temp"])
        temp = torch.nn.Parameter(torch.from_numpy(np.array(t, dtype=np.float32)))
        if t.size != 1:
            print("FAIL: temp has shape %s, expected [] (a scalar)" % list(t.shape))
            return 1
        note = "" if t.shape == () else "  (note: shape %s, PyTorch's is [])" % list(t.shape)
        print("temp = %.9g%s" % (temp.reshape(()).item(), note))

    z = np.load(args.inputs)
    s = np.load(args.embeddings)
    if z.ndim != 2 or z.shape[1] != d:
        print("FAIL: inputs %s have shape %s, expected [N, %d]" % (args.inputs, z.shape, d))
        return 1
    if s.shape != (z.shape[0], out):
        print("FAIL: embeddings %s have shape %s, expected [%d, %d]"
              % (args.embeddings, s.shape, z.shape[0], out))
        return 1
    with torch.no_grad():
        a = proj(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)))
        if args.normalized:
            a = F.normalize(a, dim=-1, eps=1e-12)
    a = a.double().numpy()
    b = np.asarray(s, dtype=np.float64)
    if not np.all(np.isfinite(b)):
        print("FAIL: embeddings contain non-finite values")
        return 1
    scale = np.abs(b).max() if b.size else 0.0
    err = np.abs(a - b).max() if b.size else 0.0
    rel = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
    ok = rel <= args.tol
    print("N=%d%s: max|torch - given| = %.3e, max|given| = %.3e, max rel err %.3e (tol %.1e): %s"
          % (z.shape[0], " (normalized)" if args.normalized else "", err, scale, rel, args.tol,
             "PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
