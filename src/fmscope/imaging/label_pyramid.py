"""Labels of a huge 2D image held as a pyramid of chunked, compressed zarr arrays in memory, never dense.

Level 0 is the labels at the image's resolution; level k holds every 2**k-th pixel of level 0 (nearest
neighbour, so a level shows label ids, never blends of them), down to a level of at most ``SMALLEST`` pixels a
side. A viewer shows the level its zoom needs (napari: a multiscale labels layer made of :attr:`levels`). Only
chunks that hold a label are stored (zarr drops chunks equal to the fill value 0), so a 40,000 x 40,000 pyramid
with one object costs a few chunks. Writes (``pyramid[y0:y1, x0:x1] = block``) go to level 0 and update the
lower levels over the written rectangle only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

CHUNK = 512  # rows and columns of one stored chunk, every level
SMALLEST = 1024  # the last level's longer side is at most this many pixels


class LabelPyramid:
    """(H, W) integer labels, read and written in rectangles (basic slices of step 1) at full resolution."""

    def __init__(self, shape: tuple[int, int], dtype: np.dtype | type = np.uint16) -> None:
        import zarr
        from zarr.storage import MemoryStore

        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.levels = []
        height, width = self.shape
        factor = 1
        while True:
            level_shape = (math.ceil(height / factor), math.ceil(width / factor))
            self.levels.append(
                zarr.create_array(
                    store=MemoryStore(),
                    shape=level_shape,
                    chunks=(min(CHUNK, level_shape[0]), min(CHUNK, level_shape[1])),
                    dtype=self.dtype,
                    fill_value=0,
                    config={"write_empty_chunks": False},
                )
            )
            if max(level_shape) <= SMALLEST:
                break
            factor *= 2
        self._max = 0
        self._written: set[tuple[int, int]] = set()  # level-0 chunks (row, column) ever written

    @property
    def ndim(self) -> int:
        return 2

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def max(self) -> int:
        """At least the largest label present (the largest ever written: an id above it is unused)."""
        return self._max

    def _rectangle(self, key: tuple[slice, slice]) -> tuple[int, int, int, int]:
        rows, cols = key
        y0, y1, ystep = rows.indices(self.shape[0])
        x0, x1, xstep = cols.indices(self.shape[1])
        if ystep != 1 or xstep != 1:
            raise ValueError("LabelPyramid reads and writes rectangles (slices of step 1) only.")
        return y0, x0, max(y0, y1), max(x0, x1)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        """A new (h, w) array of level 0."""
        y0, x0, y1, x1 = self._rectangle(key)
        return np.asarray(self.levels[0][y0:y1, x0:x1])

    def __setitem__(self, key: tuple[slice, slice], block: np.ndarray) -> None:
        """Write ``block`` (h, w) at level 0, then the lower levels over the same rectangle."""
        y0, x0, y1, x1 = self._rectangle(key)
        if y0 == y1 or x0 == x1:
            return
        block = np.asarray(block, dtype=self.dtype)
        self.levels[0][y0:y1, x0:x1] = block
        if block.size:
            self._max = max(self._max, int(block.max()))
        self._written.update(
            (row, col)
            for row in range(y0 // CHUNK, (y1 - 1) // CHUNK + 1)
            for col in range(x0 // CHUNK, (x1 - 1) // CHUNK + 1)
        )
        for k, level in enumerate(self.levels[1:], start=1):
            factor = 2**k
            top, left = y0 // factor, x0 // factor
            bottom, right = math.ceil(y1 / factor), math.ceil(x1 / factor)
            source = self.levels[0][
                top * factor : min(self.shape[0], bottom * factor), left * factor : min(self.shape[1], right * factor)
            ]
            level[top:bottom, left:right] = np.asarray(source)[::factor, ::factor]

    def written_regions(self) -> Iterator[tuple[int, int, int, int]]:
        """(y0, x0, y1, x1) of every level-0 chunk ever written (the only places a label can be)."""
        for row, col in sorted(self._written):
            yield row * CHUNK, col * CHUNK, min(self.shape[0], (row + 1) * CHUNK), min(self.shape[1], (col + 1) * CHUNK)
