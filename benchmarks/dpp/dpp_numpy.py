#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Reference for bench_dpp: the same greedy k-DPP (Chen et al. 2018, incremental Cholesky) in
numpy, on a *materialised* kernel matrix L = (Z Z^T + 1)^2, as a Python user would write it.

Run with Debian's /usr/bin/python3 (python3-numpy). Prints one JSON object: seconds (building L
plus the greedy loop; loading Z excluded, as bench_dpp excludes making it), cpu_seconds (user +
system time of the same span) and peak_rss_mib (ru_maxrss of the whole process). With --compare, also how far the picks agree with another run.

    dpp_numpy.py --in Z.npy --k 1000 [--dtype float32] [--picks-out P.npy] [--compare ours.npy]
"""
import argparse
import json
import resource
import sys
import time

import numpy as np


def greedy_kdpp(L, k, relative_threshold):
    """Picks in order, their gains (log d^2), and the stop reason. L is n x n, symmetric PSD."""
    n = L.shape[0]
    c = np.zeros((k, n), dtype=L.dtype)  # row s: coordinate s of every item
    d2 = np.diag(L).astype(np.float64)   # residuals
    threshold = relative_threshold * d2.max()
    picks, gains = [], []
    stop = "rank_exhausted"
    for t in range(k):
        j = int(np.argmax(d2))  # first index among equal maxima
        if not d2[j] > threshold:
            break
        picks.append(j)
        gains.append(float(np.log(d2[j])))
        if t + 1 == k:
            stop = "k_reached"
            break
        dj = np.sqrt(d2[j])
        e = (L[j, :] - c[:t, j] @ c[:t, :]) / dj
        c[t, :] = e
        d2 -= np.square(e, dtype=np.float64)
        d2[picks] = -np.inf
    return picks, gains, stop


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--in", dest="inp", required=True, help="latents, N x D .npy")
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="dtype of L and of the c vectors (float32: the smallest L numpy can hold)")
    ap.add_argument("--relative-threshold", type=float, default=1e-4)
    ap.add_argument("--picks-out")
    ap.add_argument("--compare", help="picks .npy of another run to compare with")
    a = ap.parse_args()

    z = np.load(a.inp).astype(a.dtype)
    start, cpu_start = time.perf_counter(), time.process_time()
    L = z @ z.T                     # n x n: the memory the incremental algorithm never needs
    np.add(L, 1, out=L)             # (a.b + 1)^2, in place
    np.square(L, out=L)
    built = time.perf_counter()
    picks, gains, stop = greedy_kdpp(L, a.k, a.relative_threshold)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux

    out = {"impl": "numpy", "dtype": a.dtype, "n": int(z.shape[0]), "d": int(z.shape[1]), "k": a.k,
           "picks": len(picks), "stop": stop, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
           "build_seconds": round(built - start, 3), "log_det": round(sum(gains), 6),
           "peak_rss_mib": round(peak_mib, 1)}
    if a.picks_out:
        np.save(a.picks_out, np.asarray(picks, dtype=np.int64))
    if a.compare:
        other = np.load(a.compare).tolist()
        same = 0
        while same < min(len(other), len(picks)) and other[same] == picks[same]:
            same += 1
        out["same_prefix"] = same
        out["overlap"] = len(set(other) & set(picks))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
