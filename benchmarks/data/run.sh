#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Training from latents on disk: writes PAIRS pairs of float16 latents as shards (write_shards.py;
# 10,000,000 x (1,024 + 768) is 35.8 GB, more than a 24 GB machine's memory), then runs
# `fusemix bench data`: steps reading each batch from the memory-mapped shards in an epoch's random
# order, interleaved with the same steps from SUBSET pairs in memory, and the process's RssAnon.
#
#   benchmarks/data/run.sh                       # the full 10M pairs into $DIR
#   PAIRS=200000 DIR=/tmp/small benchmarks/data/run.sh
#
# Environment:
#   FUSEMIX  our program           (default: <repo>/build/apps/fusemix/fusemix)
#   PYTHON   python with numpy     (default: /usr/bin/python3)
#   DIR      where the shards go   (default: /var/tmp/fusemix-shards; needs the data's size free)
#   PAIRS    pairs                 (default: 10000000)
#   SUBSET   pairs of the in-memory peer (default: 65536)
#   THREADS  threads               (default: 2)
#   STEPS    timed steps of each   (default: 20)
#   DROP_CACHES  1: drop the page cache before the run (as root), so the files are read from disk
#   CORETYPE     OPENBLAS_CORETYPE of our program (default: SkylakeX)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fusemix="${FUSEMIX:-$root/build/apps/fusemix/fusemix}"
python="${PYTHON:-/usr/bin/python3}"
dir="${DIR:-/var/tmp/fusemix-shards}"
pairs="${PAIRS:-10000000}"
lists="$("$python" "$root/benchmarks/data/write_shards.py" "$dir" --pairs "$pairs")"
x="$(sed -n 1p <<<"$lists")"
y="$(sed -n 2p <<<"$lists")"
echo "data: $(du -sh "$dir" | cut -f1) in $dir; machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GB RAM"
if [ "${DROP_CACHES:-0}" = 1 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
OPENBLAS_CORETYPE="${CORETYPE:-SkylakeX}" "$fusemix" bench data --x "$x" --y "$y" --subset "${SUBSET:-65536}" \
  --threads "${THREADS:-2}" --steps "${STEPS:-20}" --batch 2048 --depth-x 2 --depth-y 2
