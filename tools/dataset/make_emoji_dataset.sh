#!/usr/bin/env bash
# Regenerates the bundled emoji dataset in data/emoji/ (see data/emoji/README.md).
#
#   bash tools/dataset/make_emoji_dataset.sh [WORK_DIR]
#
# Takes a few minutes (the image encoder runs MobileNetV2 on the CPU through
# the tfjs wasm backend) and about 1 GB of disk (node_modules, the rendered
# images).  Not part of CI.  Needs: Debian (apt-get, run as root if packages
# are missing), node >= 20 and npm, and access to the Debian archive and the
# npm registry.  Nothing else is downloaded.
#
# WORK_DIR (default tools/dataset/work, git-ignored) receives the rendered
# PNGs and the intermediate files; the committed outputs go to data/emoji/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${1:-$here/work}"
out="$repo/data/emoji"
py=/usr/bin/python3   # Debian's python, which sees the Debian packages below

# --- Debian packages (installed only if missing) ---------------------------
need=()
for pkg in fonts-noto-color-emoji unicode-cldr-core python3 python3-numpy \
           python3-pil libraqm0 libharfbuzz-bin; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    need+=("$pkg")
  fi
done
if ((${#need[@]})); then
  echo "== apt-get install ${need[*]}"
  sudo_=""
  if [ "$(id -u)" != 0 ]; then sudo_=sudo; fi
  $sudo_ apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q --no-install-recommends "${need[@]}"
fi
for pkg in fonts-noto-color-emoji unicode-cldr-core python3-pil libharfbuzz-bin; do
  echo "   $pkg $(dpkg-query -W -f='${Version}' "$pkg")"
done

# --- npm packages (exact versions from package-lock.json) ------------------
echo "== npm ci"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

start=$(date +%s)
mkdir -p "$work"
echo "== render ($work)"
"$py" "$here/render.py" "$work"
echo "== encode images"
node "$here/encode_images.mjs" "$work"
echo "== encode text"
node "$here/encode_text.mjs" "$work"
echo "== write $out"
"$py" "$here/build_arrays.py" "$work" "$out"
echo "== ridge baseline"
"$py" "$here/ridge_baseline.py" "$out"
echo "== done in $(( $(date +%s) - start )) s (after installs)"
