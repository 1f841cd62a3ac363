#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The main job on a fresh machine: installs what is missing, builds the `fusemix` program and runs
# `fusemix demo` on the bundled dataset (the README's first command): untrained adapters, ridge
# regression and FuseMix compared by retrieval, and a picture of the training curves.
# Extra arguments go to `fusemix demo`.
#
#   bash tools/demo.sh
#   FUSEMIX_BUILD_DIR=/tmp/b bash tools/demo.sh --out /tmp/demo
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Its own build directory: the tests build with assertions on, the demo without.
build="${FUSEMIX_BUILD_DIR:-$root/build-demo}"

if [ "${FUSEMIX_SKIP_DEPS:-0}" != 1 ] && command -v dpkg >/dev/null 2>&1; then
  bash "$root/tools/install-deps.sh" --plot
fi
# Only the program: no tests, benchmarks, examples or CUDA target (and none of their packages).
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFUSEMIX_CUDA=OFF -DBUILD_TESTING=OFF \
  -DFUSEMIX_BUILD_BENCHMARKS=OFF -DFUSEMIX_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target fusemix_cli
"$build/apps/fusemix/fusemix" demo "$@"
