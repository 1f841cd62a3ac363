# SPDX-License-Identifier: Apache-2.0
# Type stubs of the package `fusemix` (the docstrings are in __init__.py).
from os import PathLike
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

_Latents = npt.ArrayLike  # 2-D, float16/32/64, any order
_Path = str | PathLike[str]
_Record = dict[str, Any]
_Retrieval = dict[str, Any]  # {"image_to_text": {"r1","r5","r10"}, "text_to_image": {...}, "mean"}

class Error(Exception): ...
class ShapeError(Error, ValueError): ...
class ArgumentError(Error, ValueError): ...
class NumericError(Error, ValueError): ...
class IoError(Error, OSError): ...
class DeviceError(Error, RuntimeError): ...
class TrainingWarning(UserWarning): ...

class Model:
    history: list[_Record]
    def embed_x(self, a: _Latents) -> npt.NDArray[np.float32]: ...
    def embed_y(self, a: _Latents) -> npt.NDArray[np.float32]: ...
    def save(self, path: _Path) -> None: ...
    @property
    def dim_x(self) -> int: ...
    @property
    def dim_y(self) -> int: ...
    @property
    def shared_dim(self) -> int: ...
    @property
    def depth_x(self) -> int: ...
    @property
    def depth_y(self) -> int | None: ...
    @property
    def expansion(self) -> int: ...
    @property
    def loss(self) -> str: ...
    @property
    def loss_parameters(self) -> dict[str, float]: ...
    @property
    def temperature(self) -> float | None: ...

def load(path: _Path) -> Model: ...
def set_threads(n: int) -> None: ...
def train(
    x: _Latents | _Path | Sequence[_Path],  # an array, or .npy file(s) read in place
    y: _Latents | _Path | Sequence[_Path],
    *,
    preset: Literal["image-text", "audio-text", "audio-to-image"] | None = None,
    epochs: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    depth_x: int | None = None,
    depth_y: int | None = None,
    shared_dim: int | None = None,
    expansion: int = 4,
    dropout: float | None = None,
    alpha: float | None = None,
    mix: Literal["permutation", "halves"] | None = None,
    loss: Literal["contrastive", "sigmoid"] = "contrastive",
    seed: int = 0,
    threads: int = 0,
    x_val: _Latents | None = None,
    y_val: _Latents | None = None,
    out: _Path | None = None,
    callback: Callable[[_Record], object] | None = None,
    identity_y: bool = False,
    device: Literal["cpu", "cuda"] = "cpu",
    precision: Literal["fp32", "tf32", "bf16"] = "fp32",
    gemm: Literal["auto", "eigen", "openblas"] = "auto",
    checkpoint_every: int | None = None,
    checkpoint_minutes: float = 0.0,
    progress_seconds: float = 60.0,
    resume: bool = False,
    quiet: bool = False,
    micro_batch: int = 0,
    max_steps: int = 0,
    val_fraction: float | None = None,
    no_val: bool = False,
    keep_last: bool = False,
    patience: int = 0,
    alpha_schedule: Literal["constant", "cosine", "exponential"] = "constant",
    final_alpha: float = 1.0,
    auto: bool = False,
    budget_minutes: float | None = None,
) -> Model: ...
def evaluate(model: Model, x: _Latents, y: _Latents, image_of_text: npt.ArrayLike | None = None) -> _Retrieval: ...
def select(
    z: _Latents,
    k: int,
    *,
    kernel: Literal["poly", "linear", "cosine", "rbf"] = "poly",
    degree: int = 2,
    offset: float = 1.0,
    gamma: float | None = None,
    normalize: bool = False,
    threshold: float | None = None,
    window: int = 0,
    uniform: bool = False,
    seed: int = 0,
    device: Literal["cpu", "cuda"] = "cpu",
    threads: int = 0,
) -> tuple[npt.NDArray[np.int64], Literal["k_reached", "rank_exhausted"]]: ...

class FuseMix:
    model_: Model
    def __init__(self, **options: Any) -> None: ...
    def get_params(self, deep: bool = True) -> dict[str, Any]: ...
    def set_params(self, **params: Any) -> FuseMix: ...
    def fit(self, x: _Latents, y: _Latents, x_val: _Latents | None = None, y_val: _Latents | None = None) -> FuseMix: ...
    def transform_x(self, x: _Latents) -> npt.NDArray[np.float32]: ...
    def transform_y(self, y: _Latents) -> npt.NDArray[np.float32]: ...
    def score(self, x: _Latents, y: _Latents, image_of_text: npt.ArrayLike | None = None) -> float: ...
