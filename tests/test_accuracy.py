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
    assert _mean_dice(segmenter, nuclei, nuclei_boxes, roi_zoom="auto") >= 0.82
