"""The Track panel's Corrections box (issue 28) in a real viewer, opened from the Plugins menu, with the real
LiteMedSAM weights on a corner of the HeLa time-lapse: mark a division (and a refused removal), split, link, remove a
division, re-propagate; Undo puts each edit back exactly (the layer, the engine's lineage and the objects)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from napari_helpers import click, wait_idle

from fmscope.imaging.prompts import box_from_mask
from fmscope.napari.track_panel import BOXES, LABELS, TRACKS
from fmscope.samples import get_case

FRAMES, SIDE = 3, 128
NUCLEUS, OTHER = 12, 4  # ground-truth track ids of two nuclei of the crop, both on frames 0..2


def rectangle(box, frame):
    x0, y0, x1, y1 = box
    return np.c_[np.full(4, frame), [[y0, x0], [y0, x1], [y1, x1], [y1, x0]]].astype(float)


def select(panel, obj: int) -> None:
    row = [r[0] for r in panel.object_rows()].index(obj)
    panel.objects_table.selectRow(row)
    assert panel.state.selected == obj


@pytest.mark.slow
def test_corrections_and_their_undo(make_napari_viewer, open_widget, qtbot):
    case = get_case("hela_timelapse")
    images = tifffile.imread(case.image_path)[:FRAMES, :SIDE, :SIDE]
    tracks = tifffile.imread(case.labels_path)[:FRAMES, :SIDE, :SIDE]
    viewer = make_napari_viewer()
    viewer.add_image(images, name="hela")
    panel = open_widget(viewer, "Track")
    panel.direction_combo.setCurrentText("forward")
    viewer.layers[BOXES].add_rectangles(rectangle(box_from_mask(tracks[0] == NUCLEUS), 0))
    wait_idle(qtbot, panel)
    click(qtbot, panel, "New (Shift-N)")
    viewer.layers[BOXES].add_rectangles(rectangle(box_from_mask(tracks[1] == OTHER), 1))  # object 2 from frame 1
    wait_idle(qtbot, panel)
    click(qtbot, panel, "Propagate (Shift-P)")
    wait_idle(qtbot, panel)
    layer = viewer.layers[LABELS]
    assert panel.object_rows() == [(1, "0..2", "0"), (2, "1..2", "1")]
    tracked = layer.data.copy()

    # mark a division: object 1 divides on frame 1 into a new object 3 and object 2
    viewer.dims.set_current_step(0, 1)
    select(panel, 1)
    panel.corrections.other_spin.setValue(2)
    click(qtbot, panel, "Mark division")
    wait_idle(qtbot, panel)
    assert panel.session.lineage.parents == {3: 1, 2: 1}
    assert [r[:2] for r in panel.object_rows()] == [(1, "0..0"), (2, "1..2"), (3, "1..2")]
    assert np.array_equal(layer.data == 3, (tracked == 1) & (np.arange(FRAMES) >= 1)[:, None, None])
    assert len(viewer.layers[TRACKS].graph) == 2  # both daughters drawn from their parent
    click(qtbot, panel, "Undo (Shift-U)")
    wait_idle(qtbot, panel)
    assert np.array_equal(layer.data, tracked) and panel.session.lineage.parents == {}
    assert panel.object_rows() == [(1, "0..2", "0"), (2, "1..2", "1")]
    assert np.array_equal(panel.session.labels(), tracked)

    # mark again, then remove the division: refused (daughter 2 was prompted by the user), nothing changes
    select(panel, 1)
    click(qtbot, panel, "Mark division")
    wait_idle(qtbot, panel)
    marked = layer.data.copy()
    select(panel, 1)
    click(qtbot, panel, "Remove division")
    wait_idle(qtbot, panel)
    assert "was prompted" in panel.status.text() and np.array_equal(layer.data, marked)
    assert len(panel.session.lineage.parents) == 2
    click(qtbot, panel, "Undo (Shift-U)")
    wait_idle(qtbot, panel)
    assert np.array_equal(layer.data, tracked) and panel.session.lineage.parents == {}

    # split object 1 on frame 2, then link the part back
    viewer.dims.set_current_step(0, 2)
    select(panel, 1)
    click(qtbot, panel, "Split here")
    wait_idle(qtbot, panel)
    new = max(r[0] for r in panel.object_rows())
    assert np.array_equal(layer.data[2] == new, tracked[2] == 1) and not (layer.data[2] == 1).any()
    select(panel, 1)
    panel.corrections.other_spin.setValue(new)
    click(qtbot, panel, "Link to other")
    wait_idle(qtbot, panel)
    assert np.array_equal(layer.data, tracked) and [r[0] for r in panel.object_rows()] == [1, 2]
    click(qtbot, panel, "Undo (Shift-U)")
    wait_idle(qtbot, panel)
    assert (layer.data[2] == new).any() and [r[0] for r in panel.object_rows()] == [1, 2, new]
    click(qtbot, panel, "Undo (Shift-U)")
    wait_idle(qtbot, panel)
    assert np.array_equal(layer.data, tracked) and np.array_equal(panel.session.labels(), tracked)

    # a division whose daughters nobody prompted: object 2's frame 2 split off (object N), object 1 divides on frame 2
    # into a new object and N; Remove division gives both daughters' pixels back to object 1; three Undos
    select(panel, 2)
    click(qtbot, panel, "Split here")
    wait_idle(qtbot, panel)
    split_off = max(r[0] for r in panel.object_rows())
    select(panel, 1)
    panel.corrections.other_spin.setValue(split_off)
    click(qtbot, panel, "Mark division")
    wait_idle(qtbot, panel)
    assert sorted(panel.session.lineage.parents.values()) == [1, 1]
    select(panel, 1)
    click(qtbot, panel, "Remove division")
    wait_idle(qtbot, panel)
    assert panel.session.lineage.parents == {}
    merged = np.where((tracked == 2) & (np.arange(FRAMES) == 2)[:, None, None], 1, tracked)
    assert np.array_equal(layer.data, merged) and np.array_equal(panel.session.labels(), merged)
    for _ in range(3):
        click(qtbot, panel, "Undo (Shift-U)")
        wait_idle(qtbot, panel)
    assert np.array_equal(layer.data, tracked) and np.array_equal(panel.session.labels(), tracked)
    assert panel.object_rows() == [(1, "0..2", "0"), (2, "1..2", "1")]

    # re-propagate from the shown frame: a propagation forward from frame 1
    viewer.dims.set_current_step(0, 1)
    select(panel, 1)
    click(qtbot, panel, "Re-propagate from here")
    wait_idle(qtbot, panel)
    assert panel.status.text() == "Propagated." and panel.first_spin.value() == 1
    assert np.array_equal(layer.data, tracked)  # nothing was corrected: the same tracks
