"""Volumes above the module's size limit (``FMScopeLogic.range_limit_bytes``) are read slice range by slice range:
on the real lung CT with a limit of a few slices, Run and Re-propagate give the whole-volume result voxel for voxel,
and no range read is larger than the limit."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from FMScopeLib import geometry, mrml_arrays
from FMScopeLib.logic import SegmentOptions
from mrml_helpers import add_volume, ijk_to_ras_from_volume

from fmscope.errors import FmscopeError

pytestmark = pytest.mark.slow
LIMIT_SLICES = 2  # the tiny limit: two axial slices of the sample CT
SPAN = 3  # slices each side of the key slice that are propagated (several range boundaries)


def _limit(volume) -> int:
    return LIMIT_SLICES * volume.array[0].nbytes


def _ranges_within(ranges, slices: int) -> bool:
    return bool(ranges) and all(0 <= last - first < slices for first, last in ranges)


def test_ranges_give_the_whole_volume_result(scene, logic, lung, monkeypatch):
    volume, truth, z, box = lung
    node = add_volume(scene, volume.array, ijk_to_ras_from_volume(volume))
    slice_box = geometry.SliceBox(2, z, tuple(float(v) for v in box))
    options = SegmentOptions(slice_range=(z - SPAN, z + SPAN))  # automatic window: computed from the ranges, exactly
    whole = logic.compute(node, slice_box, options)
    assert whole.ranges_read == () and whole.mask_kji.sum() > 0

    monkeypatch.setattr(logic, "range_limit_bytes", _limit(volume))
    ranged = logic.compute(node, slice_box, options)
    assert np.array_equal(ranged.mask_kji, whole.mask_kji)
    assert ranged.action.window == whole.action.window
    assert _ranges_within(ranged.ranges_read, LIMIT_SLICES), ranged.ranges_read

    # Re-propagate from a corrected slice, range by range: the same as on the whole volume
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    segment = logic.write(segmentation, node, whole, options)
    edited = whole.mask_kji.copy()
    edited[z, :, : int(np.mean(box[0::2]))] = False  # the user trims the left half on the key slice
    mrml_arrays.write_segment(segmentation, segment, edited, node)
    again = logic.compute_repropagation(
        node,
        segmentation,
        segment,
        2,
        z,
        SegmentOptions(window="lung", direction="up", slice_range=(z - SPAN, z + SPAN)),
    )
    monkeypatch.setattr(logic, "range_limit_bytes", 2**40)
    reference = logic.compute_repropagation(
        node,
        segmentation,
        segment,
        2,
        z,
        SegmentOptions(window="lung", direction="up", slice_range=(z - SPAN, z + SPAN)),
    )
    assert reference.ranges_read == ()
    assert np.array_equal(again.mask_kji, reference.mask_kji)
    assert _ranges_within(again.ranges_read, LIMIT_SLICES), again.ranges_read


def test_a_volume_changed_while_read_in_ranges_is_refused(scene, logic, lung, monkeypatch):
    volume, truth, z, box = lung
    node = add_volume(scene, volume.array, ijk_to_ras_from_volume(volume))
    monkeypatch.setattr(logic, "range_limit_bytes", _limit(volume))
    source = logic.engine_volume(node, 2)
    source[z]  # noqa: B018 (reads the key slice's range)
    node.GetImageData().Modified()
    with pytest.raises(FmscopeError, match="changed while it was segmented"):
        logic._unchanged(node, source, node.GetImageData().GetMTime() - 1)
