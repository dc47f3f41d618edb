"""napari: after a small box, the zoom crops around it are prepared in the background, so the next
small box nearby is painted from a cached embedding (no encoder call), with nearly the mask of its
own centred crop."""

from __future__ import annotations

import numpy as np
import pytest
from napari_helpers import click

from fmscope.imaging import roi
from fmscope.metrics import dice
from fmscope.napari import sample_data
from fmscope.napari.segment_widget import BOXES, LABELS

pytestmark = pytest.mark.slow


def rectangle(box):
    x0, y0, x1, y1 = box
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)


def test_prepared_small_box_is_a_decode(
    make_napari_viewer, open_widget, qtbot, nuclei, nuclei_boxes, segmenter, monkeypatch
):
    viewer = make_napari_viewer()
    for data, kwargs, kind in sample_data.nuclei():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = open_widget(viewer, "Segment")
    widget.prepare_radius = 0.25  # the crop of the box and 4 crops a grid step (side/4) away ...
    monkeypatch.setattr(roi, "PREPARED_SIDES", (0,))  # ... of its side alone, to keep the test short
    qtbot.waitUntil(lambda: widget.worker.idle, timeout=300_000)
    first = np.asarray(list(nuclei_boxes.values())[40], dtype=float)
    viewer.layers[BOXES].add_rectangles(rectangle(first))
    qtbot.waitUntil(lambda: widget.worker.drained, timeout=600_000)  # the prompt, then the preparation
    engine = next(iter(widget._segmenters.values()))
    calls = engine.encoder_calls

    # a nucleus-sized box 0.3 crop sides to the left: not its own crop, the prepared one side/4 away stands in
    shift = 0.3 * roi.crop_side(first)
    second = first - np.array([shift, 0, shift, 0])
    own = roi.crop_for(second, nuclei[0].shape)
    assert own != roi.crop_for(first, nuclei[0].shape)
    click(qtbot, widget, "New (n)")
    viewer.layers[BOXES].add_rectangles(rectangle(second))
    qtbot.waitUntil(lambda: widget.worker.idle and (viewer.layers[LABELS].data == 2).any(), timeout=300_000)
    assert engine.encoder_calls == calls  # painted from a prepared embedding
    segmenter.set_image(nuclei[0])
    reference = segmenter.predict_many([second])[0]  # in its own centred crop
    assert reference.crop == own
    painted = viewer.layers[LABELS].data == 2
    assert dice(painted, reference.mask & (viewer.layers[LABELS].data != 1)) >= 0.9
    assert dice(painted, nuclei[1] == nuclei[1][int(second[1] + second[3]) // 2, int(second[0] + second[2]) // 2]) > 0.5
