#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The one prepared GPU run: on a fresh machine with nvcc and a Hopper GPU (an H200 here), it
# builds the CUDA tests and benchmarks with nvcc for sm_90, runs the GPU tests, then the
# benchmarks against their peers, and prints a summary table last. Sized to end in under 8
# minutes on an H200 (16 CPU cores) without the data step, which adds an estimated 3-5 minutes
# (writing and loading 25.6 GB of shards; not yet run on a device: STEPS can leave it out); every
# step has its own time limit, so one hung step costs only its limit.
#
#   benchmarks/gpu/run.sh                       # everything
#   STEPS="tests" benchmarks/gpu/run.sh         # only build + GPU tests
#
# What it measures:
#   tests   tests/cuda/test_device.cu (memory, launches, cuBLAS) and the parity harness
#           tests/parity/test_gpu.cu: every primitive against the CPU in double, TF32/bf16 GEMMs,
#           the optimiser, the selector's picks, training steps and 7 steps through train_epoch
#           against the CPU trainer, a checkpoint across backends, no allocation in a warm epoch
#   train   the image-text step (1536 and 1024 -> 512, depth 4, batch 20,480) with
#           bench_train_gpu in fp32, tf32 and bf16, and benchmarks/train/torch_step.py
#           --device cuda in eager fp32 and bf16 autocast, then torch.compile fp32 and bf16
#   cli     the program (CLI11 needed; with MPI and NCCL where mpicxx and nccl.h are found), then
#           `fusemix train --device cuda` on the bundled data against `--device cpu` (the same
#           losses and recalls to rounding), with its pairs streamed (--gpu-latents stream) against
#           resident (the same weights bit for bit), under `mpirun -np <GPUs>` against one process
#           (losses and weights to 1e-5; over NCCL from two GPUs on),
#           `fusemix select --device cuda` against `--device cpu` (the same picks), and
#           `fusemix search --device cuda` against `--device cpu` (the same top-10 lists)
#   dpp     the greedy k-DPP at N = 1,000,000, D = 384, k = 1,000 (cosine) on the GPU, and the
#           CPU selector on the same data for the first CPU_K picks (the CPU is ~300x slower)
#   data    training from float16 shards (benchmarks/gpu/bench_data.cu): DATA_ROWS (default 5,000,000)
#           pairs of 1,536 + 1,024 values written as 20 shards (25.6 GB; DATA_DIR, default /tmp), then
#           the image-text step (depth 4, batch 20,480) resident on the device against streamed
#           through page-locked buffers, and gradient caching (40,960 rows in halves mode,
#           --micro-batch 4,096) against the whole batch, both resident
#   nccl    tests/dist/test_nccl.cu (the NCCL model of the Communicator: rank-order sums, gathers of
#           unequal parts, broadcast, host spans, no allocation once warm) under mpirun on every GPU
#           of the machine (one rank per GPU); needs MPI (mpicxx, mpirun) and NCCL, else skipped
#   search  exact top-10 of 10,000 queries in a 1,000,000-row 512-d gallery from host memory:
#           bench_search_gpu (fp32 and tf32; the CPU's lists for its first 200 queries), and
#           benchmarks/search/torch_search.py in fp32 and tf32 (host-start and device-resident gallery)
#
# Environment:
#   NVCC       nvcc (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc)
#   ARCH       nvcc -arch value (default: sm_90)
#   GPU_INCLUDES extra include directories, colon-separated (Eigen 3.4, nlohmann-json and, for
#              cli, CLI11 when the machine has none in its default paths; e.g. a carried folder).
#              Not INCLUDES: nvcc reads that variable itself and hands it to the host compiler)
#   PYTHON     python with torch 2.x and CUDA (default: python3)
#   STEPS      which parts to run: any of "tests nccl cli train dpp search data" (default: all seven)
#   CPU_K      CPU picks in the k-DPP comparison (default: 50)
#   TORCH_MODES  PyTorch modes of the training step (default: "eager compile")
#   OUT        directory for results.jsonl, with the logs in OUT/logs (default: <repo>/benchmarks/gpu/out)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
arch=${ARCH:-sm_90}
python=${PYTHON:-python3}
steps=${STEPS-tests nccl cli train dpp search data}
cpu_k=${CPU_K:-50}
out=${OUT:-$root/benchmarks/gpu/out}
build=$root/build-gpu
logs=$out/logs  # one level below $out: the device tool returns only $out/*/* and at most 8 files
mkdir -p "$out" "$logs" "$build"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

incs=(-I"$root/include")
IFS=: read -r -a extra <<< "${GPU_INCLUDES:-}"
for d in "${extra[@]}"; do [ -n "$d" ] && incs+=(-isystem "$d"); done
[ -d /usr/include/eigen3 ] && incs+=(-isystem /usr/include/eigen3)
flags=(-std=c++20 -O3 -arch="$arch" --expt-relaxed-constexpr -diag-suppress=20012,20013,20014,20015
       -Xcompiler=-O3,-march=native,-Wall,-Wextra,-Wno-unknown-pragmas "${incs[@]}")

stamp "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"
stamp "nvcc: $("$nvcc" --version | tail -1); python: $("$python" -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1)"

# --- build: every program at once (each nvcc is single-threaded) ---------------------------------
declare -A sources=(
  [fusemix_cuda_tests]=tests/cuda/test_device.cu
  [fusemix_parity_gpu]=tests/parity/test_gpu.cu
  [bench_train_gpu]=benchmarks/gpu/bench_train.cu
  [bench_dpp_gpu]=benchmarks/gpu/bench_dpp.cu
  [bench_search_gpu]=benchmarks/gpu/bench_search.cu
  [bench_data_gpu]=benchmarks/gpu/bench_data.cu
)
stamp "building ${!sources[*]}"
for name in "${!sources[@]}"; do
  ( timeout 400 "$nvcc" "${flags[@]}" "$root/${sources[$name]}" -o "$build/$name" -lcublas > "$logs/build_$name.log" 2>&1
    echo $? > "$build/$name.rc" ) &
done
# MPI's flags (Open MPI's mpicxx says them), for the NCCL model's test and the program.
have_mpi=0
mpi_flags=() mpi_includes=()
if command -v mpicxx > /dev/null && command -v mpirun > /dev/null; then
  have_mpi=1
  read -r -a mpi_compile <<< "$(mpicxx --showme:compile)"
  read -r -a mpi_link <<< "$(mpicxx --showme:link)"
  for f in "${mpi_compile[@]}" "${mpi_link[@]}"; do
    case "$f" in -I*|-L*|-l*) mpi_flags+=("$f") ;; -Wl,*) mpi_flags+=(-Xlinker "${f#-Wl,}") ;; esac
  done
  for f in "${mpi_compile[@]}"; do case "$f" in -I*) mpi_includes+=("$f") ;; esac; done
fi
# The program: its C++ files with the host compiler, cuda.cu with nvcc, all at once. With MPI and
# NCCL (nccl.h in the toolkit) it is built as CMake's FUSEMIX_MPI + FUSEMIX_NCCL build is: under
# mpirun, `--device cuda` trains across the ranks over NCCL.
cli_nccl=0
if [[ " $steps " == *" cli "* ]]; then
  [ "$have_mpi" = 1 ] && [ -f "$(dirname "$nvcc")/../include/nccl.h" ] && cli_nccl=1
  cli_defs=(-DFUSEMIX_SOURCE_DIR="\"$root\"")
  [ "$cli_nccl" = 1 ] && cli_defs+=(-DFUSEMIX_CLI_MPI -DFUSEMIX_CLI_NCCL "${mpi_includes[@]}")
  mkdir -p "$build/cli"
  for f in "$root"/apps/fusemix/*.cpp; do
    [ "$(basename "$f")" = device_none.cpp ] && continue
    ( timeout 400 g++ -std=c++20 -O2 -march=native "${incs[@]}" "${cli_defs[@]}" -c "$f" \
        -o "$build/cli/$(basename "$f" .cpp).o" > "$logs/build_cli_$(basename "$f").log" 2>&1 ) &
  done
  ( timeout 400 "$nvcc" "${flags[@]}" -DFUSEMIX_SOURCE_DIR="\"$root\"" -c "$root/apps/fusemix/cuda.cu" \
      -o "$build/cli/cuda.o" > "$logs/build_cli_cuda.log" 2>&1 ) &
  if [ "$cli_nccl" = 1 ]; then
    ( timeout 400 "$nvcc" "${flags[@]}" "${mpi_includes[@]}" -c "$root/apps/fusemix/nccl.cu" \
        -o "$build/cli/nccl.o" > "$logs/build_cli_nccl.log" 2>&1 ) &
  fi
fi
# The NCCL model's test, with MPI's flags and the toolkit's libnccl.
if [[ " $steps " == *" nccl "* ]] && [ "$have_mpi" = 1 ]; then
  ( timeout 400 "$nvcc" "${flags[@]}" "${mpi_flags[@]}" "$root/tests/dist/test_nccl.cu" -o "$build/fusemix_test_nccl" \
      -lcublas -lnccl > "$logs/build_fusemix_test_nccl.log" 2>&1
    echo $? > "$build/fusemix_test_nccl.rc" ) &
fi
wait
if [[ " $steps " == *" cli "* ]]; then
  cli_libs=(-lcublas)
  [ "$cli_nccl" = 1 ] && cli_libs+=(-lnccl "${mpi_flags[@]}")
  "$nvcc" "$build"/cli/*.o -o "$build/fusemix" "${cli_libs[@]}" > "$logs/build_cli_link.log" 2>&1 \
    || { stamp "BUILD FAILED: fusemix (the program)"; cat "$logs"/build_cli_*.log | grep -E "error" | head -20; }
fi
built_ok=1
for name in "${!sources[@]}"; do
  rc=$(cat "$build/$name.rc")
  if [ "$rc" != 0 ]; then
    built_ok=0
    stamp "BUILD FAILED: $name (rc $rc)"
    grep -E "error" "$logs/build_$name.log" | head -20
  fi
done
stamp "build done"

results=$out/results.jsonl
: > "$results"
status=0
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
[ "$gpus" -ge 1 ] || gpus=1
root_flag=(); [ "$(id -u)" = 0 ] && root_flag=(--allow-run-as-root)

# --- GPU tests -----------------------------------------------------------------------------------
if [[ " $steps " == *" tests "* ]]; then
  for t in fusemix_cuda_tests fusemix_parity_gpu; do
    [ -x "$build/$t" ] || continue
    stamp "test $t"
    timeout 150 "$build/$t" > "$logs/$t.log" 2>&1
    rc=$?
    tail -5 "$logs/$t.log"
    echo "{\"test\": \"$t\", \"rc\": $rc}" >> "$results"
    [ "$rc" = 0 ] || { status=1; stamp "TEST FAILED: $t (rc $rc)"; grep -E "failed|error" "$logs/$t.log" | head -30; }
  done
fi

# --- the NCCL model: one rank per GPU -------------------------------------------------------------
if [[ " $steps " == *" nccl "* ]]; then
  if [ ! -f "$build/fusemix_test_nccl.rc" ]; then
    stamp "nccl: skipped (no mpicxx/mpirun on this machine)"
    echo '{"test": "nccl communicator", "rc": 77}' >> "$results"
  elif [ "$(cat "$build/fusemix_test_nccl.rc")" != 0 ]; then
    stamp "BUILD FAILED: fusemix_test_nccl"; grep -E "error" "$logs/build_fusemix_test_nccl.log" | head -20
    echo '{"test": "nccl communicator (build)", "rc": 1}' >> "$results"; status=1
  else
    stamp "nccl communicator on $gpus rank(s), one per GPU"
    timeout 120 mpirun "${root_flag[@]}" -np "$gpus" "$build/fusemix_test_nccl" > "$logs/nccl.log" 2>&1
    rc=$?
    tail -12 "$logs/nccl.log"
    echo "{\"test\": \"nccl communicator, $gpus rank(s)\", \"rc\": $rc}" >> "$results"
    [ "$rc" = 0 ] || [ "$rc" = 77 ] || status=1
  fi
fi

# --- the program on the bundled data: --device cuda against --device cpu ------------------------
if [[ " $steps " == *" cli "* ]] && [ -x "$build/fusemix" ]; then
  data=$root/data/emoji
  run_args=(--x "$data/x_train.npy" --y "$data/y_train.npy" --x-val "$data/x_test.npy" --y-val "$data/y_test.npy"
            --epochs 5 --batch 256 --depth-x 2 --depth-y 2 --seed 3 --quiet)
  for dev in cpu cuda; do
    stamp "fusemix train --device $dev"
    rm -rf "$out/cli_$dev"
    timeout 120 "$build/fusemix" train "${run_args[@]}" --device "$dev" --out "$out/cli_$dev" > "$logs/cli_train_$dev.log" 2>&1
    echo "{\"test\": \"fusemix train --device $dev\", \"rc\": $?}" >> "$results"
    stamp "fusemix select --device $dev"
    timeout 60 "$build/fusemix" select --in "$data/x_train.npy" --k 200 --kernel cosine --device "$dev" \
      --out "$out/picks_$dev.npy" --json > "$logs/cli_select_$dev.log" 2>&1
    echo "{\"test\": \"fusemix select --device $dev\", \"rc\": $?}" >> "$results"
    cat "$logs/cli_select_$dev.log"
    stamp "fusemix search --device $dev"
    rm -rf "$out/found_$dev"
    timeout 60 "$build/fusemix" search --model "$out/cli_cpu/adapters.safetensors" --queries "$data/x_test.npy" \
      --gallery "$data/y_test.npy" --k 10 --device "$dev" --out "$out/found_$dev" > "$logs/cli_search_$dev.log" 2>&1
    echo "{\"test\": \"fusemix search --device $dev\", \"rc\": $?}" >> "$results"
  done
  # Both placements of pairs from files train to the same bits (auto chose resident above).
  stamp "fusemix train --device cuda --gpu-latents stream"
  rm -rf "$out/cli_cuda_stream"
  timeout 120 "$build/fusemix" train "${run_args[@]}" --device cuda --gpu-latents stream --out "$out/cli_cuda_stream" \
    > "$logs/cli_train_cuda_stream.log" 2>&1
  echo "{\"test\": \"fusemix train --device cuda --gpu-latents stream\", \"rc\": $?}" >> "$results"
  # Under mpirun, one rank per GPU (over NCCL from two GPUs on; one rank trains as one process).
  if [ "$cli_nccl" = 1 ]; then
    stamp "mpirun -np $gpus fusemix train --device cuda"
    rm -rf "$out/cli_cuda_mpi"
    timeout 180 mpirun "${root_flag[@]}" -np "$gpus" "$build/fusemix" train "${run_args[@]}" --device cuda \
      --out "$out/cli_cuda_mpi" > "$logs/cli_train_cuda_mpi.log" 2>&1
    echo "{\"test\": \"mpirun -np $gpus fusemix train --device cuda\", \"rc\": $?}" >> "$results"
  else
    stamp "mpirun fusemix train --device cuda: skipped (no MPI, or no nccl.h in the toolkit)"
  fi
  "$python" - "$out" "$results" "$root/tools" <<'PY'
import json, sys, numpy as np
out, results = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from compare_weights import worst_relative_difference
from fusemix_torch import read_safetensors
def epochs(d):
    return [json.loads(l) for l in open(f"{out}/cli_{d}/metrics.jsonl")]
ok = True
try:
    c, g = epochs("cpu"), epochs("cuda")
    worst_loss = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(c, g))
    worst_r1 = max(abs(a["val"]["mean"] - b["val"]["mean"]) for a, b in zip(c, g))
    print(f"train cpu vs cuda: {len(c)}/{len(g)} epochs, worst relative loss difference {worst_loss:.2e}, "
          f"worst mean-recall difference {worst_r1:.2f} points; last epoch cpu {c[-1]['loss']:.5f} cuda {g[-1]['loss']:.5f}")
    ok = len(c) == len(g) == 5 and worst_loss < 1e-3
except Exception as e:
    print("train comparison failed:", e); ok = False
try:
    same = open(f"{out}/cli_cuda/adapters.safetensors", "rb").read() == open(f"{out}/cli_cuda_stream/adapters.safetensors", "rb").read()
    print(f"train cuda, resident vs streamed pairs: the same weights bit for bit: {same}")
    ok = ok and same
except Exception as e:
    print("placement comparison failed:", e); ok = False
try:
    same = bool(np.array_equal(np.load(f"{out}/picks_cpu.npy"), np.load(f"{out}/picks_cuda.npy")))
    print(f"select cpu vs cuda: picks identical: {same}")
    ok = ok and same
except Exception as e:
    print("select comparison failed:", e); ok = False
try:
    ic, ig = np.load(f"{out}/found_cpu/indices.npy"), np.load(f"{out}/found_cuda/indices.npy")
    sc, sg = np.load(f"{out}/found_cpu/scores.npy"), np.load(f"{out}/found_cuda/scores.npy")
    same = float((ic == ig).all(axis=1).mean())
    print(f"search cpu vs cuda: same top-10 lists for {100 * same:.1f}% of {ic.shape[0]} queries, "
          f"worst score difference {np.abs(sc - sg).max():.2e}")
    ok = ok and same >= 0.99 and np.abs(sc - sg).max() < 1e-5
except Exception as e:
    print("search comparison failed:", e); ok = False
import os
if os.path.isdir(f"{out}/cli_cuda_mpi"):
    # K ranks against one process: the same losses per epoch and weights to 1e-5 relative (as
    # tests/dist/cli_mpi.sh asks of the CPU), world_size recorded.
    try:
        one, many = epochs("cuda"), epochs("cuda_mpi")
        worst_loss = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(one, many))
        worst_w = worst_relative_difference(read_safetensors(f"{out}/cli_cuda/adapters.safetensors", strict=False)[0],
                                            read_safetensors(f"{out}/cli_cuda_mpi/adapters.safetensors", strict=False)[0])
        ranks = many[-1].get("world_size")
        print(f"train cuda, {ranks} rank(s) under mpirun vs one process: losses within {worst_loss:.2e}, "
              f"weights within {worst_w:.2e} relative")
        ok = ok and len(one) == len(many) and worst_loss <= 1e-5 and worst_w <= 1e-5
    except Exception as e:
        print("mpirun comparison failed:", e); ok = False
with open(results, "a") as f:
    f.write(json.dumps({"test": "program: cuda agrees with cpu", "rc": 0 if ok else 1}) + "\n")
PY
fi

# --- training step: ours, then PyTorch --------------------------------------------------------
shape=(--dim-x 1536 --dim-y 1024 --depth-x 4 --depth-y 4 --batch 20480 --shared-dim 512 --expansion 4 --dropout 0.6)
if [[ " $steps " == *" train "* ]]; then
  for p in fp32 tf32 bf16; do
    stamp "fusemix step $p"
    timeout 120 "$build/bench_train_gpu" "${shape[@]}" --precision "$p" --warmup 3 --steps 10 --profile --json \
      2> "$logs/train_fusemix_$p.err" | tee -a "$results"
  done
  for mode in ${TORCH_MODES:-eager compile}; do
    for p in fp32 bf16; do
      stamp "torch $mode $p"
      PYTHONUNBUFFERED=1 timeout $([ "$mode" = compile ] && echo 150 || echo 90) "$python" "$root/benchmarks/train/torch_step.py" --device cuda --mode "$mode" \
        --precision "$p" "${shape[@]}" --mix permutation --warmup 3 --steps 10 --json \
        2> "$logs/train_torch_${mode}_$p.err" | tee -a "$results"
      tail -2 "$logs/train_torch_${mode}_$p.err"
    done
  done
fi

# --- k-DPP selector -------------------------------------------------------------------------------
if [[ " $steps " == *" dpp "* ]]; then
  stamp "k-DPP N=1e6 D=384 k=1000"
  timeout 200 "$build/bench_dpp_gpu" --n 1000000 --d 384 --k 1000 --kernel cosine --cpu-k "$cpu_k" \
    2> "$logs/dpp.err" | tee -a "$results"
  tail -3 "$logs/dpp.err"
fi

# --- exact top-k search -------------------------------------------------------------------------
if [[ " $steps " == *" search "* ]]; then
  for p in fp32 tf32; do
    stamp "search 10,000 x 1,000,000 x 512, k 10, $p"
    timeout 150 "$build/bench_search_gpu" --queries 10000 --gallery 1000000 --d 512 --k 10 --precision "$p" \
      --cpu-queries $([ "$p" = fp32 ] && echo 200 || echo 0) 2> "$logs/search_$p.err" | tee -a "$results"
    tail -2 "$logs/search_$p.err"
  done
  for p in fp32 tf32; do
    stamp "torch search ($p)"
    timeout 150 "$python" "$root/benchmarks/search/torch_search.py" --queries 10000 --gallery 1000000 --d 512 --k 10 \
      --precision "$p" 2> "$logs/search_torch_$p.err" | tee -a "$results"
    tail -2 "$logs/search_torch_$p.err"
  done
fi

# --- training from float16 shards: resident against streamed -----------------------------------
if [[ " $steps " == *" data "* ]]; then
  data_rows=${DATA_ROWS:-5000000}
  shards=$(mktemp -d "${DATA_DIR:-/tmp}/fusemix_shards.XXXX")
  stamp "writing $data_rows float16 pairs (1,536 + 1,024) as 20 shards in $shards"
  # One random block per side, saved under 20 names: what is measured is reading and moving
  # rows, which does not depend on the values.
  timeout 300 "$python" - "$shards" "$data_rows" <<'PY' > "$logs/data_write.log" 2>&1
import sys, numpy as np
out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
per = -(-n // 20)
for side, d in (("x", 1536), ("y", 1024)):
    block = rng.standard_normal((per, d), dtype=np.float32).astype(np.float16)
    for i in range(20):
        rows = max(0, min(per, n - i * per))
        np.save(f"{out}/{side}_{i:02}.npy", block[:rows])
PY
  [ $? = 0 ] || { status=1; stamp "DATA WRITE FAILED"; tail -5 "$logs/data_write.log"; }
  xs=$(ls "$shards"/x_*.npy | paste -sd,) ys=$(ls "$shards"/y_*.npy | paste -sd,)
  for args in "--mode resident" "--mode stream" "--mode resident --batch 40960 --mix halves --micro-batch 4096" \
              "--mode resident --batch 40960 --mix halves"; do
    stamp "bench_data_gpu $args"
    # shellcheck disable=SC2086
    timeout 240 "$build/bench_data_gpu" --x "$xs" --y "$ys" --depth 4 --steps 10 --warmup 2 $args --json \
      2>> "$logs/data.err" | tee -a "$results"
  done
  tail -3 "$logs/data.err"
  rm -rf "$shards"
fi

stamp "summary"
"$python" - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
for r in rows:
    if "test" in r:
        print(f"test {r['test']}: {'passed' if r['rc'] == 0 else ('skipped' if r['rc'] == 77 else 'FAILED rc=%d' % r['rc'])}")
train = [r for r in rows if "ms_per_step" in r]
eager = {r.get("precision"): r["ms_per_step"] for r in train if r.get("mode") == "eager"}
if train:
    print(f"\n| impl | precision | ms/step | steps/s | vs torch eager fp32 | vs torch eager bf16 | GEMM TFLOP/s | roofline |")
    print("|---|---|---|---|---|---|---|---|")
    for r in train:
        impl = r.get("impl") or f"torch {r.get('mode')}"
        ms = r["ms_per_step"]
        vs = lambda p: f"{eager[p] / ms:.2f}x" if p in eager else "n/a"
        tf = r.get("gemm_tflops") or r.get("gflops", 0) / 1000
        roof = f"{100 * r['roofline_fraction']:.1f}% of {r['roofline_tflops']:.0f}" if "roofline_fraction" in r else ""
        print(f"| {impl} | {r.get('precision')} | {ms:.1f} | {1000 / ms:.2f} | {vs('fp32')} | {vs('bf16')} | {tf:.1f} | {roof} |")
for r in train:
    if "profile" in r:
        top = sorted(r["profile"].items(), key=lambda kv: -kv[1][0])
        print(f"\nprofile, fusemix {r['precision']} (one step, {r['profile_step_ms']:.1f} ms wall): " +
              ", ".join(f"{k} {v[0]:.1f} ms/{v[1]}" for k, v in top[:9]))
for r in rows:
    if "gpu_ms" in r:
        print(f"\nk-DPP N={r['n']} D={r['d']} k={r['k']}: GPU {r['gpu_ms']:.0f} ms ({r['gpu_ms_per_pick']:.2f} ms/pick), "
              f"CPU {r['cpu_ms_per_pick']:.1f} ms/pick over {r['cpu_k']} picks: {r['speedup_per_pick']:.0f}x per pick, "
              f"picks agree: {r['picks_agree']}")
search = [r for r in rows if r.get("bench") == "search"]
torch_s = {(r["impl"], r["precision"]): r["gpu_seconds"] for r in search if "impl" in r}
for r in search:
    name = r.get("impl", f"fusemix {r['precision']}") + ("" if "impl" not in r else f" {r['precision']}")
    extra = (f", CPU {r['cpu_seconds_scaled']:.1f} s scaled from {r['cpu_queries']} queries ({r['speedup']:.0f}x), "
             f"same lists {100 * r['same_lists']:.1f}%" if r.get("cpu_queries") else "")
    vs = "".join(f", torch {k[0].split()[1]} / this {v / r['gpu_seconds']:.2f}" for k, v in torch_s.items()
                 if k[1] == r["precision"]) if "impl" not in r else ""
    print(f"\nsearch {r['queries']} x {r['gallery']} x {r['d']}, k {r['k']}: {name} {r['gpu_seconds']:.3f} s{vs}{extra}")
data = [r for r in rows if r.get("bench") == "data"]
by = {(r["mode"], r["batch"], r["micro_batch"]): r for r in data}
for r in data:
    print(f"\ndata {r['rows']} x ({r['dim_x']} + {r['dim_y']}) {r['dtype']}, {r['mode']}, batch {r['batch']} {r['mix']}, "
          f"micro-batch {r['micro_batch']}: {r['ms_per_step']:.1f} ms/step, {r['samples_per_s']:.0f} samples/s"
          + (f", resident {r['resident_gb']:.1f} GB loaded in {r['load_s']:.1f} s" if r["mode"] == "resident" else "")
          + f", {r['device_mib_after']:.0f} MiB of device memory, host RssAnon {r['host_rss_anon_mib']:.0f} MiB")
res, st = by.get(("resident", 20480, 0)), by.get(("stream", 20480, 0))
if res and st:
    print(f"streamed / resident step time: {st['ms_per_step'] / res['ms_per_step']:.3f} (target <= 1.10)")
gc, whole = by.get(("resident", 40960, 4096)), by.get(("resident", 40960, 0))
if gc and whole:
    print(f"gradient caching / whole batch at 40,960 rows: {gc['ms_per_step'] / whole['ms_per_step']:.3f} step time, "
          f"device memory {gc['device_mib_after']:.0f} against {whole['device_mib_after']:.0f} MiB")
sys.exit(1 if any(r.get("rc", 0) not in (0, 77) for r in rows if "test" in r) else 0)
PY
[ $? = 0 ] || status=1
[ "$built_ok" = 1 ] || status=1
stamp "done (status $status)"
exit $status
