"""Correction workflow on real MRML nodes (slicer-core, real lung CT, LiteMedSAM): the user edits the
segment on slice k (as Segment Editor would), then "re-propagate from this slice": only the slices beyond
k in the chosen direction change, to what the engine gives from that slice's mask; other segments never."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from FMScopeLib import geometry, mrml_arrays
from FMScopeLib.logic import SegmentOptions
from mrml_helpers import add_volume, ijk_to_ras_from_volume
from scipy import ndimage

from fmscope.errors import FmscopeError
from fmscope.imaging.prompts import box_from_mask
from fmscope.imaging.volume import segment_volume

pytestmark = pytest.mark.slow
RANGE = 2  # slices each side of the key slice


def _segmented(scene, logic, lung):
    """The volume, a segmentation with the tumour segmented by fmscope and an overlapping hand-painted segment."""
    volume, truth, z, box = lung
    node = add_volume(scene, volume.array, ijk_to_ras_from_volume(volume))
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    options = SegmentOptions(window="lung", slice_range=(z - RANGE, z + RANGE))
    tumour = logic.process(node, segmentation, geometry.SliceBox(2, z, tuple(box)), options)
    other = segmentation.GetSegmentation().AddEmptySegment("painted", "painted", [0.2, 0.8, 0.2])
    painted = np.zeros(volume.array.shape, bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    painted[z - RANGE : z + RANGE + 1, y0 - 4 : (y0 + y1) // 2, x0 - 4 : (x0 + x1) // 2] = True  # overlaps the tumour
    mrml_arrays.write_segment(segmentation, other, painted, node)
    return node, segmentation, tumour, other, painted, options


@pytest.mark.parametrize("direction", ["up", "down"])
def test_repropagate_changes_only_that_side_and_no_other_segment(scene, logic, lung, segmenter, direction):
    volume, truth, z, box = lung
    node, segmentation, tumour, other, painted, options = _segmented(scene, logic, lung)
    before = mrml_arrays.read_segment(segmentation, tumour, node)
    assert before[z - 1].any() and before[z + 1].any()
    edited = before.copy()
    edited[z] = ndimage.binary_erosion(before[z], iterations=3)  # the user trims the outline on slice z
    mrml_arrays.write_segment(segmentation, tumour, edited, node)
    other_before = mrml_arrays.read_segment(segmentation, other, node)
    assert np.array_equal(other_before, painted)

    options.direction = direction
    assert logic.repropagate(node, segmentation, tumour, 2, z, options) == tumour
    after = mrml_arrays.read_segment(segmentation, tumour, node)
    changed = slice(z + 1, None) if direction == "up" else slice(None, z)
    kept = slice(None, z + 1) if direction == "up" else slice(z, None)
    assert np.array_equal(after[kept], edited[kept])  # the corrected slice and the other side: unchanged
    engine = segment_volume(
        volume.array,
        z,
        {1: box_from_mask(edited[z])},
        segmenter=segmenter,
        window="lung",
        direction=direction,
        slice_range=options.slice_range,
        key_masks={1: edited[z]},
    )
    assert np.array_equal(after[changed], engine[changed] > 0)
    assert not np.array_equal(after[changed], before[changed])  # the correction did change that side
    assert np.array_equal(mrml_arrays.read_segment(segmentation, other, node), painted)  # never another segment
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 2

    assert logic.undo(scene, node)  # undo restores the segment as it was before the re-propagation
    assert np.array_equal(mrml_arrays.read_segment(segmentation, tumour, node), edited)


def test_repropagate_refuses_an_empty_slice_and_changes_nothing(scene, logic, lung):
    volume, truth, z, box = lung
    node, segmentation, tumour, other, painted, options = _segmented(scene, logic, lung)
    before = [mrml_arrays.read_segment(segmentation, s, node) for s in (tumour, other)]
    for segment, index, words in [(tumour, 0, "empty on slice 0"), ("nope", z, "does not exist")]:
        with pytest.raises(FmscopeError, match=words):
            logic.repropagate(node, segmentation, segment, 2, index, options)
    with pytest.raises(FmscopeError, match="Unknown direction"):
        logic.repropagate(node, segmentation, tumour, 2, z, SegmentOptions(direction="sideways"))
    after = [mrml_arrays.read_segment(segmentation, s, node) for s in (tumour, other)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
