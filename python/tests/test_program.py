# SPDX-License-Identifier: Apache-2.0
"""The Python calls give the program's results: the same bits for training, the same figures
for evaluation, the same picks for selection, the same embeddings."""
import json

import numpy as np
import pytest

import fusemix
from conftest import metrics_without_time, run_program, save_npy

# Small enough for a few seconds per run, with every part of a step in use (mixup, dropout,
# validation after each epoch, the cosine schedule over 3 epochs of 6 steps).
RECIPE = dict(epochs=3, batch=64, depth_x=1, depth_y=1, shared_dim=64, expansion=2, lr=1e-3, seed=7, threads=1)


def flags(settings):
    out = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, value]
    return out


@pytest.mark.parametrize("extra", [
    {},
    {"micro_batch": 20, "max_steps": 10},
    {"loss": "sigmoid", "mix": "halves", "weight_decay": 0.5, "dropout": 0.3, "alpha": 0.5},
    {"preset": "audio-to-image", "epochs": 2, "batch": 64, "depth_x": 1, "depth_y": None, "lr": None},
], ids=["contrastive", "micro-batch-max-steps", "sigmoid-halves", "preset-identity-y"])
def test_train_equals_the_program_bitwise(tmp_path, small, program, extra):
    settings = dict(RECIPE, **extra)
    if settings.get("preset") == "audio-to-image":
        settings.pop("shared_dim")  # the identity Y side fixes the shared width to Y's
    files = {k: save_npy(tmp_path, k, v) for k, v in small.items()}
    run_program(program, "train", "--x", files["x"], "--y", files["y"], "--x-val", files["x_val"],
                "--y-val", files["y_val"], "--out", tmp_path / "cli", "--quiet", *flags(settings))
    model = fusemix.train(small["x"], small["y"], x_val=small["x_val"], y_val=small["y_val"], out=tmp_path / "py",
                          quiet=True, **settings)
    cli = (tmp_path / "cli" / "adapters.safetensors").read_bytes()
    assert (tmp_path / "py" / "adapters.safetensors").read_bytes() == cli
    assert (tmp_path / "py" / "checkpoint.safetensors").read_bytes() == (tmp_path / "cli" / "checkpoint.safetensors").read_bytes()
    assert metrics_without_time(tmp_path / "py" / "metrics.jsonl") == metrics_without_time(tmp_path / "cli" / "metrics.jsonl")
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in model.history] == \
        metrics_without_time(tmp_path / "cli" / "metrics.jsonl")
    # Model.save writes what it read.
    model.save(tmp_path / "saved.safetensors")
    assert (tmp_path / "saved.safetensors").read_bytes() == cli


def test_held_out_validation_and_settings_from_the_data_equal_the_program(tmp_path, emoji, program):
    """1,243 pairs: the default hold-out (124 pairs), settings from the data but the epochs, the
    best epoch's weights, and an alpha schedule, in both front ends."""
    x, y = emoji["x_train"], emoji["y_train"]
    settings = dict(epochs=4, threads=1, seed=3, alpha_schedule="cosine", final_alpha=0.4, max_steps=20)
    run_program(program, "train", "--x", save_npy(tmp_path, "x", x), "--y", save_npy(tmp_path, "y", y),
                "--out", tmp_path / "cli", "--quiet", *flags(settings))
    model = fusemix.train(x, y, out=tmp_path / "py", quiet=True, **settings)
    for name in ("adapters.safetensors", "checkpoint.safetensors"):
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    records = metrics_without_time(tmp_path / "cli" / "metrics.jsonl")
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in model.history] == records
    assert all("val" in r and 1 <= r["best_epoch"] <= r["epoch"] for r in records)
    with pytest.raises(fusemix.ArgumentError, match="--val-fraction"):
        fusemix.train(x, y, quiet=True, val_fraction=1.0, **settings)
    with pytest.raises(fusemix.ArgumentError, match="needs validation pairs"):
        fusemix.train(x, y, quiet=True, no_val=True, patience=2, **settings)


def test_auto_search_equals_the_program(tmp_path, emoji, program):
    """``auto=True`` is ``--auto``: the same trials, the same winner, the same final weights."""
    x, y = emoji["x_train"], emoji["y_train"]
    settings = dict(auto=True, epochs=3, batch=256, shared_dim=64, threads=1, seed=2)
    run_program(program, "train", "--x", save_npy(tmp_path, "x", x), "--y", save_npy(tmp_path, "y", y),
                "--out", tmp_path / "cli", "--quiet", *flags(settings))
    fusemix.train(x, y, out=tmp_path / "py", quiet=True, **settings)
    assert (tmp_path / "py" / "adapters.safetensors").read_bytes() == \
        (tmp_path / "cli" / "adapters.safetensors").read_bytes()
    trials = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
              for line in (tmp_path / "cli" / "search.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (tmp_path / "py" / "search.jsonl").read_text().splitlines()] == trials
    # 9 x 1 epoch; round 1 (also 1 epoch) reuses those; round 2: its best and candidate 0 for 3.
    assert [t["epochs"] for t in trials[:9]] == [1] * 9 and all(t["shared_dim"] == 64 for t in trials)
    assert 10 <= len(trials) <= 11 and all(t["epochs"] == 3 for t in trials[9:])
    assert 0 in [t["candidate"] for t in trials[9:]]
    with pytest.raises(fusemix.ArgumentError, match="budget_minutes"):
        fusemix.train(x, y, quiet=True, budget_minutes=0, **settings)


def test_shards_train_as_the_program_reads_them(tmp_path, small, program):
    """x and y as lists of float16 .npy shards: read in place, as the program's --x a.npy,b.npy."""
    shards = {side: [save_npy(tmp_path, f"{side}{i}", small[side][first:last])
                     for i, (first, last) in enumerate([(0, 150), (150, 400)])] for side in ("x", "y")}
    run_program(program, "train", "--x", ",".join(map(str, shards["x"])), "--y", ",".join(map(str, shards["y"])),
                "--out", tmp_path / "cli", "--quiet", *flags(RECIPE))
    fusemix.train(shards["x"], shards["y"], out=tmp_path / "py", quiet=True, **RECIPE)
    assert (tmp_path / "py" / "adapters.safetensors").read_bytes() == \
        (tmp_path / "cli" / "adapters.safetensors").read_bytes()
    # One file as a path too; an array for one side and files for the other is refused.
    fusemix.train(save_npy(tmp_path, "x_all", small["x"]), str(save_npy(tmp_path, "y_all", small["y"])),
                  out=tmp_path / "one", quiet=True, **RECIPE)
    assert (tmp_path / "one" / "adapters.safetensors").read_bytes() == \
        (tmp_path / "cli" / "adapters.safetensors").read_bytes()
    with pytest.raises(fusemix.ArgumentError, match="both be arrays or both be files"):
        fusemix.train(shards["x"], small["y"], quiet=True, **RECIPE)


def test_evaluate_and_embed_equal_the_program(tmp_path, small, emoji, program):
    model = fusemix.train(small["x"], small["y"], out=tmp_path / "run", quiet=True, **RECIPE)
    weights = tmp_path / "run" / "adapters.safetensors"
    xt, yt = save_npy(tmp_path, "xt", emoji["x_test"]), save_npy(tmp_path, "yt", emoji["y_test"])
    cli = json.loads(run_program(program, "eval", "--model", weights, "--x", xt, "--y", yt, "--json").stdout)
    assert cli.pop("world_size") == 1  # the processes that evaluated (more under mpirun)
    assert fusemix.evaluate(model, emoji["x_test"], emoji["y_test"]) == cli
    assert fusemix.evaluate(fusemix.load(weights), emoji["x_test"], emoji["y_test"]) == cli
    # Several captions per image: the texts of images 0..149, two each.
    owner = np.repeat(np.arange(150), 2)
    o = save_npy(tmp_path, "owner", owner.astype(np.int64))
    x150 = save_npy(tmp_path, "x150", emoji["x_test"][:150])
    cli = json.loads(run_program(program, "eval", "--model", weights, "--x", x150, "--y", yt, "--image-of-text", o,
                                 "--json").stdout)
    assert cli.pop("world_size") == 1
    assert fusemix.evaluate(model, emoji["x_test"][:150], emoji["y_test"], image_of_text=owner) == cli
    # The same thread count on both sides (the program's default is all cores).
    fusemix.set_threads(1)
    for side, z, path in (("x", emoji["x_test"], xt), ("y", emoji["y_test"], yt)):
        run_program(program, "embed", "--model", weights, "--side", side, "--in", path, "--out", tmp_path / f"e{side}.npy")
        ours = model.embed_x(z) if side == "x" else model.embed_y(z)
        np.testing.assert_array_equal(ours, np.load(tmp_path / f"e{side}.npy"))


@pytest.mark.parametrize("options", [
    {"kernel": "poly", "normalize": True},
    {"kernel": "cosine", "threshold": 0.2},
    {"kernel": "rbf", "gamma": 0.01, "window": 5},
    {"kernel": "linear"},
    {"uniform": True, "seed": 3},
], ids=["poly-normalize", "cosine-threshold", "rbf-window", "linear", "uniform"])
def test_select_equals_the_program(tmp_path, emoji, program, options):
    z = emoji["x_train"][:300]
    path = save_npy(tmp_path, "z", z)
    out = run_program(program, "select", "--in", path, "--k", 40, "--out", tmp_path / "picks.npy", "--json",
                      *flags(options))
    picks, stop = fusemix.select(z, 40, **options)
    assert picks.dtype == np.int64
    np.testing.assert_array_equal(picks, np.load(tmp_path / "picks.npy"))
    assert stop == json.loads(out.stdout)["stop"]
    assert len(picks) == json.loads(out.stdout)["picks"]
