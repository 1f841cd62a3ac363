#!/usr/bin/env python3
"""Compares the weights of two safetensors files.

    compare_weights.py A B TOL

Prints the largest relative difference over the tensors (each by its norm,
||a - b|| / ||a||) and exits 0 when it is at most TOL, 1 otherwise (2 when the
files hold different tensor names or shapes).  TOL 0 asks for equal values.
numpy only.  Used by tests/dist/cli_mpi.sh and benchmarks/gpu/run.sh.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusemix_torch import read_safetensors  # noqa: E402


def worst_relative_difference(a, b):
    if a.keys() != b.keys():
        raise KeyError("different tensors: %s vs %s" % (sorted(a), sorted(b)))
    worst = 0.0
    for k in a:
        x, y = a[k].astype(np.float64), b[k].astype(np.float64)
        if x.shape != y.shape:
            raise KeyError("%s: shape %s vs %s" % (k, x.shape, y.shape))
        worst = max(worst, float(np.linalg.norm(x - y)) / max(float(np.linalg.norm(x)), 1e-30))
    return worst


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: compare_weights.py A B TOL")
    a, _ = read_safetensors(argv[1], strict=False)
    b, _ = read_safetensors(argv[2], strict=False)
    tol = float(argv[3])
    try:
        worst = worst_relative_difference(a, b)
    except KeyError as e:
        print("weights not comparable:", e.args[0])
        return 2
    print("weights within %.2e relative" % worst)
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
