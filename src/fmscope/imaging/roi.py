"""ROI zoom: embed a square crop around a small object instead of the whole downsampled image.

Crops come from a fixed grid per crop size (side ``s``, a power of two; stride ``s / 2``),
so the crop for a prompt depends on that prompt alone: ``predict`` and ``predict_many``
give the same mask for the same box, and neighbouring objects share cached crops.
Design: fmscope's own; the idea of zooming on small prompts follows the tiling used by
micro-sam and the crop-and-resize inference of the MedSAM challenge entries.
"""

from __future__ import annotations

import numpy as np

# Zoom when the prompt's longest side would span fewer model pixels than this.
SMALL_OBJECT_MODEL_PX = 40.0
# Crop side in multiples of the prompt's longest side (context around the object).
CONTEXT_FACTOR = 2.0
MIN_CROP = 64


def wants_zoom(extent: np.ndarray, shape: tuple[int, int], model_size: int) -> bool:
    """True when a prompt of ``extent`` [x0, y0, x1, y1] is small in the downsampled image."""
    side = max(extent[2] - extent[0], extent[3] - extent[1]) + 1
    return side * model_size / max(shape) < SMALL_OBJECT_MODEL_PX


def crop_for(extent: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The grid crop (y0, x0, y1, x1) that holds ``extent`` with the most margin, or None if
    the crop would be the whole image anyway."""
    h, w = shape
    side_needed = (max(extent[2] - extent[0], extent[3] - extent[1]) + 1) * CONTEXT_FACTOR
    side = max(MIN_CROP, 1 << int(np.ceil(np.log2(side_needed))))
    if side >= max(h, w):
        return None
    centre_x, centre_y = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
    return _crop(centre_y, centre_x, side, h, w)


def _start(centre: float, side: int, length: int) -> tuple[int, int]:
    """Grid start (multiple of side/2, or the last valid start) whose window centre is nearest."""
    if side >= length:
        return 0, length
    stride = side // 2
    starts = list(range(0, length - side + 1, stride))
    if starts[-1] != length - side:
        starts.append(length - side)
    best = min(starts, key=lambda s: (abs(s + side / 2 - centre), s))
    return best, best + side


def _crop(centre_y: float, centre_x: float, side: int, h: int, w: int) -> tuple[int, int, int, int]:
    y0, y1 = _start(centre_y, side, h)
    x0, x1 = _start(centre_x, side, w)
    return y0, x0, y1, x1
