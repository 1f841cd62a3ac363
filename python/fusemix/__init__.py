# SPDX-License-Identifier: Apache-2.0
"""fusemix: FuseMix fusion adapters on cached encoder latents, from numpy.

The functions run the library's C++ (the ``fusemix`` program's own training code), so
``fusemix.train`` and ``fusemix train`` with the same settings write the same bits::

    import numpy as np, fusemix
    model = fusemix.train(x, y, epochs=20, batch=256, x_val=xv, y_val=yv, out="run")
    print(fusemix.evaluate(model, x_test, y_test)["mean"])
    sx, sy = model.embed_x(x_test), model.embed_y(y_test)      # shared-space embeddings
    picks, why = fusemix.select(x, 1000, kernel="cosine")       # a diverse subset

Arrays: float16, float32 or float64, 2-D, any order. A float32 C-contiguous array (a view too)
is read in place; anything else is converted to float32 C order once, on a copy (``train``
copies its pairs once in any case: the trainer keeps them in its own matrices, as the program
does). Errors are fusemix.Error subclasses: ShapeError, ArgumentError and NumericError are
ValueErrors, IoError an OSError, DeviceError a RuntimeError. See docs/python.md.
"""
from __future__ import annotations

import inspect
import json
import math
import operator
import os
import sys
import tempfile
import warnings

import numpy as np

from . import _core
from ._core import ArgumentError, DeviceError, Error, IoError, NumericError, ShapeError

__version__ = _core.version
__all__ = [
    "train", "load", "evaluate", "select", "set_threads", "Model", "FuseMix",
    "Error", "ShapeError", "ArgumentError", "NumericError", "IoError", "DeviceError", "TrainingWarning",
]

_FLOATS = (np.float16, np.float32, np.float64)
_PATH_TYPES = (str, bytes, os.PathLike)
# The largest value of each C++ integer type a setting is cast to (python/src/module.cpp and the
# settings it fills): std::size_t (most counts), std::uint64_t (seeds, max_steps), unsigned
# (select's degree) and int (thread counts: fusemix::cpu::set_threads takes an int).
_SIZE_MAX = 2 * sys.maxsize + 1
_UINT64_MAX = 2**64 - 1
_UINT_MAX = 2**32 - 1
_INT_MAX = 2**31 - 1


class TrainingWarning(UserWarning):
    """A recipe likely to train poorly: too few optimiser steps in all, or a batch over half the
    pairs (the warnings `fusemix train` prints). The run goes ahead."""


def _warn(message):
    # stacklevel 4: _warn <- _train_into <- train <- the caller (the C++ frames in between do not count)
    warnings.warn(message, TrainingWarning, stacklevel=4)


def _as_latents(a, where, name):
    """`a` as a float32 C-contiguous 2-D array: `a` itself when it already is one."""
    arr = np.asarray(a)
    if arr.dtype.type not in _FLOATS:
        raise ArgumentError(f"{where}: {name}: latents must be floating point "
                            f"(expected float16, float32 or float64, got {arr.dtype})")
    if arr.ndim != 2:
        raise ShapeError(f"{where}: {name}: latents are a 2-D array (rows, width) "
                         f"(expected 2 dimensions, got {arr.ndim} dimensions, shape {arr.shape})")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _path(where, name, value):
    """A file or folder path given as a str or os.PathLike (or bytes, as `os.fspath` takes them),
    as a str; an empty name is refused as the program refuses one."""
    try:
        path = os.fsdecode(value)
    except TypeError:
        raise ArgumentError(f"{where}: {name} must be a str or os.PathLike "
                            f"(expected a path, got {type(value).__name__})") from None
    if not path:
        raise ArgumentError(f"{where}: {name} must not be empty (expected a file name, got '')")
    return path


def _latent_files(where, name, v):
    """The .npy files `v` names (a path, or a list of shards concatenated by rows), as strings; None
    when `v` is not a path or a list of paths (an array, then). A list holding a path is a list of
    files, each checked by `_path` (an empty name, or one that is no path, names its position)."""
    if isinstance(v, _PATH_TYPES):
        return [_path(where, name, v)]
    if isinstance(v, (list, tuple)) and not v:
        raise ArgumentError(f"{where}: {name}: an empty list of files (expected one .npy path or more)")
    if isinstance(v, (list, tuple)) and any(isinstance(p, _PATH_TYPES) for p in v):
        return [_path(where, f"{name}[{i}]", p) for i, p in enumerate(v)]
    return None


def _found(value):
    """What a message says it got: the type, and the value of a string (`got str '0.5'`)."""
    if isinstance(value, (str, bytes, bytearray)):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__


def _count(where, name, value, least, most=_SIZE_MAX):
    """An integer setting in [least, most]; `most` is the largest the C++ type it is cast to holds
    (std::size_t unless said otherwise)."""
    try:
        v = operator.index(value)
    except TypeError:
        raise ArgumentError(f"{where}: {name} must be an integer (expected an int, got {_found(value)})") from None
    if v < least:
        raise ArgumentError(f"{where}: {name} out of range (expected >= {least}, got {v})")
    if v > most:
        raise ArgumentError(f"{where}: {name} out of range (expected <= {most}, got {v})")
    return v


def _real(where, name, value, low, high=math.inf, low_open=False):
    """A finite real setting in [low, high] (or (low, high] with `low_open`). Strings are refused
    (the integer settings refuse them too); bool is taken as 0 or 1, as `_count` takes it."""
    if isinstance(value, (str, bytes, bytearray)):
        raise ArgumentError(f"{where}: {name} must be a number (expected a float, got {_found(value)})")
    try:
        v = float(value)
    except OverflowError:  # an int beyond any double
        raise ArgumentError(f"{where}: {name} must be finite "
                            f"(expected a finite number, got an int too large for a float)") from None
    except (TypeError, ValueError):
        raise ArgumentError(f"{where}: {name} must be a number (expected a float, got {_found(value)})") from None
    if not math.isfinite(v):
        raise ArgumentError(f"{where}: {name} must be finite (expected a finite number, got {value})")
    if not (v > low if low_open else v >= low) or v > high:
        bound = f"> {low}" if low_open else f">= {low}"
        raise ArgumentError(f"{where}: {name} out of range (expected {bound}"
                            f"{'' if high == math.inf else f' and <= {high}'}, got {value})")
    return v


def _choice(where, name, value, allowed):
    if value not in allowed:
        raise ArgumentError(f"{where}: unknown {name} (expected {' or '.join(allowed)}, got {value!r})")
    return value


def set_threads(n):
    """Runs the CPU's matrix products on `n` threads from now on (`train`'s ``threads`` sets it
    too, and it stays set). Results are bitwise reproducible for a given count."""
    _core.set_threads(_count("fusemix.set_threads", "n", n, 1, _INT_MAX))


class Model:
    """A trained pair of fusion adapters (and the loss's learned scalars).

    Made by `train` and `load`. `embed_x` and `embed_y` map latents into the shared space (the
    adapters in evaluation mode: no dropout); `history` holds the per-epoch records of the run
    that made it (metrics.jsonl), empty for a loaded file. One call at a time per model.
    """

    def __init__(self, core, history=()):
        self._core = core
        self._info = core.info()
        self.history = list(history)

    def embed_x(self, a):
        """The X side's embeddings of latents `a` (rows × dim_x), float32 rows × shared_dim."""
        return self._core.embed("x", _as_latents(a, "fusemix.Model.embed_x", "latents"))

    def embed_y(self, a):
        """The Y side's embeddings of latents `a` (rows × dim_y); the latents as they are
        (float32) when the model has no Y adapter (an identity side)."""
        return self._core.embed("y", _as_latents(a, "fusemix.Model.embed_y", "latents"))

    def save(self, path):
        """Writes the model as `.safetensors` (atomically: a temporary file, then a rename),
        readable by `load`, `fusemix eval`/`embed` and the authors' PyTorch code."""
        self._core.save(_path("fusemix.Model.save", "path", path))

    @property
    def dim_x(self):
        """Width of the X latents."""
        return self._info["x"]["in_dim"]

    @property
    def dim_y(self):
        """Width of the Y latents."""
        y = self._info["y"]
        return y["in_dim"] if y is not None else self._info["x"]["out_dim"]

    @property
    def shared_dim(self):
        """Width of the shared space."""
        return self._info["x"]["out_dim"]

    @property
    def depth_x(self):
        """Blocks of the X adapter."""
        return self._info["x"]["depth"]

    @property
    def depth_y(self):
        """Blocks of the Y adapter (None for an identity Y side)."""
        y = self._info["y"]
        return y["depth"] if y is not None else None

    @property
    def expansion(self):
        """The blocks' widening factor."""
        return self._info["x"]["expansion"]

    @property
    def loss(self):
        """"contrastive", "sigmoid", or "" when the file records no loss."""
        return self._info["loss"]

    @property
    def loss_parameters(self):
        """The loss's learned scalars by name: {"temp": τ} or {"logit_scale": …, "logit_bias": …}."""
        return dict(self._info["loss_parameters"])

    @property
    def temperature(self):
        """The contrastive loss's learned temperature τ (None for another loss)."""
        return self._info["loss_parameters"].get("temp")

    def __repr__(self):
        y = f"{self.dim_y} -> {self.shared_dim} (depth {self.depth_y})" if self.depth_y is not None else "identity"
        return (f"fusemix.Model(x: {self.dim_x} -> {self.shared_dim} (depth {self.depth_x}), y: {y}, "
                f"loss {self.loss or 'none'})")


def load(path):
    """Reads a model file (`adapters.safetensors` of `fusemix train`, `Model.save`, or PyTorch)."""
    return Model(_core.Model(_path("fusemix.load", "path", path)))


def train(x, y, *, preset=None, epochs=None, batch=None, lr=None, weight_decay=None, depth_x=None, depth_y=None,
          shared_dim=None, expansion=4, dropout=None, alpha=None, mix=None, loss="contrastive", seed=0,
          threads=0, x_val=None, y_val=None, out=None, callback=None, identity_y=False, device="cpu",
          precision="fp32", gemm="auto", checkpoint_every=None, checkpoint_minutes=0.0, progress_seconds=60.0,
          resume=False, quiet=False, micro_batch=0, max_steps=0, val_fraction=None, no_val=False, keep_last=False,
          patience=0, alpha_schedule="constant", final_alpha=1.0, auto=False, budget_minutes=None,
          gpu_latents="auto"):
    """Trains two fusion adapters on the pairs (x[i], y[i]) as ``fusemix train`` does.

    Every keyword is the program's flag of the same name (``--weight-decay`` is
    ``weight_decay``). Without a `preset` ("image-text", "audio-text", "audio-to-image"), the
    recipe settings left None (epochs, batch, lr, weight_decay, depth_x, depth_y) are chosen
    from the data as the program chooses them (`docs/training.md`); with one, they are the
    preset's. With `out`, the run writes
    OUT/adapters.safetensors, OUT/checkpoint.safetensors and OUT/metrics.jsonl, exactly as the
    program does; without it, a temporary directory that is removed afterwards (and no
    checkpoints but the last unless `checkpoint_every` asks: they would be thrown away).
    `checkpoint_minutes` also writes one inside an epoch once that long has passed since the
    last (``--checkpoint-minutes``), for epochs that take hours; ``resume=True`` continues from it.

    `callback(record)` is called after every epoch with its metrics record (a dict: epoch, loss,
    lr, the loss's scalars, steps, seconds, and "val" recalls with x_val/y_val). On a terminal a
    progress bar and a line per epoch are printed unless `quiet`; elsewhere (a notebook, a log) a
    line per epoch and, inside long epochs, one at most every `progress_seconds`.

    The GIL is released while training. Ctrl-C (SIGINT) or SIGTERM ends the run after the
    current step with a checkpoint in `out`, then raises KeyboardInterrupt; ``resume=True`` with
    the same settings continues it bit for bit.

    Validation: `x_val`/`y_val`, or `val_fraction` of the pairs held out (seeded); by default a
    tenth, at most 5,000, when there are 1,000 pairs or more and no `x_val` (`no_val=True`: none).
    With validation the model returned, like OUT/adapters.safetensors, holds the weights of the
    best epoch by mean recall (`keep_last=True`: the last); each record's "best_epoch" says
    which; `patience` stops after that many epochs without a better one. `alpha_schedule`
    ("constant", "cosine", "exponential") moves mixup's alpha to `final_alpha` over the epochs.

    `dropout`, `alpha` and `mix` left None are 0.6, 1.0 and "permutation" (the program's
    defaults). ``auto=True`` is ``--auto``: a budgeted search (`budget_minutes`, default 15) of
    depth, shared width, lr, weight decay, alpha, mix, dropout and epochs, those left None, judged
    on the validation pairs, then the winner trained on every training pair (`docs/training.md`;
    with `out`, OUT/search.jsonl lists the trials).

    A recipe likely to train poorly (fewer than about 1,000 optimiser steps in all, or a batch
    over half the pairs) gets a `TrainingWarning` before training; the run goes ahead.

    `x` and `y` are arrays, or `.npy` files read in place a batch at a time (memory-mapped,
    float16/32/64): a path, or a list of shards concatenated by rows (``["x_000.npy", ...]``),
    for data larger than memory; both sides the same kind. `micro_batch` is gradient caching
    (``--micro-batch``), `max_steps` stops after that many optimiser steps (``--max-steps``).
    With ``device="cuda"``, files are resident on the GPU in their precision or streamed a batch
    at a time (`gpu_latents`: "auto", "resident", "stream"; ``--gpu-latents``).

    Returns the trained `Model` (its `history` holds the metrics records).
    Raises ShapeError, ArgumentError, NumericError (NaN/Inf in the data, or a loss that stopped
    being finite: the last checkpoint stays, no weights are written), IoError, DeviceError.
    """
    where = "fusemix.train"
    x_files, y_files = _latent_files(where, "x", x), _latent_files(where, "y", y)
    if (x_files is None) != (y_files is None):
        raise ArgumentError(f"{where}: x and y must both be arrays or both be files "
                            f"(got {'files' if x_files is not None else 'an array'} for x and "
                            f"{'files' if y_files is not None else 'an array'} for y)")
    if x_files is not None:
        x, y = x_files, y_files
    else:
        x, y = _as_latents(x, where, "x"), _as_latents(y, where, "y")
    if (x_val is None) != (y_val is None):
        raise ArgumentError(f"{where}: x_val and y_val go together (got only {'x_val' if y_val is None else 'y_val'})")
    if x_val is not None:
        x_val, y_val = _as_latents(x_val, where, "x_val"), _as_latents(y_val, where, "y_val")
        for side, a in (("x_val", x_val), ("y_val", y_val)):
            if a.shape[0] == 0:  # as the program refuses a --x-val of 0 rows
                raise ShapeError(f"{where}: {side}: validation pairs need at least one row (expected >= 1, got 0)")
    if preset is not None:
        _choice(where, "preset", preset, ("image-text", "audio-text", "audio-to-image"))
    options = {
        "preset": preset,
        "epochs": None if epochs is None else _count(where, "epochs", epochs, 1),
        "batch": None if batch is None else _count(where, "batch", batch, 1),
        "lr": None if lr is None else _real(where, "lr", lr, 0, low_open=True),
        "weight_decay": None if weight_decay is None else _real(where, "weight_decay", weight_decay, 0),
        "depth_x": None if depth_x is None else _count(where, "depth_x", depth_x, 0),
        "depth_y": None if depth_y is None else _count(where, "depth_y", depth_y, 0),
        "shared_dim": None if shared_dim is None else _count(where, "shared_dim", shared_dim, 1),
        "expansion": _count(where, "expansion", expansion, 1),
        "dropout": None if dropout is None else _real(where, "dropout", dropout, 0, 1),
        "alpha": None if alpha is None else _real(where, "alpha", alpha, 0, low_open=True),
        "mix": None if mix is None else _choice(where, "mix", mix, ("permutation", "halves")),
        "loss": _choice(where, "loss", loss, ("contrastive", "sigmoid")),
        "seed": _count(where, "seed", seed, 0, _UINT64_MAX),
        "threads": _count(where, "threads", threads, 0, _INT_MAX),
        "identity_y": bool(identity_y),
        "device": _choice(where, "device", device, ("cpu", "cuda")),
        "precision": _choice(where, "precision", precision, ("fp32", "tf32", "bf16")),
        "gpu_latents": _choice(where, "gpu_latents", gpu_latents, ("auto", "resident", "stream")),
        "gemm": _choice(where, "gemm", gemm, ("auto", "eigen", "openblas")),
        "checkpoint_every": (1 if out is not None else 0) if checkpoint_every is None else
                            _count(where, "checkpoint_every", checkpoint_every, 0),
        "checkpoint_minutes": _real(where, "checkpoint_minutes", checkpoint_minutes, 0),
        "progress_seconds": _real(where, "progress_seconds", progress_seconds, 0),
        "resume": bool(resume),
        "quiet": bool(quiet),
        "micro_batch": _count(where, "micro_batch", micro_batch, 0),
        "max_steps": _count(where, "max_steps", max_steps, 0, _UINT64_MAX),
        "val_fraction": None if val_fraction is None else _real(where, "val_fraction", val_fraction, 0, 1),
        "no_val": bool(no_val),
        "keep_last": bool(keep_last),
        "patience": _count(where, "patience", patience, 0),
        "alpha_schedule": _choice(where, "alpha_schedule", alpha_schedule, ("constant", "cosine", "exponential")),
        "final_alpha": _real(where, "final_alpha", final_alpha, 0, low_open=True),
        "auto": bool(auto),
        "budget_minutes": None if budget_minutes is None else
                          _real(where, "budget_minutes", budget_minutes, 0, low_open=True),
    }
    if alpha_schedule == "constant" and final_alpha != 1.0:
        raise ArgumentError(f"{where}: final_alpha is where alpha_schedule ends; with the constant schedule alpha "
                            f"stays alpha (expected alpha_schedule 'cosine' or 'exponential', got 'constant')")
    if callback is not None and not callable(callback):
        raise ArgumentError(f"{where}: callback must be callable (expected a function, got {type(callback).__name__})")
    if out is None:
        if resume:
            raise ArgumentError(f"{where}: resume=True needs out (the directory holding the checkpoint)")
        with tempfile.TemporaryDirectory(prefix="fusemix-") as tmp:
            return _train_into(tmp, x, y, x_val, y_val, options, callback)
    return _train_into(_path(where, "out", out), x, y, x_val, y_val, options, callback)


def _train_into(out, x, y, x_val, y_val, options, callback):
    sys.stdout.flush()  # what Python printed before comes before the run's own lines
    _core.train(x, y, x_val, y_val, dict(options, out=out), callback, _warn)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f if line.strip()]
    return Model(_core.Model(os.path.join(out, "adapters.safetensors")), history)


def evaluate(model, x, y, image_of_text=None):
    """Cross-modal retrieval of `model` on the pairs (x, y), as ``fusemix eval --json``.

    Returns {"image_to_text": {"r1", "r5", "r10"}, "text_to_image": {...}, "mean"} in percent.
    `image_of_text` (int64, one entry per y row) gives each text's image row when an image has
    several captions; by default text i belongs to image i.
    """
    where = "fusemix.evaluate"
    if not isinstance(model, Model):
        raise ArgumentError(f"{where}: model must be a fusemix.Model (expected Model, got {type(model).__name__})")
    owner = []
    if image_of_text is not None:
        owner = np.asarray(image_of_text)
        if owner.ndim != 1 or owner.dtype.kind not in "iu":
            raise ShapeError(f"{where}: image_of_text must be a 1-D integer array "
                             f"(expected one int per y row, got {owner.dtype} of shape {owner.shape})")
        owner = owner.astype(np.int64).tolist()
    return model._core.evaluate(_as_latents(x, where, "x"), _as_latents(y, where, "y"), owner)


def select(z, k, *, kernel="poly", degree=2, offset=1.0, gamma=None, normalize=False, threshold=None, window=0,
           uniform=False, seed=0, device="cpu", threads=0):
    """A diverse subset of the rows of `z` by greedy k-DPP, as ``fusemix select``.

    Kernels: "poly" ((a·b + offset)^degree), "linear", "cosine", "rbf" (exp(-gamma |a-b|²),
    gamma 1/D by default). `normalize` scales rows to unit length first (on a copy); the
    selection stops early when the best residual falls to `threshold` times the largest
    diagonal entry (the program's default when None). `uniform` draws k rows at random instead.
    `threads` > 0 sets the CPU threads as `set_threads` does (the picks do not depend on it).

    Returns (picks, stop_reason): int64 row indices in the order picked, and "k_reached" or
    "rank_exhausted" (the best residual fell to the threshold first; `fusemix select --json`'s
    "stop")."""
    where = "fusemix.select"
    z = _as_latents(z, where, "z")
    options = {
        "k": _count(where, "k", k, 0),
        "kernel": _choice(where, "kernel", kernel, ("poly", "linear", "cosine", "rbf")),
        "degree": _count(where, "degree", degree, 0, _UINT_MAX),
        "offset": _real(where, "offset", offset, -math.inf),
        "gamma": None if gamma is None else _real(where, "gamma", gamma, 0, low_open=True),
        "normalize": bool(normalize),
        "threshold": None if threshold is None else _real(where, "threshold", threshold, 0),
        "window": _count(where, "window", window, 0),
        "uniform": bool(uniform),
        "seed": _count(where, "seed", seed, 0, _UINT64_MAX),
        "device": _choice(where, "device", device, ("cpu", "cuda")),
        "threads": _count(where, "threads", threads, 0, _INT_MAX),
    }
    picks, stop, _log_det, _seconds = _core.select(z, options)
    return picks, stop


class FuseMix:
    """A scikit-learn style estimator over `train`: ``FuseMix(**options).fit(x, y)``.

    The options are every keyword of `train` but the validation pairs (out, callback and resume
    included), with `train`'s defaults except ``quiet=True``; `get_params` and `set_params`
    follow scikit-learn's conventions, so `sklearn.base.clone` and grid searches work. After
    `fit`, `model_` is the trained `Model`; `transform_x`/`transform_y` embed, and `score(x, y)`
    is the mean of the six recalls (percent) on the pairs (x, y).
    """

    # Read from train's signature, so that a keyword added there is an option here too.
    _DEFAULTS = {name: p.default for name, p in inspect.signature(train).parameters.items()
                 if p.kind is p.KEYWORD_ONLY and name not in ("x_val", "y_val")}
    _DEFAULTS["quiet"] = True

    def __init__(self, **options):
        self.__dict__.update(self._DEFAULTS)
        self._set("FuseMix", options)

    def _set(self, where, options):
        for name, value in options.items():
            if name not in self._DEFAULTS:
                raise ArgumentError(f"{where}: unknown option (expected one of {', '.join(self._DEFAULTS)}, "
                                    f"got {name!r})")
            setattr(self, name, value)

    def get_params(self, deep=True):
        """The options, by name."""
        return {name: getattr(self, name) for name in self._DEFAULTS}

    def set_params(self, **params):
        """Sets options by name; returns self."""
        self._set("FuseMix.set_params", params)
        return self

    def fit(self, x, y, x_val=None, y_val=None):
        """Trains on the pairs (x, y), validating on (x_val, y_val) after every epoch if given."""
        self.model_ = train(x, y, x_val=x_val, y_val=y_val, **self.get_params())
        return self

    def _fitted(self, where):
        if not hasattr(self, "model_"):
            raise ArgumentError(f"FuseMix.{where}: this estimator is not fitted yet (expected a call to fit first)")
        return self.model_

    def transform_x(self, x):
        """The X side's shared-space embeddings."""
        return self._fitted("transform_x").embed_x(x)

    def transform_y(self, y):
        """The Y side's shared-space embeddings."""
        return self._fitted("transform_y").embed_y(y)

    def score(self, x, y, image_of_text=None):
        """Mean of the six recalls (R@1/5/10 both ways), in percent."""
        return evaluate(self._fitted("score"), x, y, image_of_text)["mean"]

    def __repr__(self):
        changed = {k: v for k, v in self.get_params().items() if v != self._DEFAULTS[k]}
        return "FuseMix(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")"
