"""Volume propagation on the real lung CT: the tumour is followed through its slices."""

import numpy as np
import pytest

from fmscope import samples
from fmscope.errors import FmscopeError
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
    assert set(np.unique(labels[10])) <= {0, 1, 2}
    assert (labels[10] == 1)[:, 100:].sum() == 0  # object 1 stays on its side


@pytest.mark.parametrize("kwargs, message", [
    (dict(key_slice=99), "outside"),
    (dict(direction="sideways"), "direction"),
    (dict(slice_range=(12, 15)), "contain the key slice"),
    (dict(boxes={0: [1, 1, 9, 9]}), "labels >= 1"),
])
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
