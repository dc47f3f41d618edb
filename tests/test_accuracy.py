"""Accuracy on the stardist nuclei (125 instances) with boxes from the ground truth."""

import numpy as np
import pytest

from fmscope.metrics import dice


def _mean_dice(segmenter, nuclei, nuclei_boxes, roi_zoom):
    segmenter.set_image(nuclei[0])
    results = segmenter.predict_many(list(nuclei_boxes.values()), roi_zoom=roi_zoom)
    return float(np.mean([dice(r.mask, nuclei[1] == label) for label, r in zip(nuclei_boxes, results)]))


@pytest.mark.slow
def test_whole_image_parity_level(segmenter, nuclei, nuclei_boxes):
    assert len(nuclei_boxes) == 125
    assert _mean_dice(segmenter, nuclei, nuclei_boxes, roi_zoom=False) >= 0.77


@pytest.mark.slow
def test_roi_zoom_improves_small_objects(segmenter, nuclei, nuclei_boxes):
    """Every 4th nucleus (30 boxes, each zoom crop embedded: a quarter of the time of all 125): measured whole
    image 0.792, ROI zoom 0.851 (2026-12-06). All 125 (0.799 -> 0.844) are scored by ``python
    benchmarks/segment.py``; ``benchmarks/speed.py --nuclei 30`` scores this same subset."""
    subset = dict(list(nuclei_boxes.items())[::4][:30])
    whole = _mean_dice(segmenter, nuclei, subset, roi_zoom=False)
    zoom = _mean_dice(segmenter, nuclei, subset, roi_zoom="auto")
    assert zoom >= 0.82 and zoom >= whole + 0.03, (zoom, whole)
