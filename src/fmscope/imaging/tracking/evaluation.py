"""Tracking accuracy against ground-truth tracks (a label stack where one id is one track).

Protocol (demo, tests and benchmarks/tracking.py): each track gets a box from its ground-truth
mask on its first frame, all objects are tracked forward in one session, and the score is the
mean Dice over the object-frames inside the ground-truth tracks, the prompted frames excluded.
The drift check shifts the frames ``drift`` px right on every other frame (:func:`drifted`).
A track whose first mask is a sliver (a box of zero width or height, e.g. cut by a crop's edge)
cannot be prompted with a box and is left out.
"""

from __future__ import annotations

import numpy as np

from fmscope.imaging.prompts import box_from_mask
from fmscope.imaging.tracking.session import TrackingSession
from fmscope.metrics import dice
from fmscope.progress import Progress, as_progress


def first_frames(tracks: np.ndarray) -> dict[int, int]:
    """{track id: first frame where it has pixels} for a (T, H, W) track label stack."""
    present = {}
    for index, frame in enumerate(tracks):
        for track in np.unique(frame[frame > 0]).tolist():
            present.setdefault(int(track), index)
    return present


def prompt_tracks(session: TrackingSession, tracks: np.ndarray, progress: Progress | None = None) -> dict[int, int]:
    """Give every track a box on its first frame (object id = track id); returns {id: first frame}
    of the tracks prompted (slivers are left out). ``progress``: told the tracks prompted."""
    starts = {}
    firsts = first_frames(tracks)
    for track, index in as_progress(progress).iterate(firsts.items(), len(firsts), "prompting tracks"):
        box = box_from_mask(tracks[index] == track)
        if box is not None and box[2] > box[0] and box[3] > box[1]:
            session.add_box(index, track, box)
            starts[track] = index
    return starts


def mean_track_dice(labels: np.ndarray, tracks: np.ndarray, starts: dict[int, int]) -> tuple[float, int]:
    """(mean Dice, object-frames) over the frames of each prompted ground-truth track after its first."""
    scores = []
    for index, (ours, truth) in enumerate(zip(labels, tracks)):
        for track in np.unique(truth[truth > 0]).tolist():
            if track in starts and starts[track] != index:
                scores.append(dice(ours == track, truth == track))
    return (float(np.mean(scores)) if scores else float("nan")), len(scores)


def score_tracker(session: TrackingSession, tracks: np.ndarray, progress: Progress | None = None) -> tuple[float, int]:
    """Prompt every track on its first frame, track forward, return (mean Dice, object-frames).
    ``progress``: told the tracks prompted, then the frames tracked; raises Cancelled once cancelled."""
    starts = prompt_tracks(session, tracks, progress)
    for _ in session.propagate("forward", progress=progress):
        pass
    return mean_track_dice(session.labels(), tracks, starts)


def drifted(images: np.ndarray, tracks: np.ndarray, drift: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) frames and their track stack on a canvas ``drift`` px wider (median grey, empty
    labels), shifted right by ``drift`` px on odd frames: a stage jump between every two frames."""
    wide = np.full((*images.shape[:2], images.shape[2] + drift), np.median(images), images.dtype)
    wide_tracks = np.zeros(wide.shape, tracks.dtype)
    for index in range(len(images)):
        offset = drift * (index % 2)
        wide[index, :, offset : offset + images.shape[2]] = images[index]
        wide_tracks[index, :, offset : offset + images.shape[2]] = tracks[index]
    return wide, wide_tracks


def founder(track: int, parents: dict[int, int]) -> int:
    """The earliest ancestor of ``track`` in a {daughter: parent} lineage (``track`` itself without a parent)."""
    seen = set()
    while track in parents and track not in seen:
        seen.add(track)
        track = parents[track]
    return track


def lineage_dice(
    labels: np.ndarray,
    parents: dict[int, int],
    tracks: np.ndarray,
    truth_parents: dict[int, int],
    starts: dict[int, int],
) -> tuple[float, int]:
    """(mean Dice, object-frames) per prompted object and frame after its first, matched through the lineage:
    on each frame the object's pixels are its own and its descendants' (``parents``: the tracker's
    {daughter: parent}), the truth's those of the prompted track and its descendants (``truth_parents``), so
    a cell that divided is scored as the pair of its daughters whether or not the tracker recorded the division.
    ``labels``, ``tracks``: (T, H, W) label stacks, object ids = the prompted truth tracks' ids."""
    scores = []
    for index, (ours, truth) in enumerate(zip(labels, tracks)):
        truth_ids = [int(k) for k in np.unique(truth[truth > 0])]
        our_ids = [int(k) for k in np.unique(ours[ours > 0])]
        for obj, first in starts.items():
            if index <= first:
                continue
            mine = [k for k in truth_ids if founder(k, truth_parents) == obj]
            if not mine:
                continue
            found = [k for k in our_ids if founder(k, parents) == obj]
            scores.append(dice(np.isin(ours, found), np.isin(truth, mine)))
    return (float(np.mean(scores)) if scores else float("nan")), len(scores)
