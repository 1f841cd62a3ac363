#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# FuseMix training steps: `fusemix bench train` against its PyTorch peer (torch_step.py, eager, and
# torch.compile where the installed torch has it), same shapes, same thread counts, random latents.
# For every shape and thread count it runs ours, then PyTorch, one after the other (so machine noise
# hits both), then prints a markdown table: samples/s of both, their ratio, the fraction of our
# measured roofline each reaches (ours also counting only the GEMMs it runs), the roofline against
# the cores' measured FMA peak, the ratio our step would reach at that peak, and peak RSS; then an
# Amdahl estimate from the thread counts. The raw JSON lines go to $OUT.
#
#   benchmarks/train/run.sh
#   THREADS="1 2 4" SHAPES="S2" STEPS=10 benchmarks/train/run.sh
#
# Shapes (the adapter output is 512 wide, expansion 4, dropout 0.6, permutation mixing):
#   S1  --dim-x 1024 --dim-y 768  --depth-x 2 --depth-y 2 --batch 2048
#   S2  --dim-x 1536 --dim-y 1024 --depth-x 4 --depth-y 4 --batch 1024
#   S3  --dim-x 384  --dim-y 384  --depth-x 1 --depth-y 1 --batch 256
#
# Environment:
#   FUSEMIX    our program                   (default: <repo>/build/apps/fusemix/fusemix)
#   PYTHON     python with torch             (default: /usr/bin/python3)
#   SHAPES     shape names to run            (default: "S1 S2 S3")
#   SHAPE_<name>  the arguments of shape <name>, overriding or adding one; e.g. a tiny check:
#              SHAPES=T SHAPE_T="--dim-x 32 --dim-y 16 --depth-x 1 --depth-y 1 --batch 64" run.sh
#   THREADS    thread counts                 (default: "1 2")
#   STEPS      timed steps per run           (default: 5)
#   WARMUP     untimed steps first           (default: 2)
#   EXTRA_ARGS more arguments for both sides (e.g. "--mix halves"; default: none)
#   MODES      PyTorch modes                 (default: "eager eager-tuned compile compile-tuned";
#              a -tuned mode runs with glibc malloc tuned (torch_step.py --malloc tuned: freed
#              tensors reused, not unmapped) and on OpenBLAS's OpenMP build where installed (one
#              pool of threads, as our program), the others as they come; compile is
#              skipped when the torch has no torch.compile, i.e. before 2.0, and reported n/a if
#              it fails)
#   CORETYPE   OPENBLAS_CORETYPE for both sides (default: SkylakeX; "default" leaves the
#              environment as it is; so is an unset CORETYPE on a CPU without AVX-512).
#              Our program and Debian's torch both use OpenBLAS.
#   OUT        file for the raw JSON lines   (default: <repo>/benchmarks/train/last_run.jsonl)
#
# The PyTorch side fixes its threads itself (torch.set_num_threads, OMP_NUM_THREADS and
# OPENBLAS_NUM_THREADS); ours gets --threads and nothing else. Both count GEMM work the same way
# (gemm_flop_per_step in torch_step.py). The full shapes take minutes and several GiB of memory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
fusemix=${FUSEMIX:-$root/build/apps/fusemix/fusemix}
python=${PYTHON:-/usr/bin/python3}
shapes=${SHAPES:-S1 S2 S3}
threads_list=${THREADS:-1 2}
steps=${STEPS:-5}
warmup=${WARMUP:-2}
extra=${EXTRA_ARGS:-}
modes=${MODES:-eager eager-tuned compile compile-tuned}
coretype=${CORETYPE:-SkylakeX}
out=${OUT:-$root/benchmarks/train/last_run.jsonl}

SHAPE_S1=${SHAPE_S1:---dim-x 1024 --dim-y 768 --depth-x 2 --depth-y 2 --batch 2048}
SHAPE_S2=${SHAPE_S2:---dim-x 1536 --dim-y 1024 --depth-x 4 --depth-y 4 --batch 1024}
SHAPE_S3=${SHAPE_S3:---dim-x 384 --dim-y 384 --depth-x 1 --depth-y 1 --batch 256}

if [ -z "${CORETYPE:-}" ] && ! grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  echo "run.sh: no AVX-512 on this CPU: leaving OPENBLAS_CORETYPE as it is (set CORETYPE to choose)" >&2
  coretype=default
fi
if [ "$coretype" != default ]; then export OPENBLAS_CORETYPE=$coretype; fi
if [ ! -x "$fusemix" ]; then
  echo "run.sh: $fusemix is not an executable (build it, or set FUSEMIX)" >&2
  exit 1
fi
for s in $shapes; do
  v=SHAPE_$s
  if [ -z "${!v:-}" ]; then echo "run.sh: unknown shape $s (set $v to its arguments)" >&2; exit 1; fi
done
# OpenBLAS's OpenMP build (Debian's libopenblas-openmp-dev), which our program links where
# installed: the -tuned modes load it into PyTorch too, so that its GEMMs and its own OpenMP
# passes share one pool of threads, as ours do.
openmp_blas=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/openblas-openmp
if [ ! -e "$openmp_blas/libopenblas.so.0" ]; then openmp_blas=""; fi
torch_version=$("$python" -c 'import torch; print(torch.__version__)')
has_compile=$("$python" -c 'import torch; print(int(hasattr(torch, "compile")))')

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$out")"
: >"$out"
: >"$tmp/labels"

# Reads a program's stdout, prints its JSON object as one line (the line itself when it is one).
json_line() {
  "$python" -c '
import json, sys
text = sys.stdin.read()
for line in reversed(text.splitlines()):
    line = line.strip()
    if line.startswith("{"):
        try:
            json.loads(line)
        except ValueError:
            continue
        print(line)
        sys.exit(0)
try:
    print(json.dumps(json.loads(text)))
except ValueError:
    sys.exit("run.sh: no JSON object in the output:\n" + text[-2000:])
'
}

echo "command: $0 $*"
echo "         SHAPES=\"$shapes\" THREADS=\"$threads_list\" STEPS=$steps WARMUP=$warmup EXTRA_ARGS=\"$extra\" MODES=\"$modes\""
echo "date:    $(date)"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ours:    $fusemix"
echo "torch:   $torch_version ($python)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>}"
echo "ours:    OpenBLAS $(ldd "$fusemix" | sed -n 's/.*libopenblas.so.0 => \([^ ]*\).*/\1/p')"
echo "PyTorch -tuned modes: OpenBLAS ${openmp_blas:-as installed (no OpenMP build found)}"
echo

for s in $shapes; do
  v=SHAPE_$s
  # shellcheck disable=SC2206  # word splitting of the argument strings is intended
  args=(${!v} --steps "$steps" --warmup "$warmup" $extra)
  for t in $threads_list; do
    echo "== $s, $t thread(s): ours" >&2
    "$fusemix" bench train "${args[@]}" --threads "$t" --json | json_line >>"$out"
    echo "$s $t ours" >>"$tmp/labels"
    for m in $modes; do
      if [ "${m%-tuned}" = compile ] && [ "$has_compile" != 1 ]; then continue; fi
      malloc=stock
      blas=()
      if [ "${m%-tuned}" != "$m" ]; then
        malloc=tuned
        if [ -n "$openmp_blas" ]; then blas=(env "LD_LIBRARY_PATH=$openmp_blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"); fi
      fi
      echo "== $s, $t thread(s): PyTorch $m" >&2
      if r=$("${blas[@]}" "$python" "$here/torch_step.py" "${args[@]}" --threads "$t" --mode "${m%-tuned}" --malloc "$malloc" --json); then
        printf '%s\n' "$r" | json_line >>"$out"
        echo "$s $t $m" >>"$tmp/labels"
      else
        echo "run.sh: PyTorch $m failed for $s with $t thread(s); reported n/a" >&2
        echo "$s $t $m failed" >>"$tmp/labels"
      fi
    done
  done
done

"$python" - "$out" "$tmp/labels" "$modes" "$has_compile" <<'PY'
import json, sys
out, labels, modes, has_compile = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4] == "1"
records = [json.loads(l) for l in open(out) if l.strip()]
ours, torch, order = {}, {}, []
it = iter(records)
for lab in open(labels):
    f = lab.split()
    key = (f[0], f[1])
    if f[2] == "ours":
        ours[key] = next(it)
        order.append(key)
    elif len(f) == 3:
        torch[key + (f[2],)] = next(it)

def num(r, k, fmt):
    v = None if r is None else r.get(k)
    return fmt.format(v) if isinstance(v, (int, float)) else "n/a"

print("| shape | threads | PyTorch mode | ours samples/s | PyTorch samples/s | ours / PyTorch "
      "| ours roofline fraction | ours, FLOPs run | PyTorch roofline fraction | roofline / FMA peak | ceiling / PyTorch "
      "| ours peak RSS MiB | PyTorch peak RSS MiB |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for key in order:
    o = ours[key]
    for m in modes:
        if m.startswith("compile") and not has_compile:
            continue
        p = torch.get(key + (m,))
        ratio = pfrac = ceiling = "n/a"
        if p and o.get("samples_per_s") and p.get("samples_per_s"):
            ratio = "{:.2f}".format(o["samples_per_s"] / p["samples_per_s"])
        if p and o.get("roofline_gflops") and p.get("gflops") is not None:
            pfrac = "{:.3f}".format(p["gflops"] / o["roofline_gflops"])
        if p and o.get("fma_peak_gflops") and p.get("gflops") and o.get("gemm_gflop_run_per_step"):
            # Our GEMM FLOPs run at the cores' FMA peak with nothing else in the step, against the
            # peer as measured: no implementation of our step on this machine can exceed it.
            ours_best_s = o["gemm_gflop_run_per_step"] / o["fma_peak_gflops"]
            ceiling = "{:.2f}".format(p["gemm_gflop_per_step"] / p["gflops"] / ours_best_s
                                      if p.get("gemm_gflop_per_step") else float("nan"))
        print(f"| {key[0]} | {key[1]} | {m} | {num(o, 'samples_per_s', '{:.0f}')} | {num(p, 'samples_per_s', '{:.0f}')} "
              f"| {ratio} | {num(o, 'roofline_fraction', '{:.3f}')} | {num(o, 'roofline_fraction_run', '{:.3f}')} | {pfrac} "
              f"| {num(o, 'roofline_fraction_of_fma_peak', '{:.3f}')} | {ceiling} "
              f"| {num(o, 'peak_rss_mib', '{:.0f}')} | {num(p, 'peak_rss_mib', '{:.0f}')} |")
print()
print("ratio > 1: ours is faster. Roofline fractions: achieved GEMM GFLOP/s over our measured roofline_gflops "
      "of the same run, with the same GEMM count on both sides (PyTorch's); 'ours, FLOPs run' counts the GEMMs "
      "our step runs (its first layers form no input gradient: fusion_adapter::backward_parameters). "
      "'roofline / FMA peak': the roofline GEMM's rate over the cores' FMA peak, measured by fusemix bench train. "
      "'ceiling / PyTorch': the ratio our step would reach if its GEMMs ran at that peak and nothing else took time.")

# Amdahl: the serial fraction f that the speed-up from 1 to n threads implies,
# S(n) = 1 / (f + (1 - f) / n), so f = (n / S(n) - 1) / (n - 1); then S at 16 and 64 cores if the
# rest scaled perfectly (an upper bound: memory bandwidth and GEMM efficiency per core fall too).
rows = []
for (shape, t), o in ours.items():
    n = int(t)
    one = ours.get((shape, "1"))
    if n > 1 and one and o.get("samples_per_s") and one.get("samples_per_s"):
        speedup = o["samples_per_s"] / one["samples_per_s"]
        f = min(max((n / speedup - 1) / (n - 1), 0.0), 1.0)
        at = lambda k: 1 / (f + (1 - f) / k)
        rows.append(f"| {shape} | 1 -> {n} | {speedup:.2f} | {f:.3f} | {at(16):.1f} | {at(64):.1f} |")
if rows:
    print()
    print("| shape | threads | measured speed-up | serial fraction (Amdahl) | speed-up at 16 cores | at 64 cores |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
PY
echo "raw JSON lines: $out"
