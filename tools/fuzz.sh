#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds the libFuzzer targets of tests/fuzz with clang and runs each for a bounded time; exits
# non-zero on any finding (crash, escaped exception, sanitizer report, leak, timeout, OOM).
#
#   bash tools/fuzz.sh                       # every target, FUSEMIX_FUZZ_SECONDS (default 60) each
#   bash tools/fuzz.sh npy 600               # one target (npy or safetensors), 600 s
#   bash tools/fuzz.sh all 300 -- -jobs=2    # arguments after -- go to every libFuzzer run
#   FUSEMIX_FUZZ_DIR=/tmp/f bash tools/fuzz.sh   # build and work elsewhere (default build-fuzz)
#
# Steps: install missing Debian packages (tools/install-deps.sh --fuzz; skipped where there is no
# dpkg or when FUSEMIX_SKIP_DEPS=1); compile each target with clang++-14 -O1 -g and ASan, UBSan
# and libFuzzer (recompiled only when a source or header changed); copy the committed seeds of
# tests/fuzz/corpus/<target> into <dir>/corpus/<target> (the working corpus, which keeps growing
# across local runs; the committed corpus is never written to); run with the target's dictionary.
# A finding leaves its input in <dir>/artifacts/<target>/ (emptied at the start of each run of that
# target) and the log in <dir>/<target>.log.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${FUSEMIX_FUZZ_DIR:-$root/build-fuzz}"
seconds="${FUSEMIX_FUZZ_SECONDS:-60}"
all_targets=(npy safetensors)

usage() { sed -n '4,18p' "$0" | sed 's/^# \{0,1\}//'; }

targets=("${all_targets[@]}")
extra=()
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) positional+=("$1"); shift ;;
  esac
done
if [ ${#positional[@]} -gt 2 ]; then
  echo "fuzz.sh: too many arguments: ${positional[*]} (expected [TARGET] [SECONDS])" >&2
  exit 2
fi
if [ ${#positional[@]} -ge 1 ]; then
  case "${positional[0]}" in
    all) ;;
    npy|safetensors) targets=("${positional[0]}") ;;
    *) echo "fuzz.sh: unknown target '${positional[0]}' (expected npy, safetensors or all)" >&2
       exit 2 ;;
  esac
fi
[ ${#positional[@]} -ge 2 ] && seconds="${positional[1]}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: the run time must be a positive number of seconds, not '$seconds'" >&2
  exit 2
fi

if [ "${FUSEMIX_SKIP_DEPS:-0}" = 1 ]; then
  echo "fuzz.sh: FUSEMIX_SKIP_DEPS=1, not checking packages"
elif command -v dpkg >/dev/null 2>&1; then
  bash "$root/tools/install-deps.sh" --fuzz
else
  echo "fuzz.sh: no dpkg here, not checking packages (see tools/install-deps.sh --fuzz)"
fi

cxx="${FUSEMIX_FUZZ_CXX:-clang++-14}"
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz.sh: $cxx not found (set FUSEMIX_FUZZ_CXX to a clang++ with libFuzzer)" >&2
  exit 1
fi
read -ra eigen_flags <<<"$(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3)"
# -fno-sanitize-recover=all: the first UBSan report aborts, so libFuzzer records it as a crash.
# shellcheck disable=SC2054  # the commas belong to -fsanitize's value
cxxflags=(-std=c++20 -O1 -g -fno-omit-frame-pointer
          -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
          -Wall -Wextra -I"$root/include" "${eigen_flags[@]}")

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"  # absolute: libFuzzer runs in it (-jobs writes its fuzz-N.log there)
# The build directory is scratch space: keep it out of `git status` even when it is inside the
# repository (the default), without touching the top-level .gitignore.
[ -f "$dir/.gitignore" ] || echo '*' >"$dir/.gitignore"

# Leaks and the first report of either sanitizer end the run; the caller's options come last and
# so win.
asan="detect_leaks=1:halt_on_error=1:print_stacktrace=1:symbolize=1"
asan+=":detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
export ASAN_OPTIONS="$asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
ubsan="halt_on_error=1:print_stacktrace=1:print_summary=1"
export UBSAN_OPTIONS="$ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
symbolizer="$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)"
[ -z "$symbolizer" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ] &&
  symbolizer=/usr/lib/llvm-14/bin/llvm-symbolizer
if [ -n "$symbolizer" ]; then
  export ASAN_SYMBOLIZER_PATH="$symbolizer" UBSAN_SYMBOLIZER_PATH="$symbolizer"
fi

build() {
  local t="$1" bin="$dir/fuzz_$1"
  # Rebuild when the binary is missing or older than any source it depends on (or this script).
  local newer=""
  [ -x "$bin" ] && newer="$(find "$root/include" "$root/tests/fuzz" "${BASH_SOURCE[0]}" \
                               -newer "$bin" \( -name '*.[hc]pp' -o -name '*.sh' \) -print -quit)"
  if [ -x "$bin" ] && [ -z "$newer" ]; then
    echo "fuzz.sh: $bin is up to date"
    return
  fi
  echo "fuzz.sh: building $bin"
  local start=$SECONDS
  "$cxx" "${cxxflags[@]}" "$root/tests/fuzz/fuzz_$t.cpp" -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
  echo "fuzz.sh: built fuzz_$t in $((SECONDS - start)) s"
}

run() {
  local t="$1" bin="$dir/fuzz_$1" corpus="$dir/corpus/$1" artifacts="$dir/artifacts/$1/"
  local log="$dir/$1.log"
  # Only this run's findings count: a previous run's inputs are removed (copy them out first).
  rm -rf "$artifacts"
  mkdir -p "$corpus" "$artifacts"
  cp "$root/tests/fuzz/corpus/$t"/* "$corpus"/
  echo "fuzz.sh: fuzzing $t for $seconds s ($(find "$corpus" -type f | wc -l) inputs in $corpus)"
  local rc=0
  # -max_len 4096: the formats' interesting structure is in the first few hundred bytes, and small
  # inputs keep the run fast (and fit in a pipe buffer, which the targets also read through).
  (cd "$dir" && "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
     -timeout=10 -max_len=4096 -dict="$root/tests/fuzz/$t.dict" -artifact_prefix="$artifacts" \
     -print_final_stats=1 "${extra[@]}" "$corpus") >"$log" 2>&1 || rc=$?
  # The last coverage line libFuzzer printed ("#N DONE cov: ... ft: ... corp: ... exec/s: ...")
  # and its final statistics.
  grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 |
    sed "s/^/fuzz.sh: $t: /" || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
    "$log" | sed "s/^/fuzz.sh: $t: /" || true
  local found report='ERROR: |runtime error:|SUMMARY: |fusemix fuzz:|terminate called'
  found="$(find "$artifacts" -type f | head -n 20)"
  if [ "$rc" -eq 0 ] && [ -z "$found" ] && ! grep -qE "$report" "$log"; then
    echo "fuzz.sh: $t: no findings"
    return 0
  fi
  # The report starts at the first sanitizer or libFuzzer line (the tail of the log is mostly
  # libFuzzer's recommended dictionary).
  local first
  first="$(grep -nE "$report" "$log" | head -n 1 | cut -d: -f1)"
  echo "fuzz.sh: FINDING in $t (libFuzzer exit status $rc); from $log:" >&2
  if [ -n "$first" ]; then
    tail -n "+$((first > 3 ? first - 3 : 1))" "$log" | head -n 100 >&2
  else
    tail -n 60 "$log" >&2
  fi
  echo "-----" >&2
  if [ -n "$found" ]; then
    echo "fuzz.sh: input(s) that trigger it:" >&2
    echo "$found" >&2
  fi
  echo "fuzz.sh: reproduce with: $bin <input>; docs/fuzzing.md says how to minimise it" >&2
  return 1
}

total_start=$SECONDS
for t in "${targets[@]}"; do build "$t"; done
status=0
for t in "${targets[@]}"; do run "$t" || status=1; done
if [ $status -eq 0 ]; then
  echo "fuzz.sh: done in $((SECONDS - total_start)) s; no findings"
else
  echo "fuzz.sh: done in $((SECONDS - total_start)) s; FINDINGS, see above" >&2
fi
exit $status
