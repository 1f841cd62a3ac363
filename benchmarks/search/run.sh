#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Exact top-k search (cosine): fusemix::top_k against numpy (the same blocked float32 products on
# OpenBLAS, argpartition) and FAISS's IndexFlatIP, on the same random latents, same thread count.
#
#   benchmarks/search/run.sh [path/to/bench_search]   (default: build/benchmarks/search/bench_search)
#   QUERIES=10000 GALLERY=1000000 D=512 K=10 THREADS=2 benchmarks/search/run.sh
#
# Needs /usr/bin/python3 with python3-numpy (and python3-faiss for FAISS), memory for the gallery
# three times over (fusemix's, the .npy file in the page cache, numpy's: 6 GB at the defaults).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${1:-build/benchmarks/search/bench_search}
python=/usr/bin/python3
nq=${QUERIES:-10000} ng=${GALLERY:-1000000} d=${D:-512} k=${K:-10} threads=${THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "command: $0 $*  (QUERIES=$nq GALLERY=$ng D=$d K=$k THREADS=$threads)"
echo "date:    $(date)"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-unset (OpenBLAS picks its kernel)}"
echo "numpy BLAS: $(readlink -f /etc/alternatives/libblas.so.3-$(gcc -print-multiarch) 2>/dev/null || echo unknown)"
echo
# Data first (not timed), then each peer in its own process.
"$bench" --queries "$nq" --gallery "$ng" --d "$d" --k "$k" --threads "$threads" --write "$tmp" \
  --indices-out "$tmp/ours.npy" | tee "$tmp/ours.json"
OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads "$python" "$here/peers.py" --dir "$tmp" --k "$k" \
  --threads "$threads" --compare "$tmp/ours.npy" | tee "$tmp/peers.json"
"$python" - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
ours = json.load(open(f"{t}/ours.json"))
peers = [json.loads(l) for l in open(f"{t}/peers.json")]
print()
print("| peer | wall s | peak RSS (MiB) | peer / fusemix (time) | same top-k lists as fusemix |")
print("|---|---:|---:|---:|---:|")
print(f"| fusemix top_k ({ours['gemm']} GEMM) | {ours['seconds']:.2f} | {ours['peak_rss_mib']:.0f} | 1.00 | - |")
for p in peers:
    if "skipped" in p:
        print(f"| {p['peer']} | skipped: {p['skipped']} | | | |")
        continue
    print(f"| {p['peer']} | {p['seconds']:.2f} | {p['peak_rss_mib']:.0f} | {p['seconds'] / ours['seconds']:.2f} "
          f"| {100 * p['same_lists_as_fusemix']:.1f}% |")
PY
