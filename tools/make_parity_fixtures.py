#!/usr/bin/python3
"""Generate the PyTorch parity fixtures for the fusemix C++ tests.

Writes into tests/fixtures/parity/ (relative to the repository root):

  adapter cases (adapter_d2, adapter_d0, adapter_d1_e2):
    {case}.safetensors        float32 parameters, full PyTorch names (vis_proj.*), F32
    {case}_grads.safetensors  float64 parameter gradients, same names, F64
    {case}_x.npy              float32 input            (B x d)
    {case}_dy.npy             float32 upstream grad    (B x out)
    {case}_y.npy              float64 reference output (B x out)
    {case}_dx.npy             float64 input gradient   (B x d)
  loss case:
    loss_x.npy, loss_y.npy    float32 raw adapter outputs (6 x 8)
    loss_values.npy           float64 [temp, loss]
    loss_dx.npy, loss_dy.npy  float64 gradients wrt x, y
    loss_dtemp.npy            float64 [dloss/dtemp]
  sigmoid loss cases a and b (sigmoid_loss.safetensors, F64; every name prefixed "a." or "b."):
    px, py                    float32 raw adapter outputs (7 x 5), stored exactly
    logit_scale, logit_bias   float32 scalars (0-d): a = (log 10 + 0.3, -2.5), b = (log 10, -10)
    loss                      float64 scalar
    grad_px, grad_py          float64 gradients wrt px, py
    grad_logit_scale, grad_logit_bias   float64 scalars

The reference values are computed in float64 from the float32 parameters and
inputs (module and inputs cast to double), so they are exact up to float64
rounding.  Module structure and safetensors helpers: tools/fusemix_torch.py.
Requires only torch and numpy (Debian: python3-torch python3-numpy).

Usage:  /usr/bin/python3 tools/make_parity_fixtures.py [output_dir] [--only CASE]
        (CASE: adapter, loss or sigmoid; all of them when not given)
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.dont_write_bytecode = True  # no tools/__pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusemix_torch import (make_proj, perturb_layernorms, read_safetensors,  # noqa: E402
                           sigmoid_loss, symmetric_infonce, write_safetensors)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "parity")

ADAPTER_CASES = [
    # name,           seed, d,  out, depth, expansion, batch
    ("adapter_d2",    1001, 12, 8,   2,     4,         7),
    ("adapter_d0",    1002, 12, 8,   0,     4,         7),
    ("adapter_d1_e2", 1003, 10, 6,   1,     2,         5),
]
LOSS_SEED = 1004
LOSS_B, LOSS_D = 6, 8
LOSS_TEMP = 0.07
DROPOUT = 0.6
SIGMOID_SEED = 1005
SIGMOID_B, SIGMOID_D = 7, 5
SIGMOID_CASES = [("a", float(np.log(10.0)) + 0.3, -2.5), ("b", float(np.log(10.0)), -10.0)]


# --------------------------------------------------------------------------
# Modules (structure and names follow the reference implementation) and the
# safetensors helpers live in tools/fusemix_torch.py
# --------------------------------------------------------------------------
class Holder(nn.Module):
    def __init__(self, d, out, depth, expansion, p):
        super().__init__()
        self.vis_proj = make_proj(d, out, depth, expansion, p)

    def forward(self, x):
        return self.vis_proj(x)


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------
def adapter_case(outdir, name, seed, d, out, depth, expansion, batch):
    torch.manual_seed(seed)
    model = Holder(d, out, depth, expansion, DROPOUT)  # PyTorch default init
    perturb_layernorms(model)
    model.eval()  # dropout off
    model = model.float()
    x32 = torch.randn(batch, d, dtype=torch.float32)
    dy32 = torch.randn(batch, out, dtype=torch.float32)

    params32 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    expected = ["vis_proj.%d.%s" % (i, s) for i in range(depth)
                for s in ("ln.weight", "ln.bias", "fn.0.weight", "fn.0.bias",
                          "fn.3.weight", "fn.3.bias")]
    expected += ["vis_proj.%d.weight" % depth, "vis_proj.%d.bias" % depth,
                 "vis_proj.%d.weight" % (depth + 1), "vis_proj.%d.bias" % (depth + 1)]
    assert sorted(params32) == sorted(expected), sorted(params32)
    for i in range(depth):
        assert params32["vis_proj.%d.fn.0.weight" % i].shape == (expansion * d, d)
        assert params32["vis_proj.%d.fn.3.weight" % i].shape == (d, expansion * d)
    assert params32["vis_proj.%d.weight" % (depth + 1)].shape == (out, d)

    # float32 forward (for the fp32-vs-fp64 sanity check)
    with torch.no_grad():
        y32 = model(x32).double()

    # float64 reference: cast the module (float32 values) and the inputs to double
    model64 = model.double()
    model64.eval()
    x = x32.double().requires_grad_(True)
    y = model64(x)
    (y * dy32.double()).sum().backward()
    grads = {k: p.grad.detach().clone() for k, p in model64.named_parameters()}
    assert sorted(grads) == sorted(params32)

    write_safetensors(os.path.join(outdir, name + ".safetensors"),
                      {k: v.numpy() for k, v in params32.items()}, "F32")
    write_safetensors(os.path.join(outdir, name + "_grads.safetensors"),
                      {k: v.numpy() for k, v in grads.items()}, "F64")
    np.save(os.path.join(outdir, name + "_x.npy"), x32.numpy().astype("<f4"))
    np.save(os.path.join(outdir, name + "_dy.npy"), dy32.numpy().astype("<f4"))
    np.save(os.path.join(outdir, name + "_y.npy"), y.detach().numpy().astype("<f8"))
    np.save(os.path.join(outdir, name + "_dx.npy"), x.grad.numpy().astype("<f8"))

    # ---- self-checks ----
    rp, meta = read_safetensors(os.path.join(outdir, name + ".safetensors"))
    assert meta == {"format": "pt"}
    assert sorted(rp) == sorted(params32)
    for k, v in params32.items():
        assert rp[k].dtype == np.float32 and rp[k].shape == tuple(v.shape), k
        assert np.array_equal(rp[k], v.numpy()), k
    rg, _ = read_safetensors(os.path.join(outdir, name + "_grads.safetensors"))
    for k, v in grads.items():
        assert rg[k].dtype == np.float64 and np.array_equal(rg[k], v.numpy()), k
    # re-run the reference from the reloaded file (round trip through our format)
    check = Holder(d, out, depth, expansion, DROPOUT).double().eval()
    check.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float64))
                           for k, v in rp.items()})
    with torch.no_grad():
        y_re = check(torch.from_numpy(np.load(os.path.join(outdir, name + "_x.npy"))).double())
    assert torch.equal(y_re, y.detach()), "reloaded model differs"

    yd = y.detach()
    rel = ((y32 - yd).abs().max() / yd.abs().max()).item()
    print("%-14s d=%d out=%d depth=%d e=%d B=%d  params=%d  fp32-vs-fp64 max rel err %.3e"
          % (name, d, out, depth, expansion, batch, len(params32), rel))
    assert rel < 1e-5, "float32 forward deviates from reference by %g" % rel


def loss_case(outdir):
    torch.manual_seed(LOSS_SEED)
    x32 = torch.randn(LOSS_B, LOSS_D, dtype=torch.float32)
    y32 = torch.randn(LOSS_B, LOSS_D, dtype=torch.float32)
    # temperature as a float32 parameter would hold it; reference in float64
    temp32 = torch.tensor(LOSS_TEMP, dtype=torch.float32)

    x = x32.double().requires_grad_(True)
    y = y32.double().requires_grad_(True)
    t = temp32.double().clone().requires_grad_(True)
    loss = symmetric_infonce(x, y, t)
    loss.backward()

    np.save(os.path.join(outdir, "loss_x.npy"), x32.numpy().astype("<f4"))
    np.save(os.path.join(outdir, "loss_y.npy"), y32.numpy().astype("<f4"))
    np.save(os.path.join(outdir, "loss_values.npy"),
            np.array([t.item(), loss.item()], dtype="<f8"))
    np.save(os.path.join(outdir, "loss_dx.npy"), x.grad.numpy().astype("<f8"))
    np.save(os.path.join(outdir, "loss_dy.npy"), y.grad.numpy().astype("<f8"))
    np.save(os.path.join(outdir, "loss_dtemp.npy"),
            np.array([t.grad.item()], dtype="<f8"))

    # self-check: independent numpy evaluation + central differences on temp
    def np_loss(a, b, tau):
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        lg = a @ b.T / tau

        def ce(m):
            mx = m.max(axis=1, keepdims=True)
            lse = (mx + np.log(np.exp(m - mx).sum(axis=1, keepdims=True)))[:, 0]
            return np.mean(lse - np.diag(m))
        return 0.5 * (ce(lg) + ce(lg.T))

    xa, ya, ta = x32.numpy().astype(np.float64), y32.numpy().astype(np.float64), t.item()
    ln = np_loss(xa, ya, ta)
    assert abs(ln - loss.item()) < 1e-12 * max(1.0, abs(ln)), (ln, loss.item())
    h = 1e-6
    fd = (np_loss(xa, ya, ta + h) - np_loss(xa, ya, ta - h)) / (2 * h)
    assert abs(fd - t.grad.item()) < 1e-5 * max(1.0, abs(fd)), (fd, t.grad.item())
    print("loss           B=%d D=%d temp=%.10g loss=%.12g dtemp=%.6g" %
          (LOSS_B, LOSS_D, t.item(), loss.item(), t.grad.item()))


def sigmoid_cases(outdir):
    torch.manual_seed(SIGMOID_SEED)
    tensors = {}
    for name, scale, bias in SIGMOID_CASES:
        x32 = torch.randn(SIGMOID_B, SIGMOID_D, dtype=torch.float32)
        y32 = torch.randn(SIGMOID_B, SIGMOID_D, dtype=torch.float32)
        y32[2] = 1.5 * x32[2]  # one well-aligned pair: both signs of every margin occur
        s32 = torch.tensor(scale, dtype=torch.float32)
        b32 = torch.tensor(bias, dtype=torch.float32)
        x = x32.double().requires_grad_(True)
        y = y32.double().requires_grad_(True)
        s = s32.double().clone().requires_grad_(True)
        b = b32.double().clone().requires_grad_(True)
        loss = sigmoid_loss(x, y, s, b)
        loss.backward()
        out = {"px": x32.double(), "py": y32.double(), "logit_scale": s32.double(), "logit_bias": b32.double(),
               "loss": loss.detach(), "grad_px": x.grad, "grad_py": y.grad, "grad_logit_scale": s.grad,
               "grad_logit_bias": b.grad}
        for k, v in out.items():
            tensors[name + "." + k] = v.detach().numpy().astype(np.float64)

        # self-check: the definition in numpy, and central differences on the two scalars
        def np_loss(a, c, ls, lb):
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
            c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
            z = 2 * np.eye(a.shape[0]) - 1
            return np.logaddexp(0, -z * (np.exp(ls) * a @ c.T + lb)).sum() / a.shape[0]
        xa, ya = x32.numpy().astype(np.float64), y32.numpy().astype(np.float64)
        sa, ba = s.item(), b.item()
        assert abs(np_loss(xa, ya, sa, ba) - loss.item()) < 1e-12 * max(1.0, loss.item())
        h = 1e-6
        fs = (np_loss(xa, ya, sa + h, ba) - np_loss(xa, ya, sa - h, ba)) / (2 * h)
        fb = (np_loss(xa, ya, sa, ba + h) - np_loss(xa, ya, sa, ba - h)) / (2 * h)
        assert abs(fs - s.grad.item()) < 1e-6 * max(1.0, abs(fs)), (fs, s.grad.item())
        assert abs(fb - b.grad.item()) < 1e-6 * max(1.0, abs(fb)), (fb, b.grad.item())
        print("sigmoid %s      B=%d D=%d t'=%.6g b=%.6g loss=%.12g dt'=%.6g db=%.6g" %
              (name, SIGMOID_B, SIGMOID_D, sa, ba, loss.item(), s.grad.item(), b.grad.item()))
    write_safetensors(os.path.join(outdir, "sigmoid_loss.safetensors"), tensors, "F64")


def main():
    args = [a for a in sys.argv[1:]]
    only = None
    if "--only" in args:
        i = args.index("--only")
        only = args[i + 1]
        del args[i:i + 2]
    outdir = args[0] if args else DEFAULT_OUT
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    print("torch", torch.__version__, "numpy", np.__version__)
    if only in (None, "adapter"):
        for case in ADAPTER_CASES:
            adapter_case(outdir, *case)
    if only in (None, "loss"):
        loss_case(outdir)
    if only in (None, "sigmoid"):
        sigmoid_cases(outdir)
    total = sum(os.path.getsize(os.path.join(outdir, f)) for f in os.listdir(outdir))
    print("wrote %d files, %d bytes total, to %s" % (len(os.listdir(outdir)), total, outdir))


if __name__ == "__main__":
    main()
