"""Point prompts refine box results on the real nuclei image."""

import numpy as np

from fmscope.imaging.prompts import box_from_mask


def test_negative_click_removes_area(segmenter, nuclei, nuclei_boxes):
    segmenter.set_image(nuclei[0])
    box = list(nuclei_boxes.values())[0]
    first = segmenter.predict(box=box)
    ys, xs = np.nonzero(first.mask)
    centre = [[float(xs.mean()), float(ys.mean())]]
    refined = segmenter.predict(box=box, points=centre, labels=[0])
    assert refined.mask.sum() < 0.8 * first.mask.sum()
    assert not (refined.mask & ~first.mask).sum() > 0.2 * first.mask.sum()


def test_box_and_positive_click_keep_the_object(segmenter, nuclei, nuclei_boxes):
    # On the whole image: in a ROI-zoom crop LiteMedSAM (trained on boxes) loses part of a small
    # object to a centre click (README, "Clicks"), so this checks the prompt handling itself.
    segmenter.set_image(nuclei[0])
    label, box = next(iter(nuclei_boxes.items()))
    centre = [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]]
    result = segmenter.predict(box=box, points=centre, labels=[1], roi_zoom=False)
    truth = nuclei[1] == label
    assert (result.mask & truth).sum() > 0.9 * truth.sum()


def test_box_from_mask_margin_and_empty():
    mask = np.zeros((10, 10), bool)
    assert box_from_mask(mask) is None
    mask[2:4, 5:8] = True
    assert box_from_mask(mask).tolist() == [5, 2, 7, 3]
    assert box_from_mask(mask, margin=3).tolist() == [2, 0, 9, 6]
