#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Greedy k-DPP: fusemix (incremental, L never formed; lazy and eager evaluation) against Chen's
# greedy in numpy on a materialised L, on the same latents (N x 384, L2-normalised, kernel
# (a.b + 1)^2) and the same thread count; the machine's read bandwidth, and the time an eager
# selector that streams its data every pick could reach at it; then fusemix alone at N_BIG.
#
#   benchmarks/dpp/run.sh [path/to/bench_dpp]     (default: build/benchmarks/dpp/bench_dpp)
#
# Needs Debian's /usr/bin/python3 with python3-numpy on OpenBLAS (libopenblas-dev: Debian's
# numpy then uses it through libblas.so.3), 3.3 GB of memory for the float64 reference at
# N = 20,000, 5.5 GB for fusemix at N_BIG = 1,000,000, and a few minutes. numpy runs with
# OpenBLAS's own choice of kernel (OPENBLAS_CORETYPE unset): the peer at its strongest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${1:-build/benchmarks/dpp/bench_dpp}
python=/usr/bin/python3
n=${N:-20000} big=${N_BIG:-1000000} d=${D:-384} k=${K:-1000} seed=${SEED:-1} threads=${THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "command: $0 $*  (N=$n N_BIG=$big D=$d K=$k SEED=$seed THREADS=$threads)"
echo "date:    $(date)"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "numpy:   $("$python" -c 'import numpy; print(numpy.__version__)'), BLAS $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
echo
"$bench" --stream-gib 2 --threads "$threads" | tee "$tmp/stream.json"
"$bench" --n "$n" --d "$d" --seed "$seed" --latents-out "$tmp/z.npy"
"$bench" --n "$n" --d "$d" --k "$k" --seed "$seed" --threads "$threads" --picks-out "$tmp/ours.npy" | tee "$tmp/ours.json"
"$bench" --n "$n" --d "$d" --k "$k" --seed "$seed" --threads "$threads" --eager | tee "$tmp/eager.json"
for dt in float32 float64; do
  env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" \
    "$python" "$here/dpp_numpy.py" --in "$tmp/z.npy" --k "$k" --dtype $dt --compare "$tmp/ours.npy" | tee "$tmp/np${dt#float}.json"
done
"$bench" --n "$big" --d "$d" --k "$k" --seed "$seed" --threads "$threads" | tee "$tmp/big.json"

"$python" - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
ours, eager, np32, np64, big, stream = (json.load(open(f"{t}/{f}.json")) for f in ("ours", "eager", "np32", "np64", "big", "stream"))
print()
print("| run | N | threads | picks | stop | wall s | CPU s | peak RSS (MiB) | log det | picks equal to fusemix |")
print("|---|---:|---:|---:|---|---:|---:|---:|---:|---|")
def row(name, r, agree="-"):
    print(f"| {name} | {r['n']} | {r.get('threads', '-')} | {r['picks']} | {r['stop']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} "
          f"| {r['peak_rss_mib']:.0f} | {r['log_det']:.3f} | {agree} |")
row("fusemix, lazy (the default)", ours)
row("fusemix, eager", eager, "all, in order" if eager["log_det"] == ours["log_det"] else "see log det")
for name, r in (("numpy, materialised L, float32", np32), ("numpy, materialised L, float64", np64)):
    row(name, r, f"first {r['same_prefix']} in order, {r['overlap']} of {r['picks']} as a set")
row("fusemix, lazy", big)
print()
for name, r in (("float64", np64), ("float32", np32)):
    print(f"numpy {name} / fusemix at N = {ours['n']}: wall time {r['seconds'] / ours['seconds']:.1f}x, "
          f"CPU time {r['cpu_seconds'] / ours['cpu_seconds']:.1f}x (numpy spent {r['build_seconds']:.1f} s building L), "
          f"peak memory {r['peak_rss_mib'] / ours['peak_rss_mib']:.1f}x")
print(f"eager / lazy at N = {ours['n']}: {eager['seconds'] / ours['seconds']:.2f}x")
# What an eager selector must stream per pick t: the latents (N x D floats) for the kernel row,
# the c vectors so far (N x t floats) for the projection, and the new coordinate (N floats).
bw = stream["gb_per_s"] * 1e9
for r in (ours, big):
    n, dd, kk = r["n"], r["d"], r["picks"]
    total = sum(4 * n * (dd + t + 1) for t in range(kk))
    bound = total / bw
    print(f"N = {n}: an eager selector streams {total / kk / 1e6:.0f} MB per pick on average; at the measured "
          f"{stream['gb_per_s']:.1f} GB/s ({stream['threads']} threads) that is {bound:.2f} s for {kk} picks; "
          f"fusemix took {r['seconds']:.2f} s: {bound / r['seconds']:.2f}x the bound's speed")
PY
