#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The authors' image-text step on this machine: 1,536/1,024 -> 512, depth 4 both sides, batch
# 40,960 in halves mode (20,480 mixed pairs), one step of `fusemix train --max-steps 1` on float16
# shards, with gradient caching (--micro-batch MICRO) and, with WHOLE=1, without it. Prints each
# run's wall time and the peak of its anonymous memory (RssAnon, sampled every 0.1 s from
# /proc/<pid>/status: the process's own allocations, not the mapped files' pages).
#
#   benchmarks/data/large_batch.sh
#   WHOLE=1 MICRO=1024 benchmarks/data/large_batch.sh
#
# Environment:
#   FUSEMIX  our program           (default: <repo>/build/apps/fusemix/fusemix)
#   PYTHON   python with numpy     (default: /usr/bin/python3)
#   DIR      shards and runs       (default: /var/tmp/fusemix-large-batch; 210 MB of shards)
#   MICRO    rows per micro-batch  (default: 2048)
#   THREADS  threads               (default: 2)
#   WHOLE    1: also the whole batch at once (about 19 GB of memory)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fusemix="${FUSEMIX:-$root/build/apps/fusemix/fusemix}"
python="${PYTHON:-/usr/bin/python3}"
dir="${DIR:-/var/tmp/fusemix-large-batch}"
lists="$("$python" "$root/benchmarks/data/write_shards.py" "$dir/shards" --pairs 40960 --dim-x 1536 --dim-y 1024 --shard 20480)"
x="$(sed -n 1p <<<"$lists")"
y="$(sed -n 2p <<<"$lists")"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GB RAM; $(date -u +%F)"

# run LABEL ARGS...: one training step; prints the wall time and the peak RssAnon.
run() {
  local label="$1"; shift
  rm -rf "$dir/run"
  local t0; t0=$(date +%s.%N)
  OPENBLAS_CORETYPE="${CORETYPE:-SkylakeX}" "$fusemix" train --x "$x" --y "$y" --out "$dir/run" \
    --depth-x 4 --depth-y 4 --batch 40960 --mix halves --epochs 1 --max-steps 1 --no-val --threads "${THREADS:-2}" \
    "$@" > "$dir/log.txt" 2>&1 &
  local pid=$! peak=0 file=0 a f
  while kill -0 "$pid" 2> /dev/null; do
    a=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2> /dev/null || true)
    f=$(awk '/^RssFile/ {print $2}' "/proc/$pid/status" 2> /dev/null || true)
    if [ -n "$a" ] && [ "$a" -gt "$peak" ]; then peak=$a; file=$f; fi
    sleep 0.1
  done
  wait "$pid" || { cat "$dir/log.txt"; return 1; }
  local t1; t1=$(date +%s.%N)
  # The epoch line: "epoch 1/1  loss L ... Ts" (T: the step, without the start-up's full scan of the data).
  printf '%-24s step %7s  (program %6.1f s)  peak RssAnon %6d MiB (RssFile then %d MiB)  %s\n' "$label" \
    "$(grep '^epoch' "$dir/log.txt" | grep -o '[0-9.]*s$' | tail -1)" "$(echo "$t1 - $t0" | bc)" \
    $((peak / 1024)) $((file / 1024)) "$(grep '^epoch' "$dir/log.txt" | grep -o 'loss [0-9.]*' | tail -1)"
}
run "--micro-batch ${MICRO:-2048}" --micro-batch "${MICRO:-2048}"
if [ "${WHOLE:-0}" = 1 ]; then run "the whole batch"; fi
