#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Data-parallel training on one machine: the S1 step (1,024/768 -> 512, depth 2/2, batch 2,048)
# as 1 process x 2 threads against 2 MPI ranks x 1 thread, alternating REPEAT times, with the
# bytes each rank hands to MPI per step against the cost model of docs/distributed.md.
#
#   FUSEMIX=/tmp/b/apps/fusemix/fusemix bash benchmarks/dist/run.sh
#   REPEAT=3 STEPS=5 bash benchmarks/dist/run.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fusemix="${FUSEMIX:-$root/build/apps/fusemix/fusemix}"
repeat="${REPEAT:-3}" steps="${STEPS:-5}"
mpirun=(mpirun --oversubscribe)
[[ "$(id -u)" == 0 ]] && mpirun+=(--allow-run-as-root)
# Both sides on the same GEMM kernel (as benchmarks/train/run.sh sets it): SkylakeX where the CPU
# has AVX-512, else what OpenBLAS picks (both sides are the same program anyway).
if [[ -z "${OPENBLAS_CORETYPE:-}" ]] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
args=(bench train --steps "$steps" --warmup 2 --json)
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
echo "# $(date -u); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$repeat"); do
  OMP_NUM_THREADS=2 "$fusemix" "${args[@]}" --threads 2 | sed "s/^/one $r /" >>"$out"
  "${mpirun[@]}" -np 2 -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 ${OPENBLAS_CORETYPE:+-x OPENBLAS_CORETYPE} \
    "$fusemix" "${args[@]}" --threads 1 | sed "s/^/two $r /" >>"$out"
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
runs = {"one": [], "two": []}
for line in open(sys.argv[1]):
    kind, r, j = line.split(" ", 2)
    runs[kind].append(json.loads(j))
print("| run | 1 process x 2 threads samples/s | 2 ranks x 1 thread samples/s | 2 ranks / 1 process | ms per step (2 ranks) | of which in MPI | bytes sent per rank per step | cost model |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for i, (a, b) in enumerate(zip(runs["one"], runs["two"]), 1):
    k, batch, shared, params = b["world_size"], b["mixed_rows"], 512, b["parameters"]
    # all-gather of both sides' embeddings (its B/K rows to K-1 ranks) + the gradient sum
    # (reduce-scatter: (K-1)/K of its values out; all-gather: its 1/K share to K-1 ranks) + the
    # contrastive loss's log-sum-exps of its rows and columns (2·B/K values to K-1 ranks).
    model = (2 * (batch // k) * shared * 4 * (k - 1) + 2 * (k - 1) / k * params * 4
             + 2 * (batch // k) * 4 * (k - 1))
    print(f"| {i} | {a['samples_per_s']:.0f} | {b['samples_per_s']:.0f} | {b['samples_per_s'] / a['samples_per_s']:.2f} "
          f"| {b['ms_per_step']:.0f} | {b['ms_in_communication_per_step']:.0f} "
          f"| {b['bytes_sent_per_step'] / 1e6:.2f} MB | {model / 1e6:.2f} MB |")
PY
