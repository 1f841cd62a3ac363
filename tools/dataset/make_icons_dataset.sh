#!/usr/bin/env bash
# Regenerates the bundled icons dataset in data/icons/ (see data/icons/README.md):
# the Oxygen icon theme's icons, paired with the words of their names, encoded
# by the same two encoders as data/emoji/.
#
#   bash tools/dataset/make_icons_dataset.sh [WORK_DIR]
#
# Takes a few minutes (the image encoder runs MobileNetV2 on the CPU through
# the tfjs wasm backend) and about 1 GB of disk (node_modules, the rendered
# images).  Not part of CI.  Needs: Debian (apt-get, run as root if packages
# are missing), node >= 20 and npm, and access to the Debian archive and the
# npm registry.  Nothing else is downloaded.
#
# WORK_DIR (default tools/dataset/work/icons, git-ignored, apart from the
# emoji pipeline's files) receives the rendered PNGs and the intermediate
# files; the committed outputs go to data/icons/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${1:-$here/work/icons}"
out="$repo/data/icons"
py=/usr/bin/python3   # Debian's python, which sees the Debian packages below
split_seed="fusemix-icons-split-v1:"

# --- Debian packages (installed only if missing) ---------------------------
need=()
for pkg in oxygen-icon-theme python3 python3-numpy python3-pil; do
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
for pkg in oxygen-icon-theme python3-pil python3-numpy; do
  echo "   $pkg $(dpkg-query -W -f='${Version}' "$pkg")"
done

# --- npm packages (exact versions from package-lock.json) ------------------
echo "== npm ci"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

start=$(date +%s)
mkdir -p "$work"
echo "== vocabulary ($work)"
node "$here/vocab_words.mjs" "$work"
echo "== select and render"
"$py" "$here/render_icons.py" "$work"
echo "== encode images"
node "$here/encode_images.mjs" "$work"
echo "== encode text"
node "$here/encode_text.mjs" "$work"
echo "== write $out"
"$py" "$here/build_arrays.py" "$work" "$out" "$split_seed"
echo "== ridge baseline"
"$py" "$here/ridge_baseline.py" "$out"
echo "== done in $(( $(date +%s) - start )) s (after installs)"
