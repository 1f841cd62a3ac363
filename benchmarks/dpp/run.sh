#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Greedy k-DPP: fusemix (incremental, L never formed) against numpy on a materialised L, on the
# same latents (N x 384, L2-normalised, kernel (a.b + 1)^2), then fusemix alone at N = 200,000.
#
#   benchmarks/dpp/run.sh [path/to/bench_dpp]     (default: build/benchmarks/dpp/bench_dpp)
#
# Needs Debian's /usr/bin/python3 with python3-numpy, about 2 GB of memory for the float32
# reference at N = 20,000 (3.3 GB for the float64 one) and a few minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${1:-build/benchmarks/dpp/bench_dpp}
python=/usr/bin/python3
n=${N:-20000} big=${N_BIG:-200000} d=${D:-384} k=${K:-1000} seed=${SEED:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "command: $0 $*  (N=$n N_BIG=$big D=$d K=$k SEED=$seed)"
echo "date:    $(date)"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$bench" --n "$n" --d "$d" --seed "$seed" --latents-out "$tmp/z.npy"
"$bench" --n "$n" --d "$d" --k "$k" --seed "$seed" --picks-out "$tmp/ours.npy" | tee "$tmp/ours.json"
"$python" "$here/dpp_numpy.py" --in "$tmp/z.npy" --k "$k" --dtype float32 --compare "$tmp/ours.npy" | tee "$tmp/np32.json"
"$python" "$here/dpp_numpy.py" --in "$tmp/z.npy" --k "$k" --dtype float64 --compare "$tmp/ours.npy" | tee "$tmp/np64.json"
"$bench" --n "$big" --d "$d" --k "$k" --seed "$seed" | tee "$tmp/big.json"

"$python" - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
ours, np32, np64, big = (json.load(open(f"{t}/{f}.json")) for f in ("ours", "np32", "np64", "big"))
print()
print("| run | N | picks | stop | wall s | CPU s | peak RSS (MiB) | log det | picks equal to fusemix |")
print("|---|---:|---:|---|---:|---:|---:|---:|---|")
def row(name, r, agree="-"):
    print(f"| {name} | {r['n']} | {r['picks']} | {r['stop']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} "
          f"| {r['peak_rss_mib']:.0f} | {r['log_det']:.3f} | {agree} |")
row("fusemix (float latents and c, double accumulation)", ours)
for name, r in (("numpy, materialised L, float32", np32), ("numpy, materialised L, float64", np64)):
    row(name, r, f"first {r['same_prefix']} in order, {r['overlap']} of {r['picks']} as a set")
row("fusemix", big)
print()
for name, r in (("float32", np32), ("float64", np64)):
    print(f"numpy {name} / fusemix at N = {ours['n']}: wall time {r['seconds'] / ours['seconds']:.1f}x, "
          f"CPU time {r['cpu_seconds'] / ours['cpu_seconds']:.1f}x (numpy spent {r['build_seconds']:.1f} s building L), "
          f"peak memory {r['peak_rss_mib'] / ours['peak_rss_mib']:.1f}x")
n = big["n"]
print(f"materialised L at N = {n}: {n * n * 4 / 2**30:.0f} GiB in float32, {n * n * 8 / 2**30:.0f} GiB in float64 "
      f"(fusemix peak: {big['peak_rss_mib'] / 1024:.2f} GiB)")
PY
