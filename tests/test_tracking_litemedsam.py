"""The default tracker (LiteMedSAM from a motion prior) on the real HeLa time-lapse, and the session API."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fmscope.errors import Cancelled
from fmscope.imaging.cache import EmbeddingCache
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.tracking import TrackingSession, open_frames, paint_labels
from fmscope.imaging.tracking.evaluation import drifted, score_tracker
from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker, estimate_shift, match_object, shift_mask
from fmscope.imaging.tracking.results import ObjectMask
from fmscope.progress import Progress
from fmscope.samples import sample_data_dir

FRAMES, SIDE = 8, 192  # a corner of the HeLa sample: about 15 tracks


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter("litemedsam", device="cpu")


@pytest.fixture(scope="module")
def hela():
    folder = sample_data_dir() / "hela_timelapse"
    images = tifffile.imread(folder / "images.tif")[:FRAMES, :SIDE, :SIDE]
    tracks = tifffile.imread(folder / "tracks.tif")[:FRAMES, :SIDE, :SIDE]
    return images, tracks


def session_for(frames: np.ndarray, segmenter: Segmenter, motion_prior: bool = True) -> TrackingSession:
    source = open_frames(frames)
    return TrackingSession(source, backend=LiteMedSAMTracker(source, motion_prior=motion_prior, segmenter=segmenter))


def test_shift_estimate_and_mask_shift():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(64, 80))
    moved = np.roll(image, (5, -7), axis=(0, 1))
    assert estimate_shift(image, moved) == (5, -7)
    mask = np.zeros((10, 10), bool)
    mask[2:4, 2:4] = True
    assert shift_mask(mask, 3, -2)[5:7, 0:2].all() and shift_mask(mask, 3, -2).sum() == 4
    assert not shift_mask(mask, 20, 0).any()


def test_object_match_follows_the_nucleus_not_its_neighbour(hela):
    """Template matching on the real frames: each nucleus's move within 5 px of the truth's centroid
    move for >= 85 % of object-frames of this corner (edge nuclei included; 97 % on whole frames), well above
    "no move"."""
    images, tracks = hela
    errors, still = [], []
    for t in range(FRAMES - 1):
        for track in np.unique(tracks[t][tracks[t] > 0]):
            before, after = tracks[t] == track, tracks[t + 1] == track
            if before.sum() < 50 or not after.any():
                continue
            true = np.argwhere(after).mean(axis=0) - np.argwhere(before).mean(axis=0)
            drift = (0, 0)
            errors.append(np.hypot(*(np.array(match_object(images[t], images[t + 1], before, drift)) - true)))
            still.append(np.hypot(*true))
    assert len(errors) > 50
    matched, unmoved = np.mean(np.array(errors) <= 5), np.mean(np.array(still) <= 5)
    assert matched >= 0.85 and matched >= unmoved + 0.15, (matched, unmoved)


def blobs(centres, shape=(80, 120), radius=6) -> np.ndarray:
    """A float image of bright discs on a textured background."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.random.default_rng(1).normal(0, 0.05, shape)
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] += 1
    return image


def test_object_match_avoids_other_objects_and_keeps_edge_objects():
    """Two look-alike nuclei: the match goes to the one no other object occupies; an object at the
    frame's edge, whose template the drift pushes partly out of the frame, is still matched."""
    previous, current = blobs([(40, 50)]), blobs([(40, 44), (40, 60)])  # moved 6 px left; a twin 10 px right
    mask = blobs([(40, 50)]) > 0.5
    twin = blobs([(40, 60)]) > 0.5
    assert match_object(previous, current, mask, (0, 4)) == (0, 10)  # the nearer twin wins on looks alone
    assert match_object(previous, current, mask, (0, 4), occupied=twin) == (0, -6)
    edge_previous, edge_current = blobs([(40, 4)]), blobs([(40, 104)])
    edge_mask = edge_previous > 0.5
    assert match_object(edge_previous, edge_current, edge_mask, (0, 100)) == (0, 100)
    back = match_object(edge_current, edge_previous, edge_current > 0.5, (0, -100))
    assert back == (0, -100), back


@pytest.mark.slow
def test_motion_prior_beats_the_naive_tracker_and_follows_a_100_px_drift():
    """Issue 11: on a 256 px corner of the HeLa sample (3 frames, 43 object-frames) the default
    tracker beats the naive one (box from the previous mask) by >= 0.10 mean Dice, and with the
    frames shifted 100 px every other frame it stays within 0.02 of the undrifted run. Run with the
    bfloat16 encoder (``--fast``) to halve the test's time: measured 0.837 / 0.597 / 0.837 (with issue 28's rod
    prior, which changes elongated nuclei; before it 0.805 / 0.597 / 0.809, and on 5 frames, 89 object-frames:
    0.784 / 0.520 / 0.785, cut to 3 for CI time; fp32 on 5 frames,
    ``benchmarks/tracking.py --hela-frames 5``: 0.778 / 0.521 / 0.785)."""
    # One cache for the three runs, large enough (about 4 MB an entry) that the naive run takes the lattice crops
    # the motion-prior run already embedded on the same frames instead of the default 64-entry LRU evicting them.
    segmenter = Segmenter("litemedsam", device="cpu", precision="fast", cache=EmbeddingCache(max_items=256))
    folder = sample_data_dir() / "hela_timelapse"
    images = tifffile.imread(folder / "images.tif")[:3, :256, :256]
    tracks = tifffile.imread(folder / "tracks.tif")[:3, :256, :256]
    scores = {}
    for motion in (True, False):
        scores[motion], count = score_tracker(session_for(images, segmenter, motion_prior=motion), tracks)
        assert count == 43
    print(f"\nembedding cache after both runs: {segmenter.cache.hits} hits, {segmenter.cache.misses} misses")
    assert scores[True] >= 0.75 and scores[True] >= scores[False] + 0.10, scores
    wide, wide_tracks = drifted(images, tracks, 100)
    drift_score, count = score_tracker(session_for(wide, segmenter), wide_tracks)
    assert count == 43 and abs(drift_score - scores[True]) <= 0.02, (drift_score, scores)


def test_overlaps_go_to_the_more_confident_object():
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[:, :3], b[:, 1:] = True, True
    labels = paint_labels({1: ObjectMask(a, 0.9), 2: ObjectMask(b, 0.6)}, (4, 4))
    assert (labels[:, 0] == 1).all() and (labels[:, 1:3] == 1).all() and (labels[:, 3] == 2).all()
    tie = paint_labels({1: ObjectMask(a, 0.5), 2: ObjectMask(b, 0.5)}, (4, 4))
    assert (tie[:, 1:3] == 1).all()  # ties: the lower id


def test_generator_progress_cancel_and_correction_range(hela, segmenter):
    images, tracks = hela
    small = images[:6, :96, :96]
    session = session_for(small, segmenter)
    session.add_box(0, 1, [20, 20, 60, 60])
    session.add_box(4, 1, [20, 20, 60, 60])
    progress = Progress()
    seen = []
    with pytest.raises(Cancelled):
        for result in session.propagate("forward", progress=progress):
            seen.append((result.frame, result.done, result.total))
            if result.frame == 1:
                progress.cancel()
    assert seen == [(0, 1, 6), (1, 2, 6)]  # stopped after the frame it was asked on
    results = list(session.propagate("forward"))
    assert [r.frame for r in results] == list(range(6)) and results[-1].labels.dtype == np.uint16
    session.add_points(2, 1, [[40, 40]], [1])  # a correction: re-runs frames 2..3, up to the next prompt (4)
    assert [r.frame for r in session.propagate()] == [2, 3]
    assert session.labels().shape == (6, 96, 96) and set(session.object_frames(1)) <= set(range(6))


def test_removed_object_leaves_the_session_as_if_never_prompted(hela, segmenter):
    images, tracks = hela
    small = images[:3, :128, :128]
    boxes = {1: [12, 49, 35, 75], 2: [50, 27, 71, 57]}
    session = session_for(small, segmenter)
    for obj, box in boxes.items():
        session.add_box(0, obj, box)
    assert session.remove_object(2) == [0]
    assert 2 not in session.prompts and set(np.unique(session.labels())) == {0, 1}
    alone = session_for(small, segmenter)
    alone.add_box(0, 1, boxes[1])
    list(session.propagate("forward"))
    list(alone.propagate("forward"))
    assert np.array_equal(session.labels(), alone.labels()) and (session.labels() == 1).any()
