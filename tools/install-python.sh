#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds the Python package `fusemix` with the repo's CMake and installs it for Debian's
# /usr/bin/python3, so that `import fusemix` works from any directory (docs/python.md).
#
#   bash tools/install-python.sh                      # into /usr/local/lib/python3.X/dist-packages
#   FUSEMIX_PYTHON_DIR=~/lib/py bash tools/install-python.sh   # elsewhere (then put it on PYTHONPATH)
#   FUSEMIX_BUILD_DIR=/tmp/b bash tools/install-python.sh      # another build directory (default build/)
#
# Why not pip: there is no PyPI here, and Debian's pip refuses to install into the system Python
# (PEP 668). /usr/local/lib/python3.X/dist-packages is the folder Debian keeps for locally
# installed packages and its python3 reads it; the package is one folder there, `fusemix/`, so
# uninstalling is deleting it (this script prints where it went).
#
# Steps: install missing Debian packages (tools/install-deps.sh, unless FUSEMIX_SKIP_DEPS=1),
# configure and build the module and the program in the build directory (reusing what
# tools/test.sh built there), install the `python` component, then import it from / as a check.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUSEMIX_BUILD_DIR:-$root/build}"
python=/usr/bin/python3

if [ "${FUSEMIX_SKIP_DEPS:-0}" != 1 ] && command -v dpkg >/dev/null 2>&1; then
  bash "$root/tools/install-deps.sh"
fi

dir_flag=()
[ -n "${FUSEMIX_PYTHON_DIR:-}" ] && dir_flag=("-DFUSEMIX_PYTHON_INSTALL_DIR=$FUSEMIX_PYTHON_DIR")
# The same configuration as tools/test.sh (so the two share one build), plus the module's options.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2" \
  -DFUSEMIX_PYTHON=ON -DPython_EXECUTABLE="$python" "${dir_flag[@]}" >/dev/null
if ! grep -q '^FUSEMIX_PYTHON_INSTALL_DIR' "$build/CMakeCache.txt"; then
  echo "install-python.sh: CMake did not configure the Python module (pybind11-dev and python3-dev are needed)" >&2
  exit 1
fi
cmake --build "$build" --target fusemix_python -j "$(nproc)"
cmake --install "$build" --component python
dest="$(sed -n 's/^FUSEMIX_PYTHON_INSTALL_DIR:PATH=//p' "$build/CMakeCache.txt")"

cd /
if [ -n "${FUSEMIX_PYTHON_DIR:-}" ]; then export PYTHONPATH="$FUSEMIX_PYTHON_DIR${PYTHONPATH:+:$PYTHONPATH}"; fi
"$python" -c "import fusemix, sys; print(f'install-python.sh: fusemix {fusemix.__version__} for {sys.executable}: {fusemix.__path__[0]}')"
echo "install-python.sh: to uninstall, remove $dest/fusemix"
