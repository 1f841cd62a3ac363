# SPDX-License-Identifier: Apache-2.0
"""The Python layer itself: arrays taken without copies, errors as typed exceptions with the
library's messages, callbacks, the GIL, the estimator, and Ctrl-C during training."""
import inspect
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import fusemix
from conftest import run_program, save_npy

QUICK = dict(epochs=2, batch=64, depth_x=1, depth_y=1, shared_dim=32, expansion=2, threads=1, quiet=True)


# --- arrays ---------------------------------------------------------------------------------------

def test_float32_c_order_is_read_in_place():
    a = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    for view in (a, a[10:30], a[::1]):
        got = fusemix._as_latents(view, "test", "a")
        assert got is view or np.shares_memory(got, view)
        assert fusemix._core.data_address(got) == view.ctypes.data
    # Anything else is converted once: a new float32 C-order array with the same values.
    for other in (a.astype(np.float64), np.asfortranarray(a), a[:, ::2], a.astype(np.float16)):
        got = fusemix._as_latents(other, "test", "a")
        assert got.dtype == np.float32 and got.flags.c_contiguous and not np.shares_memory(got, other)
        np.testing.assert_array_equal(got, other.astype(np.float32))


def test_every_layout_gives_the_same_picks():
    z = np.random.default_rng(1).standard_normal((120, 16)).astype(np.float32)
    want, _ = fusemix.select(z, 12, kernel="cosine")  # (16-d rows: a cosine kernel of rank 16)
    assert len(want) == 12
    for other in (z.astype(np.float64), np.asfortranarray(z), np.vstack([z, z])[:120]):
        np.testing.assert_array_equal(fusemix.select(other, 12, kernel="cosine")[0], want)
    # float16 gives the picks of float32 holding the same rounded values.
    h = z.astype(np.float16)
    np.testing.assert_array_equal(fusemix.select(h, 20)[0], fusemix.select(h.astype(np.float32), 20)[0])
    # threads= changes the speed only
    for t in (1, 2):
        np.testing.assert_array_equal(fusemix.select(z, 12, kernel="cosine", threads=t)[0], want)


# --- errors ---------------------------------------------------------------------------------------

def test_bad_arrays_raise_typed_errors_with_the_library_messages(small):
    x, y = small["x"], small["y"]
    with pytest.raises(fusemix.ShapeError, match=r"fusemix.train: x: latents are a 2-D array .*got 1 dimensions"):
        fusemix.train(x[0], y[0], **QUICK)
    with pytest.raises(fusemix.ArgumentError, match=r"fusemix.select: z: latents must be floating point .*got int64"):
        fusemix.select(np.zeros((5, 3), dtype=np.int64), 2)
    with pytest.raises(fusemix.ShapeError, match="same number of rows"):
        fusemix.train(x, y[:-1], **QUICK)
    bad = x.astype(np.float32)
    bad[3, 2] = np.nan
    with pytest.raises(fusemix.NumericError, match=r"fusemix::trainer::validate: X contains NaN or Inf at row 3, column 2"):
        fusemix.train(bad, y, **QUICK)
    with pytest.raises(fusemix.NumericError, match=r"fusemix.select: z: latents must be finite .*inf at row 3, column 2"):
        bad[3, 2] = np.inf
        fusemix.select(bad, 4)
    with pytest.raises(fusemix.ShapeError, match=r"fusemix::greedy_kdpp: .*\(expected <= 400, got 401\)"):
        fusemix.select(x, 401)
    with pytest.raises(fusemix.ShapeError, match=r"x_val must have x's width \(expected 1280, got 5\)"):
        fusemix.train(x, y, x_val=x[:10, :5], y_val=y[:10], **QUICK)
    # Each is also the builtin a Python user would catch.
    assert issubclass(fusemix.ShapeError, ValueError) and issubclass(fusemix.NumericError, ValueError)
    assert issubclass(fusemix.ArgumentError, ValueError) and issubclass(fusemix.IoError, OSError)
    assert all(issubclass(e, fusemix.Error) for e in (fusemix.ShapeError, fusemix.IoError, fusemix.DeviceError))


def test_bad_settings_raise_argument_errors(small):
    x, y = small["x"], small["y"]
    cases = [
        (dict(QUICK, epochs=0), r"fusemix.train: epochs out of range \(expected >= 1, got 0\)"),
        (dict(QUICK, lr=-1.0), r"lr out of range \(expected > 0, got -1.0\)"),
        (dict(QUICK, dropout=1.5), r"dropout out of range"),
        (dict(QUICK, mix="thirds"), r"unknown mix \(expected permutation or halves, got 'thirds'\)"),
        (dict(QUICK, preset="video"), r"unknown preset"),
        (dict(QUICK, batch=2.5), r"batch must be an integer"),
        (dict(QUICK, batch=1000), r"at least one full batch|batch"),
        (dict(QUICK, resume=True), r"resume=True needs out"),
        (dict(QUICK, callback=42), r"callback must be callable"),
        (dict(QUICK, checkpoint_minutes=-1), r"checkpoint_minutes out of range \(expected >= 0, got -1\)"),
        (dict(QUICK, progress_seconds=-1), r"progress_seconds out of range \(expected >= 0, got -1\)"),
        # Contradictions the program refuses too (shared code for the last three).
        (dict(QUICK, final_alpha=0.5), r"final_alpha is where alpha_schedule ends"),
        (dict(QUICK, identity_y=True, shared_dim=None), r"--identity-y has no Y adapter, so no depth"),
        (dict(QUICK, precision="bf16"), r"--precision bf16 chooses the GPU's GEMM operands; it needs --device cuda"),
        (dict(QUICK, no_val=True, x_val=x[:50], y_val=y[:50]), r"--no-val and --x-val/--y-val contradict each other"),
    ]
    for settings, message in cases:
        with pytest.raises((fusemix.ArgumentError, fusemix.ShapeError), match=message):
            fusemix.train(x, y, **settings)
    with pytest.raises(fusemix.ArgumentError, match="x_val and y_val go together"):
        fusemix.train(x, y, x_val=x[:10], **QUICK)


def test_real_settings_must_be_finite_numbers(small):
    # Refused before training, as the program refuses --lr inf (not a NumericError "diverged" later).
    x, y = small["x"], small["y"]
    for name in ("lr", "alpha", "weight_decay", "dropout", "final_alpha", "checkpoint_minutes", "progress_seconds",
                 "val_fraction"):
        for bad in (float("inf"), float("-inf"), float("nan")):
            with pytest.raises(fusemix.ArgumentError,
                               match=rf"^fusemix.train: {name} must be finite \(expected a finite number, got {bad}\)$"):
                fusemix.train(x, y, **dict(QUICK, **{name: bad}))
    with pytest.raises(fusemix.ArgumentError, match=r"budget_minutes must be finite \(expected a finite number, got inf\)"):
        fusemix.train(x, y, **dict(QUICK, auto=True, budget_minutes=float("inf")))
    with pytest.raises(fusemix.ArgumentError, match=r"lr must be finite \(expected a finite number, got an int too large"):
        fusemix.train(x, y, **dict(QUICK, lr=2**2000))
    for name, bad in (("offset", float("inf")), ("gamma", float("inf")), ("threshold", float("nan"))):
        with pytest.raises(fusemix.ArgumentError, match=rf"^fusemix.select: {name} must be finite"):
            fusemix.select(x, 4, **{name: bad})


def test_number_settings_refuse_strings(small):
    # As the integer settings refuse '2', the real ones refuse '0.5' rather than reading it.
    x, y = small["x"], small["y"]
    with pytest.raises(fusemix.ArgumentError,
                       match=r"^fusemix.train: dropout must be a number \(expected a float, got str '0.5'\)$"):
        fusemix.train(x, y, **dict(QUICK, dropout="0.5"))
    with pytest.raises(fusemix.ArgumentError, match=r"lr must be a number \(expected a float, got bytes b'0.001'\)"):
        fusemix.train(x, y, **dict(QUICK, lr=b"0.001"))
    with pytest.raises(fusemix.ArgumentError, match=r"epochs must be an integer \(expected an int, got str '2'\)"):
        fusemix.train(x, y, **dict(QUICK, epochs="2"))
    with pytest.raises(fusemix.ArgumentError, match=r"^fusemix.select: offset must be a number \(expected a float, got str '1'\)$"):
        fusemix.select(x, 4, offset="1")
    # bool is an int to both, as Python has it (True is 1).
    assert fusemix._count("f", "n", True, 0) == 1 and fusemix._real("f", "r", True, 0) == 1.0


def test_integers_beyond_the_cpp_type_raise_argument_errors(small):
    x, y = small["x"], small["y"]
    u64 = 2**64 - 1
    for settings, message in [
        (dict(QUICK, epochs=2**64), rf"fusemix.train: epochs out of range \(expected <= {u64}, got {2**64}\)"),
        (dict(QUICK, batch=2**70), rf"fusemix.train: batch out of range \(expected <= {u64}, got {2**70}\)"),
        (dict(QUICK, seed=2**64), rf"fusemix.train: seed out of range \(expected <= {u64}, got {2**64}\)"),
        (dict(QUICK, max_steps=2**64), r"fusemix.train: max_steps out of range"),
        (dict(QUICK, threads=2**31), rf"fusemix.train: threads out of range \(expected <= {2**31 - 1}, got {2**31}\)"),
    ]:
        with pytest.raises(fusemix.ArgumentError, match=message):
            fusemix.train(x, y, **settings)
    with pytest.raises(fusemix.ArgumentError, match=rf"^fusemix.select: k out of range \(expected <= {u64}, got {2**64}\)$"):
        fusemix.select(x, 2**64)
    with pytest.raises(fusemix.ArgumentError, match=rf"^fusemix.select: degree out of range \(expected <= {2**32 - 1}"):
        fusemix.select(x, 4, degree=2**32)
    with pytest.raises(fusemix.ArgumentError, match=r"^fusemix.select: threads out of range"):
        fusemix.select(x, 4, threads=2**40)
    with pytest.raises(fusemix.ArgumentError,
                       match=rf"^fusemix.set_threads: n out of range \(expected <= {2**31 - 1}, got {2**40}\)$"):
        fusemix.set_threads(2**40)


def test_paths_that_are_no_paths_raise_argument_errors(tmp_path, small):
    x, y = small["x"], small["y"]
    with pytest.raises(fusemix.ArgumentError,
                       match=r"^fusemix.load: path must be a str or os.PathLike \(expected a path, got NoneType\)$"):
        fusemix.load(None)
    with pytest.raises(fusemix.ArgumentError, match=r"^fusemix.load: path must not be empty"):
        fusemix.load("")
    with pytest.raises(fusemix.ArgumentError,
                       match=r"^fusemix.train: out must be a str or os.PathLike \(expected a path, got int\)$"):
        fusemix.train(x, y, out=123, **QUICK)
    # An empty name in a shard list is the program's argument error (--y a.npy,,b.npy), naming the
    # side and the position, not a file that cannot be opened.
    xf, yf = save_npy(tmp_path, "x", x), save_npy(tmp_path, "y", y)
    with pytest.raises(fusemix.ArgumentError,
                       match=r"^fusemix.train: y\[1\] must not be empty \(expected a file name, got ''\)$"):
        fusemix.train([xf], [str(yf), "", str(yf)], **QUICK)
    with pytest.raises(fusemix.ArgumentError, match=r"^fusemix.train: x must not be empty"):
        fusemix.train("", yf, **QUICK)
    with pytest.raises(fusemix.ArgumentError, match=r"^fusemix.train: x\[1\] must be a str or os.PathLike .*got int"):
        fusemix.train([xf, 3], [yf], **QUICK)


def test_validation_arrays_of_no_rows_raise_shape_error(small):
    # The program refuses a --x-val of 0 rows; silently training without validation would hide it.
    x, y = small["x"], small["y"]
    with pytest.raises(fusemix.ShapeError,
                       match=r"^fusemix.train: x_val: validation pairs need at least one row \(expected >= 1, got 0\)$"):
        fusemix.train(x, y, x_val=x[:0], y_val=y[:0], **QUICK)
    with pytest.raises(fusemix.ShapeError, match=r"y_val: validation pairs need at least one row"):
        fusemix.train(x, y, x_val=x[:5], y_val=y[:0], **QUICK)


def test_a_diverging_run_raises_numeric_error_and_writes_no_weights(tmp_path, small):
    with pytest.raises(fusemix.NumericError, match=r"training diverged in epoch 1, step \d+ .*not finite"):
        fusemix.train(small["x"], small["y"], lr=1e30, out=tmp_path / "run", **QUICK)
    assert not (tmp_path / "run" / "adapters.safetensors").exists()


def test_files_and_devices(tmp_path, small):
    with pytest.raises(fusemix.IoError, match="nothing.safetensors"):
        fusemix.load(tmp_path / "nothing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x05")
    with pytest.raises(OSError, match="junk.safetensors"):
        fusemix.load(tmp_path / "junk.safetensors")
    # A build without CUDA, or a machine without a GPU, says so; with one, the run trains.
    try:
        model = fusemix.train(small["x"], small["y"], device="cuda", **QUICK)
    except fusemix.DeviceError as e:
        assert "--device cuda" in str(e) or "CUDA" in str(e)
    else:
        assert model.shared_dim == 32
    with pytest.raises(fusemix.ArgumentError, match="--gpu-latents stream chooses how the GPU reads the pairs; it needs --device cuda"):
        fusemix.train(small["x"], small["y"], gpu_latents="stream", **QUICK)
    with pytest.raises(fusemix.ArgumentError, match="gpu_latents"):
        fusemix.train(small["x"], small["y"], gpu_latents="somewhere", **QUICK)
    model = fusemix.train(small["x"], small["y"], out=tmp_path / "run", **QUICK)
    with pytest.raises(fusemix.ShapeError, match=r"fusemix.Model.embed_y: latent width must equal .*\(expected 100, got 1280\)"):
        model.embed_y(small["x"])
    with pytest.raises(fusemix.ShapeError, match=r"fusemix.evaluate: x: latent width"):
        fusemix.evaluate(model, small["y"], small["y"])


# --- what a run reports -----------------------------------------------------------------------------

def test_callback_sees_every_epoch_and_its_errors_end_the_run(small):
    seen = []
    model = fusemix.train(small["x"], small["y"], x_val=small["x_val"], y_val=small["y_val"],
                          callback=seen.append, **dict(QUICK, epochs=3))
    assert [r["epoch"] for r in seen] == [1, 2, 3]
    assert seen == model.history and "val" in seen[-1] and 0 <= seen[-1]["val"]["mean"] <= 100
    assert model.temperature == pytest.approx(seen[-1]["temp"], rel=1e-6)

    def stop(record):
        raise RuntimeError(f"stop after epoch {record['epoch']}")
    with pytest.raises(RuntimeError, match="stop after epoch 1"):
        fusemix.train(small["x"], small["y"], callback=stop, **QUICK)


def test_a_recipe_likely_to_train_poorly_warns_and_still_runs(small):
    # 400 pairs: 2 epochs of 6 steps of 64 rows.
    with pytest.warns(fusemix.TrainingWarning, match=r"only 12 optimiser steps \(2 epochs x 6 steps of 64 rows, from 400 pairs\)"):
        model = fusemix.train(small["x"], small["y"], **QUICK)
    assert len(model.history) == 2
    with pytest.warns(fusemix.TrainingWarning, match=r"--batch 300 is over half of the 400 training pairs") as caught:
        fusemix.train(small["x"], small["y"], **dict(QUICK, batch=300))
    assert caught[0].filename == __file__  # pointing at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 125 epochs of 8 steps: 1,000 steps, no warning
        fusemix.train(small["x"][:64], small["y"][:64], **dict(QUICK, batch=8, epochs=125, shared_dim=8, expansion=1))


def test_training_releases_the_gil(small):
    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)
    t = threading.Thread(target=tick)
    t.start()
    try:
        start = time.perf_counter()
        fusemix.train(small["x"], small["y"], **dict(QUICK, epochs=3))
        end = time.perf_counter()
    finally:
        done.set()
        t.join()
    during = [s for s in ticks if start < s < end]
    # A held GIL would starve the ticking thread for the whole run.
    assert end - start > 0.2 and len(during) >= 0.3 * (end - start) / 0.005


def test_checkpoint_minutes_saves_inside_epochs_and_changes_no_bit(tmp_path, small):
    def checkpoint_position(path):
        raw = path.read_bytes()
        meta = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
        return int(meta["epoch"]), int(meta["step_in_epoch"])

    settings = dict(QUICK, no_val=True, seed=3)
    seen = []
    # Each epoch's record comes before that epoch's own checkpoint: what is on disk then is the
    # last one written inside the epoch.
    paused = fusemix.train(small["x"], small["y"], out=tmp_path / "paused", checkpoint_minutes=1e-6,
                           callback=lambda r: seen.append(checkpoint_position(tmp_path / "paused" / "checkpoint.safetensors")),
                           **settings)
    whole = fusemix.train(small["x"], small["y"], out=tmp_path / "whole", **settings)
    steps = whole.history[0]["steps"]
    assert seen == [(e, steps - 1) for e in range(len(seen))] and len(seen) == settings["epochs"]
    assert (tmp_path / "paused" / "adapters.safetensors").read_bytes() == \
        (tmp_path / "whole" / "adapters.safetensors").read_bytes()
    assert [r["loss"] for r in paused.history] == [r["loss"] for r in whole.history]


def test_model_properties_and_save(tmp_path, small):
    model = fusemix.train(small["x"], small["y"], **dict(QUICK, depth_y=2, loss="sigmoid"))
    assert (model.dim_x, model.dim_y, model.shared_dim, model.depth_x, model.depth_y, model.expansion) == \
        (1280, 100, 32, 1, 2, 2)
    assert model.loss == "sigmoid" and model.temperature is None
    assert set(model.loss_parameters) == {"logit_scale", "logit_bias"}
    model.save(tmp_path / "m.safetensors")
    again = fusemix.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(again.embed_x(small["x_val"]), model.embed_x(small["x_val"]))
    assert repr(again).startswith("fusemix.Model(x: 1280 -> 32 (depth 1)")


def test_an_identity_y_side_embeds_the_latents_as_they_are(small):
    model = fusemix.train(small["x"], small["y"], **dict(QUICK, identity_y=True, shared_dim=None, depth_y=None))
    assert model.depth_y is None and model.shared_dim == model.dim_y == 100
    np.testing.assert_array_equal(model.embed_y(small["y_val"]), small["y_val"].astype(np.float32))


# --- the estimator ----------------------------------------------------------------------------------

def test_estimator_in_a_scikit_learn_style_workflow(small):
    est = fusemix.FuseMix(**QUICK)
    assert est.get_params()["batch"] == 64
    clone = type(est)(**est.get_params())
    assert clone.get_params() == est.get_params()
    with pytest.raises(fusemix.ArgumentError, match="not fitted"):
        est.transform_x(small["x"])
    with pytest.raises(fusemix.ArgumentError, match="unknown option"):
        est.set_params(learning_rate=1)
    assert est.set_params(lr=2e-3) is est and est.lr == 2e-3
    est.fit(small["x"], small["y"])
    sx, sy = est.transform_x(small["x_val"]), est.transform_y(small["y_val"])
    assert sx.shape == sy.shape == (100, 32)
    assert est.score(small["x_val"], small["y_val"]) == fusemix.evaluate(est.model_, small["x_val"], small["y_val"])["mean"]
    # The same options and seed give the same model.
    np.testing.assert_array_equal(clone.set_params(lr=2e-3).fit(small["x"], small["y"]).transform_x(small["x_val"]), sx)



def test_the_estimator_takes_every_keyword_of_train_but_the_validation_pairs(small):
    keywords = {n for n, p in inspect.signature(fusemix.train).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(fusemix.FuseMix().get_params()) == keywords - {"x_val", "y_val"}
    assert fusemix.FuseMix().quiet and repr(fusemix.FuseMix(**QUICK)).startswith("FuseMix(epochs=2, batch=64")
    with pytest.raises(fusemix.ArgumentError, match=r"^FuseMix: unknown option .*got 'x_val'"):
        fusemix.FuseMix(x_val=small["x_val"])
    # Keywords the estimator once lacked reach train: 3 steps, inside the first of 2 epochs of 6 steps,
    # so no epoch's record.
    est = fusemix.FuseMix(**QUICK, max_steps=3, micro_batch=32).fit(small["x"], small["y"])
    assert est.model_.history == []
    np.testing.assert_array_equal(
        est.transform_x(small["x_val"]),
        fusemix.train(small["x"], small["y"], **QUICK, max_steps=3, micro_batch=32).embed_x(small["x_val"]))

# --- Ctrl-C -----------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, numpy as np, fusemix
    x, y, out = np.load(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
    try:
        fusemix.train(x, y, out=out, epochs=60, batch=32, depth_x=1, depth_y=1, shared_dim=16, expansion=1,
                      threads=1, seed=5, checkpoint_every=0, quiet=True)
    except KeyboardInterrupt as e:
        print("KeyboardInterrupt:", e)
        sys.exit(3)
    print("finished")
""")


def test_ctrl_c_leaves_a_checkpoint_that_resume_continues(tmp_path, small, program):
    x, y = save_npy(tmp_path, "x", small["x"][:64]), save_npy(tmp_path, "y", small["y"][:64])
    run_dir = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", CHILD, x, y, run_dir], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 60
    # Signalled once the first epoch is recorded, so the run is inside its loop (a new run writes
    # metrics.jsonl empty when it starts, before its signal handlers are in place).
    metrics = run_dir / "metrics.jsonl"
    while not (metrics.exists() and metrics.stat().st_size > 0) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, (out, err)
    assert "KeyboardInterrupt: fusemix train: stopped by SIGINT; saved" in out
    assert (run_dir / "checkpoint.safetensors").exists() and not (run_dir / "adapters.safetensors").exists()
    # The program resumes the Python run and ends with the bits of an uninterrupted one.
    common = ["--x", x, "--y", y, "--epochs", 60, "--checkpoint-every", 0, "--batch", 32, "--depth-x", 1, "--depth-y", 1, "--shared-dim", 16,
              "--expansion", 1, "--threads", 1, "--seed", 5, "--quiet"]
    run_program(program, "train", *common, "--out", run_dir, "--resume")
    run_program(program, "train", *common, "--out", tmp_path / "whole")
    assert (run_dir / "adapters.safetensors").read_bytes() == (tmp_path / "whole" / "adapters.safetensors").read_bytes()
