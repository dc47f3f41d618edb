"""Bad images and prompts get a clear FmscopeError; the caller's data is never modified."""

import numpy as np
import pytest

from fmscope.errors import FmscopeError


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 5)), "empty"),
        (np.full((32, 32), 7.0), "constant"),
        (np.where(np.eye(32) > 0, np.nan, np.inf), "no finite values"),
        (np.where(np.eye(32) > 0, np.nan, 1.0), "constant"),
        (np.zeros((32, 32, 2)), "grey \\+ alpha"),
        (np.arange(64.0).reshape(1, 64), "too small or thin"),
        (np.zeros((2, 3, 32, 32)), "4D"),
        (np.zeros((5, 32, 32)), "segment_volume"),
        (np.ones((32, 32), dtype=complex), "real numbers"),
    ],
)
def test_bad_images_are_refused(segmenter, image, message):
    with pytest.raises(FmscopeError, match=message):
        segmenter.set_image(image)


@pytest.mark.parametrize(
    "box, message",
    [
        ([600, 600, 700, 700], "outside"),
        ([-50, -50, -10, -10], "outside"),
        ([10, 10, 10, 40], "zero area"),
        ([40, 10, 10, 40], "zero area"),
        ([1, 2, 3], "4 finite numbers"),
        ([0, 0, np.nan, 5], "4 finite numbers"),
    ],
)
def test_bad_boxes_are_refused(segmenter, nuclei, box, message):
    segmenter.set_image(nuclei[0])
    with pytest.raises(FmscopeError, match=message):
        segmenter.predict(box=box)


def test_bad_points_are_refused(segmenter, nuclei):
    segmenter.set_image(nuclei[0])
    with pytest.raises(FmscopeError, match="outside"):
        segmenter.predict(points=[[900, 5]])
    with pytest.raises(FmscopeError, match="labels"):
        segmenter.predict(points=[[5, 5], [6, 6]], labels=[1])
    with pytest.raises(FmscopeError, match="1 \\(object\\) or 0"):
        segmenter.predict(points=[[5, 5]], labels=[2])
    with pytest.raises(FmscopeError, match="No prompt"):
        segmenter.predict()


def test_box_partly_outside_is_clipped(segmenter, nuclei, nuclei_boxes):
    segmenter.set_image(nuclei[0])
    result = segmenter.predict(box=[-20, -20, 30, 30])
    assert result.mask.shape == nuclei[0].shape


def test_inputs_are_not_modified(segmenter, nuclei):
    image = nuclei[0].copy()
    box = np.array([100.0, 100.0, 140.0, 140.0])
    before_image, before_box = image.copy(), box.copy()
    segmenter.set_image(image, window=(300, 600))
    segmenter.predict(box=box)
    segmenter.predict_many([box, box + 5])
    assert np.array_equal(image, before_image) and np.array_equal(box, before_box)


def test_no_image_set_is_explained():
    from fmscope.imaging.predictor import Segmenter

    fresh = Segmenter.__new__(Segmenter)
    fresh._rgb, fresh._lazy = None, None  # as __init__ leaves them before set_image
    with pytest.raises(FmscopeError, match="set_image"):
        fresh.image_shape


def test_unknown_window_preset_lists_presets(segmenter, ct_slice):
    with pytest.raises(FmscopeError, match="abdomen"):
        segmenter.set_image(ct_slice[0], window="lungs")
