"""What the user gave for one tracked object on one frame (shared by the session and every tracker backend)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prompt:
    """What the user gave for one object on one frame: a box [x0, y0, x1, y1] (pixels), points (N, 2) as (x, y)
    with labels (N,) 1 = object / 0 = background, or a (H, W) bool mask."""

    box: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    mask: np.ndarray | None = None
