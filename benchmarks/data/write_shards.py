#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes N pairs of random float16 latents as .npy shards, as a user's encoder loop would: X and Y
in the same row order, SHARD rows per file, numpy.save of each piece. Prints the two
comma-separated lists `fusemix --x/--y` take. Existing shards of the right shape are kept.

    /usr/bin/python3 benchmarks/data/write_shards.py DIR --pairs 10000000 --dim-x 1024 --dim-y 768
"""
import argparse
import os
import sys

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir")
    p.add_argument("--pairs", type=int, default=10_000_000)
    p.add_argument("--dim-x", type=int, default=1024)
    p.add_argument("--dim-y", type=int, default=768)
    p.add_argument("--shard", type=int, default=250_000, help="rows per shard")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    lists = {"x": [], "y": []}
    for first in range(0, a.pairs, a.shard):
        n = min(a.shard, a.pairs - first)
        for side, dim in (("x", a.dim_x), ("y", a.dim_y)):
            name = os.path.join(a.dir, f"{side}_{first // a.shard:05d}.npy")
            lists[side].append(name)
            if os.path.exists(name):
                try:
                    if np.load(name, mmap_mode="r").shape == (n, dim):
                        continue
                except ValueError:
                    pass
            # Unit rows, as normalised encoder outputs are (float16 keeps them well in range).
            z = rng.standard_normal((n, dim), dtype=np.float32)
            z /= np.linalg.norm(z, axis=1, keepdims=True)
            tmp = name + ".tmp.npy"
            np.save(tmp, z.astype(np.float16))
            os.replace(tmp, name)
        print(f"wrote rows {first}..{first + n} of {a.pairs}", file=sys.stderr, flush=True)
    print(",".join(lists["x"]))
    print(",".join(lists["y"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
