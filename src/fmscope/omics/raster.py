"""Per-cell values on a pixel grid in microns, for slides too large to draw cell by cell.

A million points is a slow path in any viewer; a grid of about one pixel per cell is one
texture. :class:`CellGrid` assigns every cell to a grid pixel once (bin size from the cell
density unless given); categorical values are painted per pixel (the most frequent code among
the pixel's cells), continuous values are averaged. Empty pixels are 0 (labels) or NaN (values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CellGrid:
    """Which grid pixel each cell falls in; ``origin_um`` is the (y, x) of pixel (0, 0)'s corner."""

    pixel_um: float
    origin_um: tuple[float, float]
    shape: tuple[int, int]
    flat_index: np.ndarray  # (cells,) row-major pixel index

    @classmethod
    def for_cells(cls, xy_um: np.ndarray, pixel_um: float | None = None, max_side: int = 8192) -> "CellGrid":
        """A grid over the cells' bounding box; default pixel: the mean spacing of the cells."""
        xy = np.asarray(xy_um, dtype=float)[:, :2]
        low, high = xy.min(axis=0), xy.max(axis=0)
        extent = np.maximum(high - low, 1e-6)
        if pixel_um is None:
            pixel_um = float(np.sqrt(extent[0] * extent[1] / len(xy)))
        pixel_um = max(pixel_um, float(extent.max()) / max_side)
        columns, rows = np.floor(extent / pixel_um).astype(int) + 1
        col = np.minimum(((xy[:, 0] - low[0]) / pixel_um).astype(int), columns - 1)
        row = np.minimum(((xy[:, 1] - low[1]) / pixel_um).astype(int), rows - 1)
        return cls(pixel_um, (float(low[1]), float(low[0])), (int(rows), int(columns)), row * columns + col)

    def labels(self, codes: np.ndarray) -> np.ndarray:
        """(rows, columns) uint16/uint32 image of per-cell integer codes >= 1 (0: no cell): each pixel
        takes the most frequent code among its cells (ties: the lower code), for any number of codes."""
        codes = np.asarray(codes, dtype=np.int64)
        n_codes = int(codes.max()) + 1 if len(codes) else 1
        image = np.zeros(self.shape[0] * self.shape[1], dtype=np.int64)
        painted = codes > 0
        pixels, values = self.flat_index[painted], codes[painted]
        if len(values):
            runs, run_length = np.unique(pixels * n_codes + values, return_counts=True)  # (pixel, code) pairs
            run_pixel, run_code = np.divmod(runs, n_codes)
            best = np.lexsort((run_code, -run_length, run_pixel))  # per pixel: most cells, then the lower code
            first = best[np.r_[True, run_pixel[best][1:] != run_pixel[best][:-1]]]
            image[run_pixel[first]] = run_code[first]
        dtype = np.uint16 if n_codes < 2**16 else np.uint32
        return image.reshape(self.shape).astype(dtype)

    def values(self, values: np.ndarray) -> np.ndarray:
        """(rows, columns) float32 image of the mean per-cell value in each pixel (NaN: no cell)."""
        size = self.shape[0] * self.shape[1]
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        total = np.bincount(self.flat_index[finite], weights=values[finite], minlength=size)
        count = np.bincount(self.flat_index[finite], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            image = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return image.reshape(self.shape).astype(np.float32)
