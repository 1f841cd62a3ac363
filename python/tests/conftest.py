# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: small slices of the bundled emoji latents, and the `fusemix` program.

ctest sets FUSEMIX_PROGRAM (the program built beside the module) and FUSEMIX_DATA (data/emoji);
run by hand: PYTHONPATH=<build>/python FUSEMIX_PROGRAM=<build>/apps/fusemix/fusemix \
/usr/bin/python3 -m pytest python/tests
"""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

DATA = pathlib.Path(os.environ.get("FUSEMIX_DATA", pathlib.Path(__file__).resolve().parents[2] / "data" / "emoji"))


@pytest.fixture(scope="session")
def emoji():
    """The bundled pairs as stored (float16): 1,243 training and 300 test rows."""
    return {name: np.load(DATA / f"{name}.npy") for name in ("x_train", "y_train", "x_test", "y_test")}


@pytest.fixture(scope="session")
def small(emoji):
    """400 training and 100 validation pairs, float16 as stored."""
    return {"x": emoji["x_train"][:400], "y": emoji["y_train"][:400],
            "x_val": emoji["x_train"][1000:1100], "y_val": emoji["y_train"][1000:1100]}


@pytest.fixture(scope="session")
def program():
    path = os.environ.get("FUSEMIX_PROGRAM")
    if not path or not os.path.exists(path):
        pytest.skip("FUSEMIX_PROGRAM (the fusemix program) is not set")
    return path


def run_program(program, *args, check=True):
    """Runs `fusemix ARGS...`; returns the completed process (stdout and stderr as text)."""
    # One thread, as the tests' Python side uses: the program's default is every core, and the
    # thread count changes the last bits of the products.
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    p = subprocess.run([program, *map(str, args)], capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"fusemix {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def save_npy(folder, name, array):
    path = pathlib.Path(folder) / f"{name}.npy"
    np.save(path, array)
    return path


def metrics_without_time(path):
    """metrics.jsonl's records without their wall times."""
    out = []
    for line in pathlib.Path(path).read_text().splitlines():
        record = json.loads(line)
        record.pop("seconds")
        out.append(record)
    return out
