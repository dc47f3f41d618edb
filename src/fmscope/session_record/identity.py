"""What a session is bound to: the image (path + a hash of its pixels, or of its file's bytes for an image read on
demand) and the model (name + weights sha256)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmscope.file_hash import file_sha256

if TYPE_CHECKING:
    from fmscope.imaging.predictor import Segmenter


# what an ImageIdentity's sha256 is of: the pixels, the file's bytes, or a training data set (session_record.training)
PIXELS, FILE, DATASET = "pixels", "file", "dataset"


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
    (Z, H, W); a time-lapse (T, H, W). An image read on demand (a video or cine opened lazily: hashing its pixels
    would decode every frame) is identified by its file instead (:meth:`of_file`): ``hashed`` is :data:`FILE`,
    ``sha256`` that of the file's bytes and ``size`` its length in bytes."""

    path: str
    sha256: str
    shape: tuple[int, ...]
    dtype: str
    hashed: str = PIXELS
    size: int = 0

    @classmethod
    def of(cls, image: np.ndarray, path: str | Path | None = None) -> ImageIdentity:
        """The identity of ``image``, opened from ``path`` (made absolute, so replay finds it from any folder)."""
        image = np.asarray(image)
        where = str(Path(path).absolute()) if path else ""
        return cls(where, pixel_sha256(image), tuple(int(n) for n in image.shape), image.dtype.str)

    @classmethod
    def of_file(cls, path: str | Path, shape: tuple[int, ...], dtype) -> ImageIdentity:
        """The identity of the image in file ``path`` (its pixels of ``shape`` and ``dtype`` read on demand) by the
        file's path, size and bytes (:func:`file_sha256`); raises OSError when it cannot be read."""
        path = Path(path).absolute()
        return cls(
            str(path), file_sha256(path), tuple(int(n) for n in shape), np.dtype(dtype).str, FILE, path.stat().st_size
        )

    @property
    def by_file(self) -> bool:
        return self.hashed == FILE

    def describe(self) -> str:
        """'(uint8 2 x 64 x 64, pixels sha256 ...)' for messages."""
        if self.hashed == DATASET:
            return f"(a training data set of {self.shape[0]} images, images and labels sha256 {self.sha256})"
        what = f"file of {self.size} bytes, sha256" if self.by_file else "pixels sha256"
        return f"({np.dtype(self.dtype).name} {' x '.join(map(str, self.shape))}, {what} {self.sha256})"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ImageIdentity:
        return cls(
            data["path"],
            data["sha256"],
            tuple(data["shape"]),
            data["dtype"],
            data.get("hashed", PIXELS),
            int(data.get("size", 0)),
        )


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
