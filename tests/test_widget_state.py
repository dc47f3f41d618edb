"""The napari widgets' Qt-free state objects: exact undo of label edits, and which layers belong to which slide."""

import anndata as ad
import numpy as np
from napari.layers import Labels, Points

from fmscope.napari.slide_layers import SLIDE_KEY
from fmscope.napari.spatial_state import ANNOTATION_KEY, SpatialState
from fmscope.napari.state import SegmentState
from fmscope.omics.io import Slide


def square(shape, y0, y1, x0, x1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_undo_restores_only_the_pixels_the_edit_changed():
    state, labels = SegmentState(), np.zeros((8, 8), np.uint16)
    labels[0, 0] = 7  # painted by hand before
    assert state.paint(labels, None, 1, square((8, 8), 0, 4, 0, 4))
    assert labels[0, 0] == 7 and (labels == 1).sum() == 15  # the model never paints over other labels
    labels[1:3, 1:3] = 5  # painted by hand after the model result, over it
    labels[6, 6] = 5  # and beside it
    painted = labels.copy()
    assert state.undo(labels)
    assert np.array_equal(labels, np.where(painted == 1, 0, painted))
    assert not state.undo(labels) and not state.can_undo


def test_undo_of_a_refinement_and_of_an_erase_on_a_volume():
    state, labels = SegmentState(), np.zeros((3, 6, 6), np.uint16)
    assert state.paint_slices(labels, 2, {0: square((6, 6), 0, 3, 0, 3), 1: square((6, 6), 0, 4, 0, 4)})
    first = labels.copy()
    assert state.paint(labels, 1, 2, square((6, 6), 2, 6, 2, 6))  # a click moved the object on slice 1
    assert not state.paint(labels, 1, 2, square((6, 6), 2, 6, 2, 6))  # nothing changes: nothing recorded
    labels[2, 5, 5] = 9  # hand painting on another slice
    assert state.erase(labels, 2)
    assert set(np.unique(labels)) == {0, 9}
    state.undo(labels)
    state.undo(labels)
    assert np.array_equal(labels, np.where(labels == 9, 9, first))
    state.undo(labels)
    assert np.array_equal(labels, np.where(labels == 9, 9, 0))


def small_slide(source: str) -> Slide:
    adata = ad.AnnData(np.ones((3, 2), np.float32))
    adata.obsm["spatial"] = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return Slide(adata, source=source)


def test_layers_belong_to_their_slide_whatever_their_names():
    first, second = small_slide("/data/brain.zarr"), small_slide("/other/brain.zarr")
    cells = [
        Points(slide.adata.obsm["spatial"], name="cells", metadata={SLIDE_KEY: slide}) for slide in (first, second)
    ]
    annotation = Labels(np.zeros((4, 4), np.uint8), name="renamed by the user", metadata={ANNOTATION_KEY: second})
    state = SpatialState()
    assert state.update([*cells, annotation]) == ["brain", "brain (2)"]
    assert state.current is first
    state.choose("brain (2)")
    assert state.current is second and state.annotation_name(second) == "fmscope annotations (brain (2))"
    assert state.annotation_layer(second, [*cells, annotation]) is annotation
    assert state.annotation_layer(first, [*cells, annotation]) is None
    state.update([cells[1], cells[0]])  # reordered: the chosen slide stays chosen
    assert state.current is second and state.name_of(second) == "brain"
    state.update([cells[0]])  # its layers removed: back to the remaining slide
    assert state.current is first and state.name_of(second) is None
    state.update([])
    assert state.current is None and state.slides == {}
