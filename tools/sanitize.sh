#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds the CPU test suite and the program with AddressSanitizer and UndefinedBehaviorSanitizer
# and runs every CPU test under them (CI runs this after tools/test.sh).
#
#   bash tools/sanitize.sh                           # in build-asan/
#   FUSEMIX_ASAN_DIR=/tmp/asan bash tools/sanitize.sh
#
# Any sanitizer report fails the run: -fno-sanitize-recover=all turns UB into an abort, and
# ASan's leak checker is on. The packaging tests are left out (they rebuild consumers against an
# installed copy and test CMake, not code), as are CUDA and MPI (LeakSanitizer reports Open
# MPI's own allocations at exit; the trainer code the ranks run is the one tested here).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUSEMIX_ASAN_DIR:-$root/build-asan}"
jobs="$(nproc)"

if [ "${FUSEMIX_SKIP_DEPS:-0}" != 1 ] && command -v dpkg >/dev/null 2>&1; then
  bash "$root/tools/install-deps.sh"
fi

# -O1 keeps the run fast enough and the reports readable; -g1 (line tables only) is enough for
# symbolised stack traces and builds far faster than -g; _GLIBCXX_ASSERTIONS adds the standard
# library's bounds checks on top.
flags="-O1 -g1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -D_GLIBCXX_ASSERTIONS"
cmake --fresh -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  "-DCMAKE_CXX_FLAGS_DEBUG=$flags" "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" \
  -DFUSEMIX_CUDA=OFF -DFUSEMIX_MPI=OFF -DFUSEMIX_BUILD_BENCHMARKS=OFF -DFUSEMIX_BUILD_EXAMPLES=OFF -DFUSEMIX_PYTHON=OFF "$@"
cmake --build "$build" -j "$jobs"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir "$build" --output-on-failure -j "$jobs" -LE package
