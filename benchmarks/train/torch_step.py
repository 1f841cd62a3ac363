#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The PyTorch peer of `fusemix bench train`: times full FuseMix training steps on random latents.

One step, as fusemix's trainer::step (include/fusemix/trainer.hpp, loss.hpp, mixup.hpp):

  * the data are B float32 standard-normal rows per modality (dim_x and dim_y wide), and every
    step uses all B of them;
  * temperature clamped to [0.001, 0.5] (as the trainer does before every step);
  * lambda ~ Beta(alpha, alpha); mixup with ONE pairing shared by both modalities:
    permutation mode: mixed = lambda * z + (1 - lambda) * z[perm]  (B mixed rows),
    halves mode:      mixed = lambda * z[:B/2] + (1 - lambda) * z[B/2:]  (B/2 mixed rows);
  * hx = proj_x(mixed_x), hy = proj_y(mixed_y) in train mode (dropout active), with the authors'
    adapters (tools/fusemix_torch.py make_proj: depth x [x + Linear(GELU(Linear(LN(x))))], LN, Linear);
  * symmetric InfoNCE on L2-normalised outputs, logits = nx @ ny.T / tau, tau learnable (initially
    0.07), loss = (CE(logits, arange) + CE(logits.T, arange)) / 2;
  * backward; AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-8; weight decay 0.1 on Linear weights,
    0 on biases, LayerNorms and tau); zero_grad(set_to_none=True).

Each full step (mixing included) is timed with time.perf_counter; the report is the median over
the timed steps after the warm-up ones. --mode compile wraps forward + loss in torch.compile
(torch >= 2 only; exits with status 3 otherwise); compilation happens in the first warm-up step,
so keep --warmup >= 1 there. --autocast-bf16 runs forward + loss under CPU
autocast to bfloat16.

Run with Debian's /usr/bin/python3 (python3-torch 1.13) or any torch 2.x:

    benchmarks/train/torch_step.py --dim-x 1024 --dim-y 768 --depth-x 2 --depth-y 2 \\
        --batch 2048 --threads 2 --json

With --json it prints ONE JSON object (field names as `fusemix bench train --json` where they
apply): dim_x, dim_y, depth_x, depth_y, batch, threads, steps, ms_per_step, samples_per_s,
gemm_gflop_per_step, gflops, peak_rss_mib, torch_version, mode, plus mixed_rows, ms_min, ms_max,
the other settings, parameters, and the first and last timed steps' losses (first_loss,
last_loss). Without --json, one human-readable line.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time


def gemm_flop_per_step(dim_x, dim_y, depth_x, depth_y, batch, shared_dim, expansion, mix):
    """GEMM floating-point operations of one training step; `fusemix bench train` counts the same.

    Let m be the mixed rows (batch in permutation mode, batch/2 in halves mode) and D = shared_dim.
    Every Linear of in x out features costs 6*m*in*out: 2*m*in*out forward, 4*m*in*out backward
    (input gradient and weight gradient; counted for the first Linear too, for simplicity).
    Adapter of input width d and depth N: N blocks of Linear(d, e*d) and Linear(e*d, d), then
    Linear(d, D). The loss adds three m x m x D GEMMs (logits forward, two in backward):
    3 * 2*m*m*D. Bias additions, LayerNorm, GELU, normalisation, softmax and AdamW are not counted.
    """
    m = batch // 2 if mix == "halves" else batch

    def linear(i, o):
        return 6 * m * i * o

    def adapter(d, depth):
        return depth * (linear(d, expansion * d) + linear(expansion * d, d)) + linear(d, shared_dim)

    return adapter(dim_x, depth_x) + adapter(dim_y, depth_y) + 3 * 2 * m * m * shared_dim


def parse_args(argv):
    p = argparse.ArgumentParser(description="Time FuseMix training steps in PyTorch (peer of `fusemix bench train`).")
    p.add_argument("--dim-x", type=int, default=1024, help="width of the X latents (default 1024)")
    p.add_argument("--dim-y", type=int, default=768, help="width of the Y latents (default 768)")
    p.add_argument("--depth-x", type=int, default=2, help="residual blocks of adapter X (default 2)")
    p.add_argument("--depth-y", type=int, default=2, help="residual blocks of adapter Y (default 2)")
    p.add_argument("--batch", type=int, default=2048, help="rows per step, B (default 2048)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads: torch.set_num_threads, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS "
                        "(default 1)")
    p.add_argument("--shared-dim", type=int, default=512, help="adapter output width (default 512)")
    p.add_argument("--expansion", type=int, default=4, help="block hidden width / input width (default 4)")
    p.add_argument("--dropout", type=float, default=0.6, help="dropout probability (default 0.6)")
    p.add_argument("--alpha", type=float, default=1.0, help="lambda ~ Beta(alpha, alpha) (default 1)")
    p.add_argument("--mix", choices=("permutation", "halves"), default="permutation",
                   help="pairing of the mixed rows (default permutation)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, weights, lambda, pairing, dropout (default 0)")
    p.add_argument("--mode", choices=("eager", "compile"), default="eager",
                   help="eager, or torch.compile of forward + loss (torch >= 2) (default eager)")
    p.add_argument("--autocast-bf16", action="store_true", help="forward + loss under CPU autocast to bfloat16")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    for name in ("dim_x", "dim_y", "batch", "shared_dim", "expansion", "steps", "threads"):
        if getattr(a, name) < 1:
            p.error("--%s must be at least 1" % name.replace("_", "-"))
    for name in ("depth_x", "depth_y", "warmup"):
        if getattr(a, name) < 0:
            p.error("--%s must not be negative" % name.replace("_", "-"))
    if not 0 <= a.dropout <= 1:
        p.error("--dropout must be in [0, 1]")
    if not a.alpha > 0:
        p.error("--alpha must be positive")
    if a.mix == "halves" and a.batch % 2:
        p.error("--mix halves needs an even --batch")
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Debian's torch reaches OpenBLAS (pthreads build), which sizes its own pool from the
    # environment when loaded, not from torch.set_num_threads: set both before importing torch.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    # Before anything else runs in parallel: set_num_interop_threads raises once that has happened.
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
    from fusemix_torch import make_proj

    if args.mode == "compile" and not hasattr(torch, "compile"):
        print("torch_step.py: --mode compile needs torch >= 2 (torch.compile); this is torch %s"
              % torch.__version__, file=sys.stderr)
        return 3

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    B = args.batch
    zx = torch.randn(B, args.dim_x, dtype=torch.float32)
    zy = torch.randn(B, args.dim_y, dtype=torch.float32)
    proj_x = make_proj(args.dim_x, args.shared_dim, args.depth_x, args.expansion, args.dropout)
    proj_y = make_proj(args.dim_y, args.shared_dim, args.depth_y, args.expansion, args.dropout)
    proj_x.train()
    proj_y.train()
    temp = nn.Parameter(torch.tensor(0.07, dtype=torch.float32))

    decay, no_decay = [], []
    for module in (proj_x, proj_y):
        for m in module.modules():
            if isinstance(m, nn.Linear):
                decay.append(m.weight)
                if m.bias is not None:
                    no_decay.append(m.bias)
            elif isinstance(m, nn.LayerNorm):
                no_decay.extend(m.parameters())
    no_decay.append(temp)
    n_params = sum(p.numel() for p in proj_x.parameters()) + sum(p.numel() for p in proj_y.parameters())
    assert sum(p.numel() for p in decay + no_decay) == n_params + 1  # every parameter in one group, and tau
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    labels = torch.arange(B // 2 if args.mix == "halves" else B)

    def forward_loss(mx, my):
        nx = F.normalize(proj_x(mx), dim=-1, eps=1e-12)
        ny = F.normalize(proj_y(my), dim=-1, eps=1e-12)
        logits = nx @ ny.t() / temp
        if logits.dtype != torch.float32:  # autocast: cross-entropy in float32
            logits = logits.float()
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))

    fn = torch.compile(forward_loss) if args.mode == "compile" else forward_loss

    def step():
        with torch.no_grad():
            temp.clamp_(0.001, 0.5)
        lam = float(rng.beta(args.alpha, args.alpha))
        if args.mix == "halves":
            h = B // 2
            mx = lam * zx[:h] + (1 - lam) * zx[h:]
            my = lam * zy[:h] + (1 - lam) * zy[h:]
        else:
            perm = torch.from_numpy(rng.permutation(B))  # one pairing for both modalities
            mx = lam * zx + (1 - lam) * zx[perm]
            my = lam * zy + (1 - lam) * zy[perm]
        if args.autocast_bf16:
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                loss = fn(mx, my)
        else:
            loss = fn(mx, my)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())  # as trainer::step, which returns the loss

    for _ in range(args.warmup):
        step()
    times, losses = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)

    ms = 1e3 * statistics.median(times)
    flop = gemm_flop_per_step(args.dim_x, args.dim_y, args.depth_x, args.depth_y, B, args.shared_dim,
                              args.expansion, args.mix)
    r = {
        "dim_x": args.dim_x, "dim_y": args.dim_y, "depth_x": args.depth_x, "depth_y": args.depth_y,
        "batch": B, "mixed_rows": int(labels.numel()), "threads": torch.get_num_threads(),
        "steps": args.steps, "warmup": args.warmup,
        "shared_dim": args.shared_dim, "expansion": args.expansion, "dropout": args.dropout,
        "alpha": args.alpha, "mix": args.mix, "seed": args.seed,
        "ms_per_step": ms,
        "ms_min": 1e3 * min(times), "ms_max": 1e3 * max(times),
        "samples_per_s": B / (ms / 1e3),
        "gemm_gflop_per_step": flop / 1e9,
        "gflops": flop / 1e9 / (ms / 1e3),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": n_params,  # the adapters' (tau not counted)
        "first_loss": losses[0], "last_loss": losses[-1],
        "torch_version": torch.__version__, "mode": args.mode, "autocast_bf16": args.autocast_bf16,
    }
    if args.json:
        print(json.dumps(r))
    else:
        print("torch %s %s%s: X %dx%d depth %d, Y %dx%d depth %d, %s, %d threads: %.2f ms/step (median of %d), "
              "%.0f samples/s, %.3f GFLOP/step, %.2f GFLOP/s, peak RSS %.0f MiB"
              % (r["torch_version"], r["mode"], " bf16" if args.autocast_bf16 else "", B, args.dim_x, args.depth_x,
                 B, args.dim_y, args.depth_y, args.mix, r["threads"], ms, args.steps, r["samples_per_s"],
                 r["gemm_gflop_per_step"], r["gflops"], r["peak_rss_mib"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
