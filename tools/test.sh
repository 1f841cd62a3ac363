#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds fusemix and runs its tests: the command the README and CI use.
#
#   bash tools/test.sh                          # in build/
#   FUSEMIX_BUILD_DIR=/tmp/b bash tools/test.sh # elsewhere
#   bash tools/test.sh -DFUSEMIX_CUDA=OFF       # extra arguments go to the CMake configure step
#
# Steps: install missing Debian packages (tools/install-deps.sh; skipped where there is no dpkg or
# when FUSEMIX_SKIP_DEPS=1), configure the build directory afresh (Ninja, -O2 with assertions
# kept), build with all cores, run ctest. GPU tests show as "Skipped" on machines
# without a CUDA device. Exits non-zero as soon as a step fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUSEMIX_BUILD_DIR:-$root/build}"
jobs="$(nproc)"

if [ "${FUSEMIX_SKIP_DEPS:-0}" = 1 ]; then
  echo "test.sh: FUSEMIX_SKIP_DEPS=1, not checking packages"
elif command -v dpkg >/dev/null 2>&1; then
  bash "$root/tools/install-deps.sh"
else
  echo "test.sh: no dpkg here, not checking packages (see tools/install-deps.sh for the list)"
fi

# --fresh drops the old cache (options, found packages) but keeps the objects already built.
# Release, but without its -DNDEBUG: the tests run optimised with FUSEMIX_ASSERT on (and without
# -g, which would slow the 2-core CI build for nothing).
cmake --fresh -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2" "$@"
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
