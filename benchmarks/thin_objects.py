"""A synthetic thin-object set: rod-shaped cells (capsules) in a fluorescence-like image.

Rods 3-5 px wide and 30-90 px long at random angles on an uneven, noisy background, with
instance labels. Used by ``benchmarks/speed.py`` to measure ROI zoom on elongated objects,
next to the real nuclei sample. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _capsule(shape: tuple[int, int], start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
    """Boolean (H, W) mask of points within ``radius`` of the segment start-end (x, y order)."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    points = np.stack([xs, ys], axis=-1).astype(float)
    direction = end - start
    t = np.clip(((points - start) @ direction) / (direction @ direction), 0.0, 1.0)
    nearest = start + t[..., None] * direction
    return np.linalg.norm(points - nearest, axis=-1) <= radius


def rods(seed: int = 0, size: int = 512, count: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """(image uint16 (size, size), labels uint16) with ``count`` non-touching rods."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), dtype=np.uint16)
    signal = np.zeros((size, size))
    placed = 0
    for _ in range(count * 50):
        if placed == count:
            break
        length, radius = rng.uniform(30, 90), rng.uniform(1.5, 2.5)
        angle = rng.uniform(0, np.pi)
        centre = rng.uniform(length / 2 + 8, size - length / 2 - 8, size=2)
        offset = np.array([np.cos(angle), np.sin(angle)]) * length / 2
        mask = _capsule((size, size), centre - offset, centre + offset, radius)
        if (ndimage.binary_dilation(mask, iterations=4) & (labels > 0)).any():
            continue
        placed += 1
        labels[mask] = placed
        signal[mask] = rng.uniform(0.5, 1.0)
    ys, xs = np.mgrid[:size, :size] / size
    background = 0.15 + 0.1 * np.sin(3 * xs + 1) * np.cos(2 * ys)
    image = ndimage.gaussian_filter(signal, 1.0) + background
    image = rng.poisson(image * 400) + rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels
