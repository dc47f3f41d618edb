"""Progress and Cancel in the napari Segment widget (a real viewer, the widget opened from the Plugins menu,
the real LiteMedSAM on three slices of the real lung CT): the bar reaches its total, and Cancel mid-way stops the
propagation and leaves the user's labels exactly as they were."""

from __future__ import annotations

import numpy as np
import pytest
from napari_helpers import click, wait_idle

from fmscope import samples
from fmscope.napari.segment_widget import BOXES, LABELS


@pytest.mark.slow  # about 25 s on the 2-core CI machine: two propagations through a real viewer
def test_propagation_progress_and_cancel(make_napari_viewer, open_widget, qtbot, ct_volume):
    volume, truth = ct_volume
    z = samples.key_slice(truth)
    first = z - 1
    viewer = make_napari_viewer()
    viewer.add_image(volume.array[first : z + 2], name="ct")  # 3 slices, the key slice in the middle
    widget = open_widget(viewer, "Segment")
    key = z - first
    viewer.dims.set_point(0, key)
    wait_idle(qtbot, widget)
    x0, y0, x1, y1 = samples.boxes_from_labels(truth[z])[1]
    viewer.layers[BOXES].add_rectangles(np.array([[key, y0, x0], [key, y0, x1], [key, y1, x1], [key, y1, x0]], float))
    wait_idle(qtbot, widget)
    layer = viewer.layers[LABELS]
    before = layer.data.copy()
    assert before[key].any() and not np.delete(before, key, axis=0).any()  # the object on its key slice only

    seen = []

    def cancel_at_first_slice(message, done, total):
        seen.append((message, done, total))
        if message == "propagating" and 0 < done < total and len(seen) == 1:
            click(qtbot, widget, "Cancel")  # the button beside the progress bar, as the user clicks it

    widget.worker.progress.connect(cancel_at_first_slice)
    click(qtbot, widget, "Propagate (p)")
    wait_idle(qtbot, widget)
    widget.worker.progress.disconnect(cancel_at_first_slice)
    assert seen[-1][1] < seen[-1][2]  # the last report came before the end: the job stopped there
    assert np.array_equal(layer.data, before)  # nothing painted
    assert widget.status.text().startswith("Cancelled") and not widget.panel.cancel_button.isVisible()

    reports = []
    widget.worker.progress.connect(lambda message, done, total: reports.append((message, done, total)))
    click(qtbot, widget, "Propagate (p)")
    wait_idle(qtbot, widget)
    propagating = [(done, total) for message, done, total in reports if message == "propagating"]
    assert propagating[-1][0] == propagating[-1][1] > 2  # the bar reached its total
    assert layer.data[key + 1].any() and not np.array_equal(layer.data, before)  # so the cancel had stopped work
