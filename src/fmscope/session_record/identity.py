"""What a session is bound to: the image (path + a hash of its pixels) and the model (name + weights sha256)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fmscope.imaging.predictor import Segmenter


def pixel_sha256(array: np.ndarray) -> str:
    """sha256 of an array's pixels: its dtype, shape and C-order bytes (so a reshaped or retyped copy differs)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


@dataclass(frozen=True)
class ImageIdentity:
    """The annotated image: its path as the user opened it (informative; files move), the sha256 of its pixel array
    (:func:`pixel_sha256`, what identifies it), its shape and dtype. A 2D image is (H, W) or (H, W, 3); a volume
    (Z, H, W); a time-lapse (T, H, W)."""

    path: str
    sha256: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, image: np.ndarray, path: str | Path | None = None) -> ImageIdentity:
        """The identity of ``image``, opened from ``path`` (made absolute, so replay finds it from any folder)."""
        image = np.asarray(image)
        where = str(Path(path).absolute()) if path else ""
        return cls(where, pixel_sha256(image), tuple(int(n) for n in image.shape), image.dtype.str)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ImageIdentity:
        return cls(data["path"], data["sha256"], tuple(data["shape"]), data["dtype"])


@dataclass(frozen=True)
class ModelIdentity:
    """The model that made a session's model actions: catalogue name (:mod:`fmscope.models`), sha256 of its weights
    (:attr:`fmscope.imaging.models.LoadedModel.weights_sha256`), the encoder's backend (``torch`` / ``openvino``)
    and precision (``fp32`` / ``fast``)."""

    name: str
    weights_sha256: str
    backend: str
    precision: str

    @classmethod
    def of(cls, segmenter: Segmenter) -> ModelIdentity:
        """The identity of a :class:`fmscope.imaging.predictor.Segmenter`."""
        return cls(segmenter.model.name, segmenter.model.weights_sha256, segmenter.backend, segmenter.precision)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ModelIdentity:
        return cls(data["name"], data["weights_sha256"], data["backend"], data["precision"])
