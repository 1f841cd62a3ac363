#!/usr/bin/python3
"""Step 4 of the emoji and icons datasets: split and write the arrays.

Reads WORK_DIR/pairs.tsv, image_f32.bin (N x 1280) and text_f32.bin (N x 100),
drops emoji whose text latent is missing (NaN row: no known token), and
writes into OUT_DIR:

  x_train.npy, x_test.npy   image latents, '<f2' (float16), 1280 columns
  y_train.npy, y_test.npy   text latents,  '<f4' (float32),  100 columns
  labels_train.txt, labels_test.txt
                            one line per row: code points (hex) TAB CLDR name

Row i of x and row i of y belong to the same emoji.  Within each split rows
are in code-point order.

Split: the test set is the TEST_SIZE emoji with the smallest
sha256(SPLIT_SEED + code points as written in the label files); the rest is
train.  This depends on nothing but the emoji's own code points, so it does
not change with the numpy version or with the order in which emoji are found.

The icons dataset (render_icons.py) writes pairs.tsv in the same layout, with
the icon name where the code points are and its words where the name is, and
passes its own SPLIT_SEED.

Usage: build_arrays.py WORK_DIR OUT_DIR [SPLIT_SEED]
       (default SPLIT_SEED: fusemix-emoji-split-v1:)
"""
import hashlib
import json
import os
import sys

import numpy as np

IMAGE_DIM = 1280
TEXT_DIM = 100
TEST_SIZE = 300
SPLIT_SEED = "fusemix-emoji-split-v1:"


def split_key(hex_cps, seed=SPLIT_SEED):
    return hashlib.sha256((seed + hex_cps).encode("ascii")).hexdigest()


def main():
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    work, out = sys.argv[1], sys.argv[2]
    seed = sys.argv[3] if len(sys.argv) == 4 else SPLIT_SEED
    with open(os.path.join(work, "pairs.tsv"), encoding="utf-8") as f:
        rows = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
    n = len(rows)
    x = np.fromfile(os.path.join(work, "image_f32.bin"), dtype="<f4")
    y = np.fromfile(os.path.join(work, "text_f32.bin"), dtype="<f4")
    x = x.reshape(n, IMAGE_DIM)
    y = y.reshape(n, TEXT_DIM)
    if not np.all(np.isfinite(x)):
        raise SystemExit("non-finite image latent")

    keep = np.all(np.isfinite(y), axis=1)
    idx = np.flatnonzero(keep)
    hexes = [rows[i][1] for i in idx]
    order = sorted(range(len(idx)), key=lambda k: split_key(hexes[k], seed))
    if len(order) <= TEST_SIZE:
        raise SystemExit("only %d pairs, need more than %d" % (len(order), TEST_SIZE))
    test = np.sort(idx[order[:TEST_SIZE]])
    train = np.sort(idx[order[TEST_SIZE:]])

    os.makedirs(out, exist_ok=True)
    for name, sel in (("train", train), ("test", test)):
        np.save(os.path.join(out, "x_%s.npy" % name), x[sel].astype("<f2"))
        np.save(os.path.join(out, "y_%s.npy" % name), y[sel].astype("<f4"))
        with open(os.path.join(out, "labels_%s.txt" % name), "w",
                  encoding="utf-8") as f:
            for i in sel:
                f.write("%s\t%s\n" % (rows[i][1], rows[i][3]))

    f16 = x.astype("<f2").astype("<f4")
    stats = {
        "rendered": n,
        "dropped_no_text": int(n - keep.sum()),
        "pairs": int(keep.sum()),
        "train": int(len(train)),
        "test": int(len(test)),
        "image_float16_max_abs_error": float(np.abs(f16 - x).max()),
        "image_range": [float(x.min()), float(x.max())],
    }
    with open(os.path.join(work, "build_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print("build_arrays: %(pairs)d pairs (%(dropped_no_text)d dropped for no "
          "text), train %(train)d, test %(test)d" % stats)


if __name__ == "__main__":
    main()
