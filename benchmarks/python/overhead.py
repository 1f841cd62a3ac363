# SPDX-License-Identifier: Apache-2.0
"""What calling fusemix from Python costs: the demo's training run through `fusemix.train` against
the same run through the `fusemix` program, measured alternately in one process tree.

The demo's settings (apps/fusemix/demo.cpp: depth 0, shared width 512, 200 epochs, batch 128,
lr 1e-3, weight decay 0.1, dropout 0.6, no checkpoints but the last), on the bundled training
pairs with their last 243 rows held out for validation after every epoch (the test split is not
read). Each side's wall time covers everything a user waits for: the program's from exec to exit
(reading the .npy files included), Python's from the call to its return (the copy into the
trainer's matrices included, numpy's `np.load` not). The two alternate, each repeat swapping who
goes first. Prints one JSON line per run and a summary (the overhead is the median over repeats
of Python's time over the program's); both sides write bitwise the same adapters.safetensors
(checked).

    PYTHONPATH=build/python /usr/bin/python3 benchmarks/python/overhead.py build/apps/fusemix/fusemix [--repeats 3]
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import fusemix

DATA = pathlib.Path(__file__).resolve().parents[2] / "data" / "emoji"
DEMO = dict(depth_x=0, depth_y=0, shared_dim=512, epochs=200, batch=128, lr=1e-3, weight_decay=0.1, dropout=0.6,
            checkpoint_every=0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("program")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    x, y = np.load(DATA / "x_train.npy"), np.load(DATA / "y_train.npy")
    n = x.shape[0] - 243
    settings = dict(DEMO, threads=a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        files = {}
        for name, arr in (("x", x[:n]), ("y", y[:n]), ("x_val", x[n:]), ("y_val", y[n:])):
            files[name] = tmp / f"{name}.npy"
            np.save(files[name], arr)
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
        times = {"program": [], "python": []}
        for r in range(a.repeats):
            # Alternate, and swap who goes first, so drift and order hit both sides alike.
            for side in (("program", "python") if r % 2 == 0 else ("python", "program")):
                out = tmp / f"{side}{r}"
                t0 = time.perf_counter()
                if side == "program":
                    subprocess.run([a.program, "train", "--x", files["x"], "--y", files["y"], "--x-val", files["x_val"],
                                    "--y-val", files["y_val"], "--out", out, "--quiet", *flags], check=True)
                else:
                    fusemix.train(x[:n], y[:n], x_val=x[n:], y_val=y[n:], out=out, quiet=True, **settings)
                seconds = time.perf_counter() - t0
                times[side].append(seconds)
                print(json.dumps({"run": r, "side": side, "seconds": round(seconds, 3)}), flush=True)
        same = all((tmp / f"program{r}" / "adapters.safetensors").read_bytes() ==
                   (tmp / f"python{r}" / "adapters.safetensors").read_bytes() for r in range(a.repeats))
    prog, py = statistics.median(times["program"]), statistics.median(times["python"])
    # The median of each repeat's ratio: a repeat's two runs are neighbours in time.
    paired = statistics.median(p / q for p, q in zip(times["python"], times["program"]))
    print(json.dumps({"summary": True, "threads": a.threads, "repeats": a.repeats, "program_median_s": round(prog, 3),
                      "python_median_s": round(py, 3), "python_over_program": round(py / prog, 4),
                      "paired_ratio_median": round(paired, 4), "overhead_percent": round(100 * (paired - 1), 2),
                      "same_weights": same}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
