"""Prompt validation: boxes and points in image pixel coordinates (x right, y down)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmscope.errors import FmscopeError


def validate_box(box: Sequence[float] | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return the box as float [x0, y0, x1, y1] clipped to an image of ``shape`` (H, W).

    Raises for a malformed box, one with zero area, or one that misses the image entirely.
    A box that only partly leaves the image is clipped to it.
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.size != 4 or not np.all(np.isfinite(values)):
        raise FmscopeError(
            f"A box needs 4 finite numbers X0 Y0 X1 Y1, got {list(np.asarray(box).reshape(-1))}.",
            "Give the box as X0 Y0 X1 Y1 in pixels.",
        )
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise FmscopeError(
            f"The box {x0:g} {y0:g} {x1:g} {y1:g} has zero area.",
            "Give X0 < X1 and Y0 < Y1 (top-left corner, then bottom-right).",
        )
    h, w = shape
    if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
        raise FmscopeError(
            f"The box {x0:g} {y0:g} {x1:g} {y1:g} lies outside the {w}x{h} image.",
            f"Give coordinates within 0..{w - 1} (x) and 0..{h - 1} (y).",
        )
    clipped = np.array([max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise FmscopeError(
            f"The box {x0:g} {y0:g} {x1:g} {y1:g} has zero area inside the image.", "Draw the box over the object."
        )
    return clipped


def validate_points(
    points: Sequence | np.ndarray, labels: Sequence[int] | np.ndarray | None, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Return (N, 2) float x, y points and (N,) int labels (1 = object, 0 = background)."""
    coords = np.asarray(points, dtype=np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    flags = np.ones(len(coords), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(flags) != len(coords):
        raise FmscopeError(f"{len(coords)} points but {len(flags)} labels.", "Give one label (1 or 0) per point.")
    if not np.all(np.isin(flags, (0, 1))):
        raise FmscopeError(
            f"Point labels must be 1 (object) or 0 (background), got {sorted(set(flags.tolist()))}.",
            "Use --label 1 for a positive click and --label 0 for a negative one.",
        )
    h, w = shape
    outside = (
        ~np.all(np.isfinite(coords), axis=1)
        | (coords[:, 0] < 0)
        | (coords[:, 0] > w - 1)
        | (coords[:, 1] < 0)
        | (coords[:, 1] > h - 1)
    )
    if outside.any():
        raise FmscopeError(
            f"Point {coords[outside][0].tolist()} lies outside the {w}x{h} image.",
            f"Give x within 0..{w - 1} and y within 0..{h - 1}.",
        )
    return coords, flags


def box_from_mask(mask: np.ndarray, margin: float = 0.0) -> np.ndarray | None:
    """Tight [x0, y0, x1, y1] around the nonzero pixels of a 2D mask, grown by ``margin`` px."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return np.array(
        [
            max(xs.min() - margin, 0),
            max(ys.min() - margin, 0),
            min(xs.max() + margin, w - 1),
            min(ys.max() + margin, h - 1),
        ],
        dtype=np.float64,
    )
