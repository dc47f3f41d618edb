"""Overlay pictures: label colours and box outlines drawn over an RGB image."""

from __future__ import annotations

import colorsys
from collections.abc import Iterable

import numpy as np


def label_colours(count: int) -> np.ndarray:
    """``count`` distinct, reproducible RGB colours (golden-angle hues)."""
    hues = (np.arange(count) * 0.618033988749895) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.85, 1.0) for h in hues], dtype=np.float64).reshape(-1, 3) * 255


def draw_overlay(
    rgb: np.ndarray, labels: np.ndarray, boxes: Iterable[np.ndarray] = (), alpha: float = 0.45, by_id: bool = False
) -> np.ndarray:
    """A new RGB image: ``labels`` blended over ``rgb`` in colour, ``boxes`` outlined in yellow.

    ``by_id``: label k always gets colour k (stable through the frames of a video); else the
    labels present get the first colours in order.
    """
    out = rgb.astype(np.float32).copy()
    ids = np.unique(labels[labels > 0])
    colours = label_colours(int(ids.max()) if len(ids) else 0)[ids - 1] if by_id else label_colours(len(ids))
    for colour, label in zip(colours, ids):
        region = labels == label
        out[region] = (1 - alpha) * out[region] + alpha * colour
    out = out.astype(np.uint8)
    h, w = labels.shape
    for box in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, x1 = np.clip([x0, x1], 0, w - 1)
        y0, y1 = np.clip([y0, y1], 0, h - 1)
        out[y0, x0 : x1 + 1] = out[y1, x0 : x1 + 1] = (255, 220, 0)
        out[y0 : y1 + 1, x0] = out[y0 : y1 + 1, x1] = (255, 220, 0)
    return out
