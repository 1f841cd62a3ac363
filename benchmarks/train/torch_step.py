#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The PyTorch peer of `fusemix bench train`: times full FuseMix training steps on random latents.

One step, as fusemix's trainer::step (include/fusemix/train/trainer.hpp, loss/contrastive.hpp, train/mixup.hpp):

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

On the CPU (the default; GPU mode below), each full step (mixing included) is timed with
time.perf_counter; the report is the median over the timed steps after the warm-up ones.
--mode compile wraps forward + loss in torch.compile (torch >= 2 only; exits with status 3
otherwise); compilation happens in the first warm-up step, so keep --warmup >= 1 there.
--autocast-bf16 runs forward + loss under CPU autocast to bfloat16 (CUDA autocast with
--device cuda).

Run with Debian's /usr/bin/python3 (python3-torch 1.13) or any torch 2.x:

    benchmarks/train/torch_step.py --dim-x 1024 --dim-y 768 --depth-x 2 --depth-y 2 \\
        --batch 2048 --threads 2 --json

With --json it prints ONE JSON object (field names as `fusemix bench train --json` where they
apply): dim_x, dim_y, depth_x, depth_y, batch, threads, steps, ms_per_step, samples_per_s,
gemm_gflop_per_step, gflops, peak_rss_mib, torch_version, mode, plus mixed_rows, ms_min, ms_max,
the other settings, parameters, and the first and last timed steps' losses (first_loss,
last_loss). Without --json, one human-readable line.

--precision {fp32,tf32,bf16} (default fp32) names the arithmetic. On the CPU only fp32 and bf16
are valid, and bf16 is exactly --autocast-bf16 (kept as an alias; the two may be given together,
but --autocast-bf16 with --precision fp32 or tf32 is an error).

GPU mode, --device cuda (default --device cpu, which is everything above, unchanged):

  * data, adapters, tau, labels and the optimizer state all live on cuda:0; the latents are
    float32 standard normal drawn ON THE DEVICE from a torch.Generator seeded with --seed, and the
    permutation of each step is torch.randperm on the device from that generator (lambda is still
    one numpy Beta draw on the host: a Python scalar, no transfer, no synchronisation); the
    weights are initialised on the CPU from torch.manual_seed(--seed) and moved, dropout uses the
    device's default generator (seeded by the same torch.manual_seed);
  * --precision fp32: torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 =
    False and torch.set_float32_matmul_precision('highest') (IEEE fp32 GEMMs); tf32: both True and
    set_float32_matmul_precision('high'); bf16: TF32 off as for fp32, and forward + loss under
    torch.autocast(device_type='cuda', dtype=torch.bfloat16) (logits cast back to float32 for the
    cross-entropy; backward and AdamW as usual, on the float32 master weights). Only the legacy
    TF32 switches are used, never the per-backend fp32_precision API of torch >= 2.9, whose mixing
    with the legacy getters that inductor still reads is refused by torch;
  * AdamW is torch.optim.AdamW(fused=True) when that torch accepts it, foreach=True otherwise
    (reported as "optimizer": "fused" or "foreach");
  * --mode compile: as on the CPU; torch.compile is lazy, so compilation happens in the first
    (warm-up) step, and if that step fails for any reason but running out of device memory,
    the script prints one line on stderr and exits with status 3;
  * timing: every step, warm-up or timed, ends with torch.cuda.synchronize(); each timed step is
    bracketed by two torch.cuda.Event(enable_timing=True) records on the current stream, the first
    before the tau clamp and the mixing, the second after AdamW's step and zero_grad. As the
    device is idle when the first event is recorded (synchronised after the previous step),
    the elapsed time covers the whole step, mixing and host-side launch gaps included. The loss
    is read back (float) after the synchronisation, outside the interval. ms_per_step is the
    median over the timed steps, ms_min and ms_max their extremes;
  * the JSON object has every field above (peak_rss_mib is the host process's), then device
    ("cuda:0"), device_name (torch.cuda.get_device_name), precision, optimizer, steps_per_s
    (1000 / ms_per_step) and peak_gpu_mib (torch.cuda.max_memory_allocated after the run, MiB,
    warm-up and compilation included). With --device cpu the JSON has exactly the fields it
    always had;
  * exits with status 4, one line on stderr, when torch.cuda.is_available() is False.

On the GPU (e.g. an H200, torch 2.x with CUDA):

    benchmarks/train/torch_step.py --device cuda --precision bf16 --mode compile \\
        --dim-x 1536 --dim-y 1024 --depth-x 4 --depth-y 4 --batch 20480 --shared-dim 512 --json
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
    p.add_argument("--autocast-bf16", action="store_true",
                   help="forward + loss under autocast to bfloat16 (the same as --precision bf16)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where everything runs: cpu, or cuda (cuda:0) (default cpu)")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default=None,
                   help="fp32, tf32 (cuda only: TF32 GEMMs), or bf16 (forward + loss under autocast) "
                        "(default fp32)")
    p.add_argument("--malloc", choices=("stock", "tuned"), default="stock",
                   help="glibc malloc as it comes (default), or tuned as a performance-minded user "
                        "would: freed tensors kept for reuse instead of returned to the kernel")
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
    if a.autocast_bf16 and a.precision not in (None, "bf16"):
        p.error("--autocast-bf16 contradicts --precision %s" % a.precision)
    if a.precision is None:
        a.precision = "bf16" if a.autocast_bf16 else "fp32"
    if a.precision == "tf32" and a.device != "cuda":
        p.error("--precision tf32 needs --device cuda")
    a.autocast_bf16 = a.precision == "bf16"
    return a


def tune_malloc():
    """glibc mallopt as jemalloc or tcmalloc users get by default: no mmap for large blocks
    (M_MMAP_MAX 0) and no trimming of the heap's top (M_TRIM_THRESHOLD 1 GiB), so a step's freed
    activations are reused by the next step instead of unmapped and page-faulted (and zeroed by
    the kernel) afresh. Returns True when both calls succeed."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.malloc == "tuned" and not tune_malloc():
        print("torch_step.py: --malloc tuned: mallopt failed", file=sys.stderr)
        return 5
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

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("torch_step.py: --device cuda: no CUDA device", file=sys.stderr)
        return 4

    if args.mode == "compile" and not hasattr(torch, "compile"):
        print("torch_step.py: --mode compile needs torch >= 2 (torch.compile); this is torch %s"
              % torch.__version__, file=sys.stderr)
        return 3

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    B = args.batch
    if cuda:
        dev = torch.device("cuda", 0)
        torch.cuda.set_device(dev)
        # Legacy switches only (see the docstring): set_float32_matmul_precision first, then the
        # allow_tf32 flags, which agree with it.
        tf32 = args.precision == "tf32"
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        gen = torch.Generator(device=dev)
        gen.manual_seed(args.seed)
        zx = torch.randn(B, args.dim_x, dtype=torch.float32, device=dev, generator=gen)
        zy = torch.randn(B, args.dim_y, dtype=torch.float32, device=dev, generator=gen)
    else:
        dev = torch.device("cpu")
        zx = torch.randn(B, args.dim_x, dtype=torch.float32)
        zy = torch.randn(B, args.dim_y, dtype=torch.float32)
    proj_x = make_proj(args.dim_x, args.shared_dim, args.depth_x, args.expansion, args.dropout)
    proj_y = make_proj(args.dim_y, args.shared_dim, args.depth_y, args.expansion, args.dropout)
    if cuda:
        proj_x.to(dev)  # in place: the Parameter objects stay the same
        proj_y.to(dev)
    proj_x.train()
    proj_y.train()
    temp = nn.Parameter(torch.tensor(0.07, dtype=torch.float32, device=dev))

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

    def adamw(**impl):
        # Fresh group dicts every time: the constructor fills its defaults into them.
        return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                  {"params": no_decay, "weight_decay": 0.0}],
                                 lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **impl)

    optimizer = None  # reported on cuda only
    if cuda:
        try:
            opt = adamw(fused=True)
            optimizer = "fused"
        except (TypeError, ValueError, RuntimeError):  # no fused AdamW in this torch, or not here
            opt = adamw(foreach=True)
            optimizer = "foreach"
    else:
        opt = adamw()

    labels = torch.arange(B // 2 if args.mix == "halves" else B, device=dev)

    def forward_loss(mx, my):
        nx = F.normalize(proj_x(mx), dim=-1, eps=1e-12)
        ny = F.normalize(proj_y(my), dim=-1, eps=1e-12)
        logits = nx @ ny.t() / temp
        if logits.dtype != torch.float32:  # autocast: cross-entropy in float32
            logits = logits.float()
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))

    fn = torch.compile(forward_loss) if args.mode == "compile" else forward_loss

    def step_loss():
        """One full step; returns the loss tensor (not read back, so nothing waits for the device)."""
        with torch.no_grad():
            temp.clamp_(0.001, 0.5)
        lam = float(rng.beta(args.alpha, args.alpha))
        if args.mix == "halves":
            h = B // 2
            mx = lam * zx[:h] + (1 - lam) * zx[h:]
            my = lam * zy[:h] + (1 - lam) * zy[h:]
        else:
            if cuda:  # one pairing for both modalities, drawn on the device
                perm = torch.randperm(B, device=dev, generator=gen)
            else:
                perm = torch.from_numpy(rng.permutation(B))  # one pairing for both modalities
            mx = lam * zx + (1 - lam) * zx[perm]
            my = lam * zy + (1 - lam) * zy[perm]
        if args.autocast_bf16:
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
                loss = fn(mx, my)
        else:
            loss = fn(mx, my)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def step():
        return float(step_loss())  # as trainer::step, which returns the loss

    times, losses = [], []  # seconds, floats
    if cuda:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        for i in range(args.warmup + args.steps):
            timed = i >= args.warmup
            if timed:
                start.record()
            try:
                loss = step_loss()
                if timed:
                    end.record()
                torch.cuda.synchronize()
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # torch.compile is lazy: it fails in the first step
                if args.mode != "compile" or i > 0:
                    raise
                msg = " ".join(str(e).split())
                print("torch_step.py: --mode compile failed (torch %s): %s: %s"
                      % (torch.__version__, type(e).__name__, msg[:400]), file=sys.stderr)
                return 3
            if timed:
                times.append(start.elapsed_time(end) / 1e3)
                losses.append(float(loss))
    else:
        for _ in range(args.warmup):
            step()
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
        "torch_version": torch.__version__, "mode": args.mode, "malloc": args.malloc,
        "autocast_bf16": args.autocast_bf16,
    }
    if cuda:  # the CPU report keeps exactly its old fields
        r.update({
            "device": str(dev), "device_name": torch.cuda.get_device_name(dev),
            "precision": args.precision, "optimizer": optimizer,
            "steps_per_s": 1e3 / ms,
            "peak_gpu_mib": torch.cuda.max_memory_allocated(dev) / 2**20,
        })
    if args.json:
        print(json.dumps(r))
    elif cuda:
        print("torch %s %s %s on %s (%s), AdamW %s: X %dx%d depth %d, Y %dx%d depth %d, %s: %.2f ms/step "
              "(median of %d, min %.2f, max %.2f), %.2f steps/s, %.0f samples/s, %.3f GFLOP/step, %.1f GFLOP/s, "
              "peak GPU memory %.0f MiB"
              % (r["torch_version"], r["mode"], args.precision, r["device"], r["device_name"], optimizer,
                 B, args.dim_x, args.depth_x, B, args.dim_y, args.depth_y, args.mix, ms, args.steps,
                 r["ms_min"], r["ms_max"], r["steps_per_s"], r["samples_per_s"], r["gemm_gflop_per_step"],
                 r["gflops"], r["peak_gpu_mib"]))
    else:
        print("torch %s %s%s: X %dx%d depth %d, Y %dx%d depth %d, %s, %d threads: %.2f ms/step (median of %d), "
              "%.0f samples/s, %.3f GFLOP/step, %.2f GFLOP/s, peak RSS %.0f MiB"
              % (r["torch_version"], r["mode"], " bf16" if args.autocast_bf16 else "", B, args.dim_x, args.depth_x,
                 B, args.dim_y, args.depth_y, args.mix, r["threads"], ms, args.steps, r["samples_per_s"],
                 r["gemm_gflop_per_step"], r["gflops"], r["peak_rss_mib"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
