# SPDX-License-Identifier: Apache-2.0
"""Exact top-k search by cosine similarity in numpy (OpenBLAS) and FAISS, for benchmarks/search/run.sh.

numpy, set up as a performance-minded user would: rows normalised once (float32; timed, as
fusemix's normalisation is), blocked matrix products (4,096 queries, as fusemix::top_k, x 16,384
gallery rows: the faster of the gallery blocks tried, 1,024 and 16,384, with fewer Python
iterations), each block's best k by argpartition, merged across blocks, then sorted. FAISS: IndexFlatIP over the normalised
gallery (its exact inner-product search, blocked internally). Threads: OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS, set by run.sh before Python starts. Prints one JSON line per peer.

    peers.py --dir DIR --k K --threads T [--compare ours.npy]
"""
import argparse
import json
import resource
import time

import numpy as np


def normalise(x):
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    return (x / n).astype(np.float32, copy=False)


def numpy_top_k(q, g, k, qb=4096, gb=16384):
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for q0 in range(0, q.shape[0], qb):
        qq = q[q0:q0 + qb]
        cand_s, cand_i = [], []
        for g0 in range(0, g.shape[0], gb):
            s = qq @ g[g0:g0 + gb].T
            kk = min(k, s.shape[1])
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            cand_i.append(part + g0)
            cand_s.append(np.take_along_axis(s, part, axis=1))
        s = np.concatenate(cand_s, axis=1)
        i = np.concatenate(cand_i, axis=1)
        order = np.lexsort((i, -s), axis=1)[:, :k]  # higher score, then lower index
        out[q0:q0 + qb] = np.take_along_axis(i, order, axis=1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare")
    a = ap.parse_args()
    # Raw latents, as fusemix::top_k gets them: each peer's timing includes normalising them.
    q_raw = np.load(f"{a.dir}/q.npy")
    g_raw = np.load(f"{a.dir}/g.npy")
    q, g = q_raw, g_raw  # (shapes for the report)
    ours = np.load(a.compare) if a.compare else None

    def report(peer, seconds, idx, **extra):
        r = {"peer": peer, "queries": q.shape[0], "gallery": g.shape[0], "d": q.shape[1], "k": a.k,
             "threads": a.threads, "seconds": round(seconds, 3),
             "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        if ours is not None:
            r["same_lists_as_fusemix"] = float((idx == ours).all(axis=1).mean())
        r.update(extra)
        print(json.dumps(r), flush=True)

    t = time.perf_counter()
    idx = numpy_top_k(normalise(q_raw), normalise(g_raw), a.k)
    report("numpy (blocks 4,096 x 16,384)", time.perf_counter() - t, idx, numpy=np.__version__)
    try:
        import faiss
    except ImportError:
        print(json.dumps({"peer": "faiss", "skipped": "python3-faiss not installed"}))
        return
    faiss.omp_set_num_threads(a.threads)
    t = time.perf_counter()
    index = faiss.IndexFlatIP(g_raw.shape[1])
    index.add(normalise(g_raw))
    _, fi = index.search(normalise(q_raw), a.k)
    report("faiss IndexFlatIP", time.perf_counter() - t, fi, faiss=faiss.__version__)


if __name__ == "__main__":
    main()
