"""Label images for huge images: a tiled, zlib-compressed TIFF written tile by tile from the crops that hold labels.

The image is mostly background: every tile no crop touches is the same compressed zero tile (encoded once),
so writing a 40,000 x 40,000 label image holds one tile in memory at a time and takes about a second.
The file names fmscope in its TIFF Software tag (provenance). Writes are atomic (:func:`fmscope.atomic.atomic_write`),
and an existing file is replaced only when fmscope wrote it (:mod:`fmscope.output_owner`).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmscope.atomic import atomic_write
from fmscope.imaging import picture_geometry

TILE = 256
SOFTWARE = "fmscope"
Piece = tuple[int, int, np.ndarray]  # (y0, x0, labels (h, w)): labels placed with their top-left pixel at y0, x0


def _tiles(shape: tuple[int, int], dtype: np.dtype, pieces: Sequence[Piece], counted: list[int]) -> Iterator[bytes]:
    """zlib-encoded tiles in row-major order; ``counted[0]`` gets the labelled pixels written."""
    zero = zlib.compress(np.zeros((TILE, TILE), dtype).tobytes())
    for ty in range(0, shape[0], TILE):
        for tx in range(0, shape[1], TILE):
            tile = None
            for y0, x0, labels in pieces:
                top, left = max(ty, y0), max(tx, x0)
                bottom, right = min(ty + TILE, y0 + labels.shape[0]), min(tx + TILE, x0 + labels.shape[1])
                if top >= bottom or left >= right:
                    continue
                if tile is None:
                    tile = np.zeros((TILE, TILE), dtype)
                part = tile[top - ty : bottom - ty, left - tx : right - tx]
                source = labels[top - y0 : bottom - y0, left - x0 : right - x0]
                free = (part == 0) & (source > 0)  # earlier pieces keep their pixels (as in ordinary segment)
                part[free] = source[free]
            if tile is None:
                yield zero
            else:
                counted[0] += int(np.count_nonzero(tile))
                yield zlib.compress(tile.tobytes())


def write_tiled_labels(
    path: str | os.PathLike, shape: tuple[int, int], dtype: type, pieces: Sequence[Piece], geometry: Any = None
) -> int:
    """Write an (H, W) ``shape`` label image of ``dtype``, zero except ``pieces`` (their nonzero pixels; where
    pieces overlap the earlier one keeps the pixel), as a tiled (``TILE``) zlib TIFF, atomically. Pieces are
    clipped to the image. ``geometry``: the image's (:class:`fmscope.imaging.io.Geometry`), whose pixel size a
    calibrated picture's labels carry (:func:`fmscope.imaging.picture_geometry.tiff_calibration`). Returns the
    number of labelled pixels written."""
    import tifffile

    calibration = picture_geometry.tiff_calibration(geometry, shape) or {"metadata": None}

    dtype = np.dtype(dtype)
    counted = [0]

    def write(target: Path) -> None:
        counted[0] = 0
        tifffile.imwrite(
            target,
            _tiles(shape, dtype, pieces, counted),
            shape=shape,
            dtype=dtype,
            tile=(TILE, TILE),
            compression="zlib",
            software=SOFTWARE,
            bigtiff=shape[0] * shape[1] * dtype.itemsize > 2**31,
            photometric="minisblack",
            **calibration,
        )

    atomic_write(path, write)
    return counted[0]
