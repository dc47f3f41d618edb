"""How a model's mask enters the labels: the same rule as the napari Segment panel (fmscope.napari.state)."""

from __future__ import annotations

import numpy as np


def paint_mask(plane: np.ndarray, object_id: int, mask: np.ndarray) -> None:
    """Make ``object_id`` cover exactly ``mask`` (bool, same shape) on ``plane`` (in place), leaving other objects'
    pixels alone: the object's pixels outside the mask become background, the mask's background pixels the object."""
    plane[(plane == object_id) & ~mask] = 0
    plane[mask & ((plane == 0) | (plane == object_id))] = object_id
