#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `fusemix train|select|eval` under mpirun against one process, on the bundled dataset.
#
#   bash tests/dist/cli_mpi.sh FUSEMIX DATA_DIR MPIRUN...
#
# Checks, for 2 and 3 ranks: the weights within 1e-5 relative of one process and the same loss
# per epoch to 1e-5; `select` writes the same picks (byte-equal files) and log det (1e-12);
# `eval --json` prints the same figures; every record carries "world_size". For 2 ranks: a run resumed from its
# checkpoint equals an uninterrupted one bitwise, a SIGTERM sent to one rank stops both
# with a checkpoint (exit 143) that resumes to the same bits, and a run that pauses after every
# step to write a checkpoint (--checkpoint-minutes) ends with the same bits.
set -euo pipefail
fusemix=$1 data=$2
shift 2
mpirun=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
# One thread per rank: the ranks share this machine's cores (mpirun passes the environment on).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAILED: $*" >&2; exit 1; }

# (A small model: what is checked is the exchange, not the model's size.)
train_args=(--x "$data/x_train.npy" --y "$data/y_train.npy" --epochs 3 --batch 128 --threads 1 --no-val --quiet
            --dropout 0.3 --mix halves --depth-x 1 --depth-y 1 --shared-dim 128)
# Weights of two safetensors files: the largest relative difference per tensor (by norm), at
# most the tolerance $3 (0: equal values).
compare() { "$py" "$root/tools/compare_weights.py" "$1" "$2" "$3"; }

"$fusemix" train "${train_args[@]}" --out "$work/one" >/dev/null
"$fusemix" select --in "$data/x_train.npy" --k 50 --normalize --out "$work/one_picks.npy" --json >"$work/one_select.json"
"$fusemix" select --in "$data/x_train.npy" --k 50 --window 8 --out "$work/one_window.npy" >/dev/null
"$fusemix" eval --model "$work/one/adapters.safetensors" --x "$data/x_test.npy" --y "$data/y_test.npy" --json \
  >"$work/one_eval.json"

for np in 2 3; do
  echo "--- $np ranks"
  "${mpirun[@]}" -np "$np" "$fusemix" train "${train_args[@]}" --out "$work/many$np" >/dev/null
  compare "$work/one/adapters.safetensors" "$work/many$np/adapters.safetensors" 1e-5 || fail "train: $np ranks vs one"
  "$py" - "$work/one/metrics.jsonl" "$work/many$np/metrics.jsonl" "$np" <<'EOF' || fail "train: metrics of $np ranks"
import json, sys
one = [json.loads(l) for l in open(sys.argv[1])]
many = [json.loads(l) for l in open(sys.argv[2])]
assert len(one) == len(many) == 3, (len(one), len(many))
for a, b in zip(one, many):
    assert a["world_size"] == 1 and b["world_size"] == int(sys.argv[3]), (a, b)
    assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"]), (a["loss"], b["loss"])
print("losses per epoch within 1e-5 relative; world_size recorded")
EOF
  "${mpirun[@]}" -np "$np" "$fusemix" select --in "$data/x_train.npy" --k 50 --normalize --out "$work/picks$np.npy" \
    --json >"$work/select$np.json"
  cmp "$work/one_picks.npy" "$work/picks$np.npy" || fail "select: $np ranks picked otherwise"
  "${mpirun[@]}" -np "$np" "$fusemix" select --in "$data/x_train.npy" --k 50 --window 8 --out "$work/window$np.npy" >/dev/null
  cmp "$work/one_window.npy" "$work/window$np.npy" || fail "select --window: $np ranks picked otherwise"
  "${mpirun[@]}" -np "$np" "$fusemix" eval --model "$work/one/adapters.safetensors" --x "$data/x_test.npy" \
    --y "$data/y_test.npy" --json >"$work/eval$np.json"
  "$py" - "$work/one_select.json" "$work/select$np.json" "$work/one_eval.json" "$work/eval$np.json" "$np" <<'EOF' || fail "select/eval JSON of $np ranks"
import json, sys
one_s, many_s, one_e, many_e = (json.load(open(p)) for p in sys.argv[1:5])
np_ = int(sys.argv[5])
assert many_s.pop("world_size") == np_ and many_e.pop("world_size") == np_
assert one_s.pop("world_size") == 1 and one_e.pop("world_size") == 1
# One process runs the lazy selector, the ranks the eager one: the same picks, gains equal up to
# how the compiler contracted each loop's multiply-adds (docs/selection.md).
a, b = one_s.pop("log_det"), many_s.pop("log_det")
assert abs(a - b) <= 1e-12 * abs(a), (a, b)
for d in (one_s, many_s):
    d.pop("seconds")
assert one_s == many_s, (one_s, many_s)
assert one_e == many_e, (one_e, many_e)
print(f"select: the same picks and log det; eval: the same figures ({one_e['mean']:.2f} mean recall)")
EOF
done

echo "--- bad latents, 2 ranks"
# A NaN in the last rank's rows: refused with --uniform too, naming its global row, non-zero exit.
"$py" -c "import numpy as np, sys; z = np.load(sys.argv[1]); z[-2, 3] = np.nan; np.save(sys.argv[2], z)" \
  "$data/x_train.npy" "$work/bad.npy"
bad_row=$("$py" -c "import numpy as np, sys; print(np.load(sys.argv[1], mmap_mode='r').shape[0] - 2)" "$work/bad.npy")
if "${mpirun[@]}" -np 2 "$fusemix" select --in "$work/bad.npy" --k 3 --uniform --out "$work/bad_picks.npy" \
     >"$work/bad.out" 2>&1; then
  fail "select --uniform under mpirun accepted a NaN"
fi
grep -q "latents must be finite.*at row $bad_row, column 3" "$work/bad.out" ||
  { cat "$work/bad.out" >&2; fail "select --uniform under mpirun did not name the NaN's row $bad_row"; }
[ "$(grep -c "fusemix: error" "$work/bad.out")" = 1 ] || { cat "$work/bad.out" >&2; fail "more than one error line"; }
[ ! -e "$work/bad_picks.npy" ] || fail "rank 0 wrote the picks although rank 1's latents hold a NaN"
echo "a NaN in the last rank's rows is refused in one line naming its global row; nothing written"

echo "--- resume and SIGTERM, 2 ranks"
long_args=("${train_args[@]}")
long_args[5]=6  # --epochs 6 (train_args[4] is --epochs)
"${mpirun[@]}" -np 2 "$fusemix" train "${long_args[@]}" --out "$work/whole" >/dev/null
# Stopped by --max-steps at step 20, then resumed.
"${mpirun[@]}" -np 2 "$fusemix" train "${long_args[@]}" --out "$work/resumed" --max-steps 20 >/dev/null
"${mpirun[@]}" -np 2 "$fusemix" train "${long_args[@]}" --out "$work/resumed" --resume >/dev/null
compare "$work/whole/adapters.safetensors" "$work/resumed/adapters.safetensors" 0 || fail "resume: not bitwise"
cmp "$work/whole/adapters.safetensors" "$work/resumed/adapters.safetensors" || fail "resume: files differ"
# SIGTERM to one rank only (after its first epoch): both stop at the same step with a checkpoint.
set +e
"${mpirun[@]}" -np 2 "$fusemix" train "${long_args[@]}" --out "$work/signal" >"$work/signal.out" 2>&1 &
launcher=$!
for _ in $(seq 600); do
  [[ -s "$work/signal/metrics.jsonl" ]] && break
  sleep 0.1
done
rank=$(pgrep -f -- "--out $work/signal" | while read -r p; do
         [[ "$(cat /proc/$p/comm 2>/dev/null)" == fusemix ]] && echo "$p"; done | head -1)
[[ -n "$rank" ]] || fail "no rank to signal"
kill -TERM "$rank"
wait "$launcher"
status=$?
set -e
grep -q "stopped by SIGTERM" "$work/signal.out" || { cat "$work/signal.out"; fail "SIGTERM: no stop message"; }
[[ $status -ne 0 ]] || fail "SIGTERM: mpirun exited 0"
[[ ! -s "$work/signal/adapters.safetensors" ]] || [[ -s "$work/signal/checkpoint.safetensors" ]] || fail "SIGTERM: no checkpoint"
"${mpirun[@]}" -np 2 "$fusemix" train "${long_args[@]}" --out "$work/signal" --resume >/dev/null
cmp "$work/whole/adapters.safetensors" "$work/signal/adapters.safetensors" || fail "SIGTERM then --resume: not bitwise"
# --checkpoint-minutes shorter than a step: every rank pauses after every step (whichever rank's
# clock says so first), rank 0 writes, and the run ends with the same bits.
"${mpirun[@]}" -np 2 "$fusemix" train "${long_args[@]}" --out "$work/paused" --checkpoint-minutes 1e-6 >/dev/null
cmp "$work/whole/adapters.safetensors" "$work/paused/adapters.safetensors" || fail "--checkpoint-minutes: not bitwise"
echo "resumed runs (--max-steps, SIGTERM to one rank) and a run pausing every step equal the uninterrupted one bitwise"
echo "passed"
