#!/usr/bin/python3
"""Generate the PyTorch training-parity fixture `train20` for the fusemix C++ tests.

20 AdamW steps of the full FuseMix step (paper's "permutation" mixing mode)
on two small adapters, run as the authors' code does it, once in float32 (the
reference the C++ float32 trainer must match) and once in float64.

Writes into tests/fixtures/parity/ (relative to the repository root):

  train20_init.safetensors   F32 initial parameters: vis_proj.*, text_proj.*, temp (shape [])
  train20_zx.npy             float32 [8, 12]   latents of modality X (rows aligned with zy)
  train20_zy.npy             float32 [8, 10]   latents of modality Y
  train20_lambdas.npy        float64 [20]      lambda_s ~ Beta(1, 1), one per step
  train20_perms.npy          int64   [160]     perm_s = [8s, 8s+8): row i is mixed with row perm_s[i]
  train20_losses_f32.npy     float64 [20]      loss of step s (before its update), float32 run
  train20_losses_f64.npy     float64 [20]      the same, float64 run
  train20_final.safetensors  F32 parameters after the 20 updates of the float32 run

One step s (s = 0..19), as in the reference code:

  mx = lam_s * zx + (1 - lam_s) * zx[perm_s]      (same lam_s, perm_s for zy)
  with no_grad: temp.clamp_(0.001, 0.5)
  sx = normalize(vis_proj(mx)), sy = normalize(text_proj(my))
  logits = sx @ sy.T / temp
  loss = (CE(logits, arange(8)) + CE(logits.T, arange(8))) / 2
  loss.backward(); AdamW step (lr 1e-3, betas (0.9, 0.999), eps 1e-8,
  weight decay 0.1 on Linear weight matrices, 0 elsewhere)

Requires only torch and numpy (Debian: python3-torch python3-numpy).
Module structure and safetensors helpers: tools/fusemix_torch.py.

Usage:  /usr/bin/python3 tools/make_training_fixtures.py [output_dir]
"""

import copy
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.dont_write_bytecode = True  # no tools/__pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusemix_torch import (make_proj, perturb_layernorms, read_safetensors,  # noqa: E402
                           symmetric_infonce, write_safetensors)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "parity")

NAME = "train20"
TORCH_SEED = 2001   # parameters (default init, then LN perturbation), then zx, zy
NUMPY_SEED = 2002   # lambdas, then perms (np.random.default_rng)
STEPS = 20
B = 8
DX, DY, DS = 12, 10, 8
DEPTH_X, DEPTH_Y = 1, 1
EXPANSION = 4
DROPOUT = 0.0
TEMP_INIT = 0.07
TEMP_MIN, TEMP_MAX = 0.001, 0.5
LR = 1e-3
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.1
ALPHA = 1.0


class FuseMixModel(nn.Module):
    """Parent module as in the reference code: vis_proj, text_proj, temp."""

    def __init__(self):
        super().__init__()
        self.vis_proj = make_proj(DX, DS, DEPTH_X, EXPANSION, DROPOUT)
        self.text_proj = make_proj(DY, DS, DEPTH_Y, EXPANSION, DROPOUT)
        self.temp = nn.Parameter(TEMP_INIT * torch.ones([]))


def decays(name):
    """True for Linear weight matrices (the parameters that get weight decay)."""
    if name.endswith("fn.0.weight") or name.endswith("fn.3.weight"):
        return True
    return name in ("vis_proj.%d.weight" % (DEPTH_X + 1), "text_proj.%d.weight" % (DEPTH_Y + 1))


def make_optimizer(model):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if decays(name) else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=LR, betas=BETAS, eps=EPS, foreach=False)


def train(model, zx, zy, lambdas, perms):
    """Runs STEPS FuseMix steps in the dtype of model/zx/zy; returns the losses."""
    opt = make_optimizer(model)
    model.train()  # dropout p = 0: deterministic
    losses = []
    for s in range(STEPS):
        lam = float(lambdas[s])
        perm = torch.from_numpy(perms[s])
        mx = lam * zx + (1.0 - lam) * zx[perm]
        my = lam * zy + (1.0 - lam) * zy[perm]
        with torch.no_grad():
            model.temp.clamp_(TEMP_MIN, TEMP_MAX)
        loss = symmetric_infonce(model.vis_proj(mx), model.text_proj(my), model.temp)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses, dtype="<f8")


def manual_train(params, zx, zy, lambdas, perms):
    """Independent re-implementation (functional forward + hand-written AdamW) of
    `train`, used as a self-check of the documented update formula."""
    import torch.nn.functional as F

    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    m = {k: torch.zeros_like(v) for k, v in p.items()}
    v2 = {k: torch.zeros_like(v) for k, v in p.items()}

    def adapter(prefix, depth, x):
        for i in range(depth):
            h = F.layer_norm(x, x.shape[-1:], p["%s.%d.ln.weight" % (prefix, i)],
                             p["%s.%d.ln.bias" % (prefix, i)], 1e-5)
            h = F.gelu(F.linear(h, p["%s.%d.fn.0.weight" % (prefix, i)],
                                p["%s.%d.fn.0.bias" % (prefix, i)]))
            x = x + F.linear(h, p["%s.%d.fn.3.weight" % (prefix, i)],
                             p["%s.%d.fn.3.bias" % (prefix, i)])
        x = F.layer_norm(x, x.shape[-1:], p["%s.%d.weight" % (prefix, depth)],
                         p["%s.%d.bias" % (prefix, depth)], 1e-5)
        return F.linear(x, p["%s.%d.weight" % (prefix, depth + 1)],
                        p["%s.%d.bias" % (prefix, depth + 1)])

    losses = []
    b1, b2 = BETAS
    for s in range(STEPS):
        lam = float(lambdas[s])
        perm = torch.from_numpy(perms[s])
        mx = lam * zx + (1.0 - lam) * zx[perm]
        my = lam * zy + (1.0 - lam) * zy[perm]
        with torch.no_grad():
            p["temp"].clamp_(TEMP_MIN, TEMP_MAX)
        loss = symmetric_infonce(adapter("vis_proj", DEPTH_X, mx),
                                 adapter("text_proj", DEPTH_Y, my), p["temp"])
        grads = torch.autograd.grad(loss, list(p.values()))
        t = s + 1
        with torch.no_grad():
            for (k, w), g in zip(p.items(), grads):
                wd = WEIGHT_DECAY if decays(k) else 0.0
                w.mul_(1 - LR * wd)
                m[k] = b1 * m[k] + (1 - b1) * g
                v2[k] = b2 * v2[k] + (1 - b2) * g * g
                denom = v2[k].sqrt() / np.sqrt(1 - b2 ** t) + EPS
                w.sub_(LR / (1 - b1 ** t) * m[k] / denom)
        losses.append(loss.item())
    return np.array(losses), {k: v.detach() for k, v in p.items()}


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    print("torch", torch.__version__, "numpy", np.__version__)

    torch.manual_seed(TORCH_SEED)
    model32 = FuseMixModel()            # PyTorch default init (vis_proj, then text_proj)
    perturb_layernorms(model32)         # LN weight 1 + 0.1 randn, bias 0.1 randn
    model32 = model32.float()
    zx32 = torch.randn(B, DX, dtype=torch.float32)
    zy32 = torch.randn(B, DY, dtype=torch.float32)

    rng = np.random.default_rng(NUMPY_SEED)
    lambdas = rng.beta(ALPHA, ALPHA, size=STEPS).astype("<f8")
    perms = np.stack([rng.permutation(B) for _ in range(STEPS)]).astype("<i8")

    init = {k: v.detach().clone() for k, v in model32.state_dict().items()}
    expected = ["temp"]
    for prefix, depth in (("vis_proj", DEPTH_X), ("text_proj", DEPTH_Y)):
        expected += ["%s.%d.%s" % (prefix, i, s) for i in range(depth)
                     for s in ("ln.weight", "ln.bias", "fn.0.weight", "fn.0.bias",
                               "fn.3.weight", "fn.3.bias")]
        expected += ["%s.%d.weight" % (prefix, depth), "%s.%d.bias" % (prefix, depth),
                     "%s.%d.weight" % (prefix, depth + 1), "%s.%d.bias" % (prefix, depth + 1)]
    assert sorted(init) == sorted(expected), sorted(init)
    assert init["temp"].shape == ()
    decayed = sorted(k for k in init if decays(k))
    assert decayed == ["text_proj.0.fn.0.weight", "text_proj.0.fn.3.weight", "text_proj.2.weight",
                       "vis_proj.0.fn.0.weight", "vis_proj.0.fn.3.weight", "vis_proj.2.weight"], decayed
    assert all(init[k].dim() == 2 for k in decayed)
    assert all(init[k].dim() < 2 for k in init if k not in decayed)

    model64 = copy.deepcopy(model32).double()
    zx64, zy64 = zx32.double(), zy32.double()

    losses32 = train(model32, zx32, zy32, lambdas, perms)
    losses64 = train(model64, zx64, zy64, lambdas, perms)
    final = {k: v.detach().clone() for k, v in model32.state_dict().items()}
    assert final["temp"].dtype == torch.float32

    write_safetensors(os.path.join(outdir, NAME + "_init.safetensors"),
                      {k: v.numpy() for k, v in init.items()}, "F32")
    write_safetensors(os.path.join(outdir, NAME + "_final.safetensors"),
                      {k: v.numpy() for k, v in final.items()}, "F32")
    np.save(os.path.join(outdir, NAME + "_zx.npy"), zx32.numpy().astype("<f4"))
    np.save(os.path.join(outdir, NAME + "_zy.npy"), zy32.numpy().astype("<f4"))
    np.save(os.path.join(outdir, NAME + "_lambdas.npy"), lambdas)
    # Flattened to rank 1 (the C++ index reader takes rank-1 integer arrays): step s is [8s, 8s+8).
    np.save(os.path.join(outdir, NAME + "_perms.npy"), perms.reshape(-1))
    np.save(os.path.join(outdir, NAME + "_losses_f32.npy"), losses32)
    np.save(os.path.join(outdir, NAME + "_losses_f64.npy"), losses64)

    # ---- self-checks ----
    for fname, ref in (("_init", init), ("_final", final)):
        rp, meta = read_safetensors(os.path.join(outdir, NAME + fname + ".safetensors"))
        assert meta == {"format": "pt"}
        assert sorted(rp) == sorted(ref)
        for k, v in ref.items():
            assert rp[k].dtype == np.float32 and rp[k].shape == tuple(v.shape), k
            assert np.array_equal(rp[k], v.numpy()), k
    # rerun the float32 training from the files just written: must be bit-identical
    rp, _ = read_safetensors(os.path.join(outdir, NAME + "_init.safetensors"))
    again = FuseMixModel().float()
    again.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in rp.items()}, strict=True)
    l_again = train(again,
                    torch.from_numpy(np.load(os.path.join(outdir, NAME + "_zx.npy"))),
                    torch.from_numpy(np.load(os.path.join(outdir, NAME + "_zy.npy"))),
                    np.load(os.path.join(outdir, NAME + "_lambdas.npy")),
                    np.load(os.path.join(outdir, NAME + "_perms.npy")).reshape(STEPS, B))
    assert np.array_equal(l_again, losses32), "float32 rerun from files differs"
    # independent float64 re-implementation (hand-written AdamW) matches torch's float64 run
    l_man, p_man = manual_train({k: v.double() for k, v in init.items()},
                                zx64, zy64, lambdas, perms)
    man_rel = np.max(np.abs(l_man - losses64) / np.abs(losses64))
    p_rel = max(((p_man[k] - v).abs().max() / v.abs().max()).item()
                for k, v in model64.state_dict().items())
    assert man_rel < 1e-12 and p_rel < 1e-10, (man_rel, p_rel)
    assert TEMP_MIN < final["temp"].item() < TEMP_MAX  # the clamp never binds here

    loss_rel = np.abs(losses32 - losses64) / np.abs(losses64)
    par_rel = {k: ((final[k].double() - v).abs().max() / v.abs().max()).item()
               for k, v in model64.state_dict().items()}
    worst = max(par_rel, key=par_rel.get)
    np.set_printoptions(precision=10, linewidth=110)
    print("lambdas", lambdas)
    print("losses_f32", losses32)
    print("losses_f64", losses64)
    print("temp: init %.10g, final f32 %.10g, final f64 %.10g"
          % (init["temp"].item(), final["temp"].item(), model64.temp.item()))
    print("f32 vs f64 loss: max rel diff %.3e (step %d); per step:"
          % (loss_rel.max(), int(loss_rel.argmax())))
    print("  ", " ".join("%.1e" % r for r in loss_rel))
    print("f32 vs f64 final params: max over tensors of max|a-b|/max|b| = %.3e (%s)"
          % (par_rel[worst], worst))
    print("hand-written float64 AdamW vs torch float64: loss %.1e, params %.1e" % (man_rel, p_rel))
    names = sorted(f for f in os.listdir(outdir) if f.startswith(NAME + "_"))
    total = sum(os.path.getsize(os.path.join(outdir, f)) for f in names)
    print("wrote %d files, %d bytes total, to %s" % (len(names), total, outdir))


if __name__ == "__main__":
    main()
