# SPDX-License-Identifier: Apache-2.0
"""Exact top-k search by cosine similarity in PyTorch on a GPU, the peer of bench_search_gpu
(benchmarks/gpu/run.sh), set up as a performance-minded user would: float32 rows normalised
on the device, blocked products (4,096 queries x 16,384 gallery rows, fusemix's GPU blocks),
each block's best k by torch.topk over [best so far, block], all on one stream.

Two variants, each timed after a warm-up and ending in a synchronising copy of the result:
  host      the latents start in (pinned) host memory and the gallery is sent a block at a time,
            as fusemix::top_k on the GPU receives them;
  resident  the gallery is already on the device (normalised there, not timed): its best case.

Random normal latents of the requested shape (generated on the device; the timing does not
depend on the values). Prints one JSON line per variant.

    torch_search.py --queries 10000 --gallery 1000000 --d 512 --k 10 [--precision fp32|tf32]
"""
import argparse
import json
import time

import torch


def search(q, g_blocks, k, qb=4096):
    """q: normalised queries on the device; g_blocks: iterable of (first row, device block)."""
    best_s = best_i = None
    for g0, blk in g_blocks:
        blk = torch.nn.functional.normalize(blk, dim=1)
        s_parts, i_parts = [], []
        for q0 in range(0, q.shape[0], qb):
            sims = q[q0:q0 + qb] @ blk.T
            s, i = torch.topk(sims, min(k, sims.shape[1]), dim=1)
            s_parts.append(s)
            i_parts.append(i + g0)
        s, i = torch.cat(s_parts), torch.cat(i_parts)
        if best_s is None:
            best_s, best_i = s, i
        else:
            cs, ci = torch.cat([best_s, s], 1), torch.cat([best_i, i], 1)
            best_s, at = torch.topk(cs, k, dim=1)
            best_i = torch.gather(ci, 1, at)
    return best_s, best_i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--gallery", type=int, default=1000000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--gallery-block", type=int, default=16384)
    ap.add_argument("--precision", choices=["fp32", "tf32"], default="fp32")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(1)
    q_dev = torch.randn(a.queries, a.d, device=dev, generator=gen)
    g_dev = torch.randn(a.gallery, a.d, device=dev, generator=gen)
    q_host, g_host = q_dev.cpu().pin_memory(), g_dev.cpu().pin_memory()
    gb = a.gallery_block

    def host_run(q_h, g_h):
        q = torch.nn.functional.normalize(q_h.to(dev, non_blocking=True), dim=1)
        blocks = ((g0, g_h[g0:g0 + gb].to(dev, non_blocking=True)) for g0 in range(0, g_h.shape[0], gb))
        s, i = search(q, blocks, a.k)
        return s.cpu(), i.cpu()

    g_norm = torch.nn.functional.normalize(g_dev, dim=1)

    def resident_run(q_h, g_n):
        q = torch.nn.functional.normalize(q_h.to(dev, non_blocking=True), dim=1)
        blocks = ((g0, g_n[g0:g0 + gb]) for g0 in range(0, g_n.shape[0], gb))
        s, i = search(q, blocks, a.k)
        return s.cpu(), i.cpu()

    for name, run, gallery in (("host", host_run, g_host), ("resident", resident_run, g_norm)):
        run(q_host[:64], gallery[:4096])  # warm-up: kernels, cuBLAS handles, the caching allocator
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run(q_host, gallery)
        secs = time.perf_counter() - t0
        print(json.dumps({"bench": "search", "impl": f"torch {name}", "queries": a.queries, "gallery": a.gallery,
                          "d": a.d, "k": a.k, "precision": a.precision, "gpu_seconds": round(secs, 4),
                          "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
