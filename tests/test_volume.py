"""Volume propagation on the real lung CT: the tumour is followed through its slices."""

import numpy as np
import pytest

from fmscope import samples
from fmscope.errors import FmscopeError
from fmscope.imaging.prompts import box_from_mask
from fmscope.imaging.volume import segment_volume
from fmscope.metrics import dice


@pytest.mark.slow
def test_tumour_propagates_from_key_slice(segmenter, ct_volume):
    volume, truth = ct_volume
    z = samples.key_slice(truth)
    box = samples.boxes_from_labels(truth[z])[1]
    labels = segment_volume(volume.array, z, box, segmenter=segmenter, window="lung")
    assert labels.shape == volume.array.shape and labels.dtype == np.uint16
    true_slices = set(np.nonzero(truth.any(axis=(1, 2)))[0])
    found_slices = set(np.nonzero(labels.any(axis=(1, 2)))[0])
    assert true_slices <= found_slices, (true_slices, found_slices)
    assert len(found_slices - true_slices) <= 2
    assert dice(labels > 0, truth > 0) >= 0.7


@pytest.mark.slow
def test_slice_range_and_direction_limit_propagation(segmenter, ct_volume):
    volume, truth = ct_volume
    z = samples.key_slice(truth)
    box = samples.boxes_from_labels(truth[z])[1]
    up = segment_volume(volume.array, z, box, segmenter=segmenter, window="lung", direction="up")
    assert not up[:z].any() and up[z].any()
    only_key = segment_volume(volume.array, z, {3: box}, segmenter=segmenter, window="lung", slice_range=(z, z))
    assert set(np.unique(only_key)) == {0, 3}
    assert only_key.any(axis=(1, 2)).sum() == 1


def test_several_objects_keep_their_labels(segmenter, ct_volume):
    volume, _ = ct_volume
    boxes = {1: [20, 20, 60, 60], 2: [120, 120, 170, 170]}
    labels = segment_volume(volume.array, 10, boxes, segmenter=segmenter, window="lung", slice_range=(10, 10))
    assert set(np.unique(labels)) == {0, 1, 2}
    for label, (x0, y0, x1, y1) in boxes.items():
        mask = labels[10] == label
        inside = np.zeros_like(mask)
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
        assert mask.sum() > 300 and not (mask & ~inside).any()  # found (437 and 1057 px), within its own box
        alone = segment_volume(
            volume.array, 10, {label: boxes[label]}, segmenter=segmenter, window="lung", slice_range=(10, 10)
        )
        assert dice(mask, alone[10] == label) >= 0.999  # one batch for both = each on its own


@pytest.mark.slow
def test_key_masks_are_kept_and_propagated_from(segmenter, ct_volume):
    volume, truth = ct_volume
    z = samples.key_slice(truth)
    key = truth[z] > 0  # an object the user already outlined exactly on the key slice
    box = samples.boxes_from_labels(truth[z])[1]
    labels = segment_volume(volume.array, z, {4: box}, segmenter=segmenter, window="lung", key_masks={4: key})
    assert np.array_equal(labels[z] == 4, key) and set(np.unique(labels)) == {0, 4}
    true_slices = set(np.nonzero(truth.any(axis=(1, 2)))[0])
    assert true_slices <= set(np.nonzero(labels.any(axis=(1, 2)))[0])
    assert dice(labels > 0, truth > 0) >= 0.7
    with pytest.raises(FmscopeError, match="key_masks"):
        segment_volume(volume.array, z, {4: box}, segmenter=segmenter, key_masks={4: key[:-1]})
    with pytest.raises(FmscopeError, match="key_masks"):
        segment_volume(volume.array, z, {4: box}, segmenter=segmenter, key_masks={5: key})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(key_slice=99), "outside"),
        (dict(direction="sideways"), "direction"),
        (dict(slice_range=(12, 15)), "contain the key slice"),
        (dict(boxes={0: [1, 1, 9, 9]}), "labels >= 1"),
    ],
)
def test_bad_volume_arguments(segmenter, ct_volume, kwargs, message):
    volume, _ = ct_volume
    arguments = dict(key_slice=10, boxes=[20, 20, 60, 60])
    arguments.update(kwargs)
    with pytest.raises(FmscopeError, match=message):
        segment_volume(volume.array, segmenter=segmenter, **arguments)


def test_volume_rejects_2d_and_4d(segmenter):
    with pytest.raises(FmscopeError, match="3D"):
        segment_volume(np.zeros((32, 32)), 0, [1, 1, 9, 9], segmenter=segmenter)
    with pytest.raises(FmscopeError, match="3D"):
        segment_volume(np.zeros((2, 2, 32, 32)), 0, [1, 1, 9, 9], segmenter=segmenter)


def test_propagation_ends_at_a_constant_slice_instead_of_failing(segmenter, ct_volume):
    """The fresh-clone report's case: slices of padding (one value, e.g. -800 HU or -1024 outside the field of
    view) beyond the object end the propagation; the masks found before them are kept and nothing is painted on
    the padding. Before, the whole run failed there as 'The image is constant'."""
    volume, truth = ct_volume
    z = int(np.argmax((truth > 0).sum(axis=(1, 2))))
    padded = volume.array.copy()
    padded[z + 2 :] = -1024
    padded[: max(z - 2, 0)] = -1024
    box = box_from_mask(truth[z] > 0)
    labels = segment_volume(padded, z, {1: box}, segmenter=segmenter, window="lung")
    assert labels[z].any() and not labels[z + 2 :].any() and not labels[: max(z - 2, 0)].any()
