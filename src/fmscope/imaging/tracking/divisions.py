"""The geometry of divisions and of new objects, on bool masks (no model): what the default tracker
(:mod:`fmscope.imaging.tracking.litemedsam`) uses to end a parent and start two daughters.

Three signs of a division, from the masks the tracker finds (pixels, (H, W) bool):

* **Split**: the object's mask falls into two connected parts, each a plausible daughter (at least
  :data:`MIN_PART_FRACTION` of the object's mask on the frame before, and :data:`MIN_PART_PIXELS`),
  on two frames in a row (:func:`split_parts`, :func:`pair_parts`). The daughters begin on the first. A rod's
  mask is first cut at its septum (:func:`septum_cut`): a rod's halves touch end to end and the model outlines
  both as one rod.
* **Sibling**: the tracker follows one daughter (its mask shrinks below :data:`SHRINK` of the
  frame before) while a region no track covers, which the model segments confidently, touches the
  object's mask of the frame before grown by :data:`SIBLING_REACH` of its size (for a rod, the two must be its
  halves: comparable, together about its area) (:func:`sibling_of`). LiteMedSAM, given a box around a dividing
  HeLa nucleus, segments one daughter (measured on the sample), so this is the sign seen most.
* **Daughters where the parent was**: the tracker loses the object (no mask passes the stop rule: on the frame a
  HeLa nucleus divides, its box holds two small, much brighter daughters and a dark gap between them) while two
  regions no track covers lie in the search box around where the object was expected, each like the object
  (on its side of the box's Otsu threshold, the side the object's mean is on), of comparable size
  (:data:`MIN_DAUGHTER_RATIO`) and together about the parent's area (:data:`UNION_AREA_RANGE`) with their
  common centroid within :data:`UNION_REACH` of its size of where it was expected (:func:`daughter_regions`);
  the tracker then asks the model for each (its box) and keeps the division when both masks are confident
  (:data:`~fmscope.imaging.tracking.litemedsam.NEW_MIN_SCORE`) and each covers at least half its region. The
  same is asked of a followed object whose mask shrank and beside which no sibling was found.
  On the HeLa division windows this was the failure seen most (4 of 9 divisions: the parent lost on the
  division frame, the daughters picked up a frame late, or never).
* **A rod seen in halves**: a dark rod's sibling (the second sign; phase contrast, the object darker than the frame's
  median: fluorescent nuclei, elongated when they divide, keep the second sign as it is) counts only when it is seen
  again on the next frame,
  beside the followed half (:func:`other_half`: a region of comparable size in line with it, end to end); the
  division is on the second frame, and the parent's mask on the first becomes both halves (:attr:`Division.last`).
  In phase contrast a rod's constriction shows before its daughters part: LiteMedSAM outlined one half of a rod one
  or two frames before the rods benchmark's truth divides it (3 of the 7 divisions of its frames 13-18), and then
  the rod does not shrink again, so its sibling was looked for once, on a frame too early. (Looking for the other
  half beside every followed rod, shrunk or not, found one more true division there and made 6 more false ones:
  daughters just born lie end to end with untracked cells.)

:func:`uncovered_regions` proposes the regions for new objects (``--detect-new``) and siblings: connected
regions on the tracked objects' side of a threshold (bright objects: Otsu's threshold of the frame's grey values;
dark ones, such as cells in phase contrast: :func:`dark_level`) that tracked masks do not cover.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import disk

MIN_PART_FRACTION = 0.2  # each daughter part: at least this fraction of the object's area on the frame before
MIN_PART_PIXELS = 12
SHRINK = 0.75  # a followed daughter: its area below this fraction of the frame before
SIBLING_REACH = 0.5  # the sibling touches the previous mask grown by this fraction of its equivalent diameter
MAX_COVERED = 0.2  # a region for a new object: at most this fraction of it under tracked masks
MIN_DAUGHTER_RATIO = 0.4  # two daughters where the parent was: the smaller at least this fraction of the larger
UNION_AREA_RANGE = (0.35, 1.5)  # ... together this range of the parent's area on the frame before
UNION_REACH = 0.5  # ... their common centroid within this fraction of the parent's equivalent diameter
HALF_REACH = 0.25  # a rod's other half touches its followed half grown by this fraction of its diameter
HALF_ANGLE = 30.0  # ... and lies in line with it: within this many degrees of its long axis
SEPTUM_BINS = 20  # a rod's grey profile along its axis: this many bins (septum_cut)
SEPTUM_MIDDLE = (0.3, 0.7)  # ... the septum lies in this part of the length
SEPTUM_CONTRAST = 0.5  # ... and at least this far from the rod's level towards the background's


@dataclass
class Division:
    """``parent`` ended on ``frame - 1``; ``daughters`` ({id: bool (H, W) mask on ``frame``}) begin on ``frame``.
    ``last``: the parent's mask on ``frame - 1`` where it changes there (a rod seen in halves, :func:`other_half`:
    both halves), else None."""

    parent: int
    frame: int
    daughters: dict[int, np.ndarray]
    last: np.ndarray | None = None


def split_parts(
    mask: np.ndarray, before_area: int, whole: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The two daughter parts (bool masks) of ``mask`` when its two largest connected parts (8-connected)
    each hold at least :data:`MIN_PART_FRACTION` of ``before_area`` and :data:`MIN_PART_PIXELS`, else None.
    Smaller fragments (and the pixels of ``whole``, the mask before a :func:`septum_cut`, that ``mask`` lacks)
    join the nearer part, so no pixel of the mask is lost."""
    parts, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count < 2:
        return None
    sizes = np.bincount(parts.ravel())[1:]
    first, second = (np.argsort(-sizes, kind="stable")[:2] + 1).tolist()
    if sizes[second - 1] < max(MIN_PART_PIXELS, MIN_PART_FRACTION * before_area):
        return None
    a, b = parts == first, parts == second
    rest = (mask if whole is None else mask | whole) & ~a & ~b
    if rest.any():
        nearer_a = ndimage.distance_transform_edt(~a) <= ndimage.distance_transform_edt(~b)
        a, b = a | (rest & nearer_a), b | (rest & ~nearer_a)
    return a, b


def septum_cut(mask: np.ndarray, grey: np.ndarray, background: float) -> np.ndarray:
    """``mask`` (bool (H, W), a rod's) less its septum: the grey values (``grey``, (H, W)) of the mask averaged in
    :data:`SEPTUM_BINS` bins along its long axis; when a bin of the middle (:data:`SEPTUM_MIDDLE` of the length) is
    at least halfway from the rod's median bin towards ``background`` (the frame's median), the pixels of the bin
    furthest towards it are removed, so :func:`split_parts` sees the two halves. A rod divides across its length and
    its halves touch end to end (on the rods benchmark 1-7 px apart), so LiteMedSAM outlines both as one rod: on the
    daughters' first frame 8 of its 13 divisions were one mask over both; the septum between them is lighter
    (phase contrast) than the cells. Returns ``mask`` itself when there is no such bin."""
    ys, xs = np.nonzero(mask)
    if ys.size < 2 * SEPTUM_BINS:
        return mask
    _, vectors = np.linalg.eigh(np.cov(np.stack([xs, ys]).astype(float)))
    along = (xs - xs.mean()) * vectors[0, 1] + (ys - ys.mean()) * vectors[1, 1]
    edges = np.linspace(along.min(), along.max(), SEPTUM_BINS + 1)
    bins = np.clip(np.digitize(along, edges) - 1, 0, SEPTUM_BINS - 1)
    counts = np.bincount(bins, minlength=SEPTUM_BINS)
    sums = np.bincount(bins, weights=grey[ys, xs].astype(float), minlength=SEPTUM_BINS)
    profile = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    level = float(np.nanmedian(profile))
    if background == level:
        return mask
    towards = (profile - level) / (background - level)  # 0 at the rod's level, 1 at the background's
    low, high = (int(round(f * SEPTUM_BINS)) for f in SEPTUM_MIDDLE)
    middle = towards[low:high]
    if not np.isfinite(middle).any() or np.nanmax(middle) < SEPTUM_CONTRAST:
        return mask
    septum = low + int(np.nanargmax(middle))
    cut = mask.copy()
    cut[ys[bins == septum], xs[bins == septum]] = False
    return cut


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def pair_parts(
    before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """``after``'s parts ordered so that the k-th continues ``before``'s k-th: the pairing with the larger
    overlap, or with the shorter centroid distances when neither overlaps."""
    straight = int((before[0] & after[0]).sum() + (before[1] & after[1]).sum())
    crossed = int((before[0] & after[1]).sum() + (before[1] & after[0]).sum())
    if straight == crossed:
        b, a = [_centroid(m) for m in before], [_centroid(m) for m in after]
        straight = -(np.hypot(*(b[0] - a[0])) + np.hypot(*(b[1] - a[1])))
        crossed = -(np.hypot(*(b[0] - a[1])) + np.hypot(*(b[1] - a[0])))
    return after if straight >= crossed else (after[1], after[0])


def sibling_of(
    region: np.ndarray,
    now: dict[int, np.ndarray],
    before: dict[int, np.ndarray],
    halves: Callable[[int], bool] | None = None,
) -> int | None:
    """The object whose sibling ``region`` (a new object's mask on this frame) is: one found now
    (``now``: {id: mask}) whose mask shrank below :data:`SHRINK` of its mask on the frame before
    (``before``) and whose mask before, grown by :data:`SIBLING_REACH` of its equivalent diameter,
    ``region`` touches; the nearest such object by centroid, or None. ``halves(obj)``: whether ``obj`` divides
    into two halves (a rod: binary fission across its length), whose sibling must then be one, as in the third
    sign: of comparable size (the smaller at least :data:`MIN_DAUGHTER_RATIO` of the larger) and with the kept
    daughter :data:`UNION_AREA_RANGE` of the object's area before (in a colony of touching rods a shrunk rod's
    untracked neighbours touch it too: 3 false divisions on the rods benchmark, 0 true, before this)."""
    best, best_distance = None, np.inf
    centre = _centroid(region)
    size = int(region.sum())
    low, high = UNION_AREA_RANGE
    for obj, mask in now.items():
        earlier = before.get(obj)
        if earlier is None or not mask.any() or mask.sum() >= SHRINK * earlier.sum():
            continue
        kept = int(mask.sum())
        if halves is not None and halves(obj):
            if min(kept, size) < MIN_DAUGHTER_RATIO * max(kept, size):
                continue
            if not low * earlier.sum() <= kept + size <= high * earlier.sum():
                continue
        reach = max(1, int(round(SIBLING_REACH * 2 * np.sqrt(earlier.sum() / np.pi))))
        grown = ndimage.binary_dilation(earlier, iterations=reach)
        if not (grown & region).any():
            continue
        distance = float(np.hypot(*(_centroid(earlier) - centre)))
        if distance < best_distance:
            best, best_distance = obj, distance
    return best


def other_half(region: np.ndarray, kept: np.ndarray) -> bool:
    """Whether ``region`` (bool (H, W)) is the other half of a rod whose followed half is ``kept`` (bool (H, W)):
    of comparable size (the smaller at least :data:`MIN_DAUGHTER_RATIO` of the larger), touching ``kept`` grown
    by :data:`HALF_REACH` of its equivalent diameter, and in line with it (the line between their centroids within
    :data:`HALF_ANGLE` degrees of ``kept``'s long axis), as the halves of a rod that divides across its length lie
    end to end; a neighbour side by side is not one. No area before is compared with: on this second frame of a rod
    seen in halves (module docstring) the followed half no longer shrinks."""
    size, half = int(region.sum()), int(kept.sum())
    if half < 2 or min(half, size) < MIN_DAUGHTER_RATIO * max(half, size):
        return False
    reach = max(1, int(round(HALF_REACH * 2 * np.sqrt(half / np.pi))))
    if not (ndimage.binary_dilation(kept, iterations=reach) & region).any():
        return False
    ys, xs = np.nonzero(kept)
    _, vectors = np.linalg.eigh(np.cov(np.stack([ys, xs]).astype(float)))
    between = _centroid(region) - _centroid(kept)
    distance = float(np.hypot(*between))
    return distance > 0 and abs(float(between @ vectors[:, 1])) >= np.cos(np.radians(HALF_ANGLE)) * distance


def uncovered_regions(
    grey: np.ndarray,
    covered: np.ndarray,
    min_area: int,
    bright: bool = True,
    level: float | None = None,
    apart: int = 0,
) -> list[np.ndarray]:
    """Connected regions of ``grey`` (H, W) on the objects' side of ``level`` (above it for ``bright`` objects,
    below it for dark ones; default Otsu's threshold of ``grey``, see :func:`dark_level` for dark objects) of at
    least ``min_area`` pixels with at most :data:`MAX_COVERED` of them under ``covered`` (bool, the tracked
    masks), largest first, as bool masks. ``apart`` (px): first cut out ``covered`` grown by ``apart`` and open
    what is left with a disc of that radius, for cells that touch (a colony: the untracked cells would otherwise
    be one region with the tracked ones, too much of it covered)."""
    if grey.max() == grey.min():
        return []
    level = threshold_otsu(grey) if level is None else level
    like = grey > level if bright else grey < level
    if apart:
        like &= ~ndimage.binary_dilation(covered, iterations=apart)
        like = ndimage.binary_opening(like, structure=disk(apart))
    parts, count = ndimage.label(like)
    if not count:
        return []
    sizes = np.bincount(parts.ravel())[1:]
    under = np.bincount(parts[covered].ravel(), minlength=count + 1)[1:]
    keep = [k for k in np.argsort(-sizes) if sizes[k] >= min_area and under[k] <= MAX_COVERED * sizes[k]]
    return [parts == k + 1 for k in keep]


def dark_level(object_mean: float, background: float) -> float | None:
    """The grey level below which a pixel is like a dark object (phase contrast: cells darker than the background
    ``background``, e.g. the frame's median): halfway between the object's mean ``object_mean`` and the background;
    None (Otsu's threshold) for a bright object. Otsu's threshold does not do for dark cells: a phase-contrast frame's
    brightest pixels are the cells' halos, and Otsu separates them from the background (on the rods benchmark's
    frame 16, 94 % of the pixels fell below it), so no cell stood out."""
    return None if object_mean >= background else (object_mean + background) / 2


def daughter_regions(
    grey: np.ndarray,
    expected: np.ndarray,
    search: tuple[int, int, int, int],
    covered: np.ndarray,
    bright: bool,
    level: float | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Two daughters where one object was expected (module docstring): ``grey`` (H, W) the frame, ``expected``
    (bool (H, W)) the object's mask of the frame before moved to where it is expected now, ``search`` (y0, x0,
    y1, x1) the box to look in, ``covered`` (bool (H, W)) what tracked objects hold now, ``bright``: the object
    is brighter than its surroundings, ``level``: the grey level that separates it from them (default Otsu's
    threshold of the search box; :func:`dark_level` for a dark object). Returns the two regions (bool masks, larger
    first) or None."""
    y0, x0, y1, x1 = search
    window = grey[y0:y1, x0:x1]
    parent_area = int(expected.sum())
    if parent_area == 0 or window.size == 0 or window.max() == window.min():
        return None
    threshold = threshold_otsu(window) if level is None else level
    like = (window > threshold) if bright else (window < threshold)
    parts, count = ndimage.label(like & ~covered[y0:y1, x0:x1])
    if count < 2:
        return None
    sizes = np.bincount(parts.ravel())[1:]
    first, second = (np.argsort(-sizes, kind="stable")[:2] + 1).tolist()
    small, large = sizes[second - 1], sizes[first - 1]
    low, high = UNION_AREA_RANGE
    if small < max(MIN_PART_PIXELS, MIN_PART_FRACTION * parent_area) or small < MIN_DAUGHTER_RATIO * large:
        return None
    if not low * parent_area <= small + large <= high * parent_area:
        return None
    regions = []
    for label in (first, second):
        mask = np.zeros(grey.shape, bool)
        mask[y0:y1, x0:x1] = parts == label
        regions.append(mask)
    union_centre = _centroid(regions[0] | regions[1])
    reach = UNION_REACH * 2 * np.sqrt(parent_area / np.pi)
    if np.hypot(*(union_centre - _centroid(expected))) > reach:
        return None
    return regions[0], regions[1]
