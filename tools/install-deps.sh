#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Installs the Debian 12 packages fusemix needs to build and test, skipping those already there.
#
#   bash tools/install-deps.sh            # build + test dependencies (the Python module's too)
#   bash tools/install-deps.sh --python   # also PyTorch and Matplotlib, which only the
#                                         # scripts that regenerate fixtures and benchmark plots use
#   bash tools/install-deps.sh --plot     # also Matplotlib, for the demo's training-curve picture
#   bash tools/install-deps.sh --fuzz     # also clang 14 with libFuzzer and the sanitizer runtimes
#                                         # (and llvm-symbolizer), for tools/fuzz.sh
#
# Runs as root (CI, containers) or through sudo. Does nothing, and needs no network, when every
# package is installed already.
set -euo pipefail

packages=(
  build-essential
  cmake
  ninja-build
  libeigen3-dev
  libboost-test-dev
  nlohmann-json3-dev
  libcli11-dev
  libbenchmark-dev
  libopenblas-dev
  libopenblas-openmp-dev
  libopenmpi-dev
  openmpi-bin
  pybind11-dev
  python3-dev
  python3-numpy
  python3-pytest
  git
  ca-certificates
)

for arg in "$@"; do
  case "$arg" in
    --python) packages+=(python3-torch python3-matplotlib) ;;
    --plot) packages+=(python3-matplotlib) ;;
    --fuzz) packages+=(clang-14 libclang-rt-14-dev llvm-14) ;;
    -h|--help)
      sed -n '4,14p' "$0" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    *)
      echo "install-deps.sh: unknown argument '$arg'" \
           "(expected --python, --plot, --fuzz or --help)" >&2
      exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  # `dpkg -s` also succeeds for removed packages whose config files remain, so read the status
  # (from a variable: grep -q on a pipe could SIGPIPE dpkg and fail under pipefail).
  status="$(dpkg -s "$p" 2>/dev/null || true)"
  if ! grep -q '^Status: install ok installed$' <<<"$status"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-deps.sh: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
