"""napari: after a small box, the zoom crops around it are prepared in the background, so the next
small box nearby is painted from a cached embedding (no encoder call), with the engine's mask."""

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


def test_prepared_small_box_is_a_decode(make_napari_viewer, open_widget, qtbot, nuclei, nuclei_boxes, segmenter):
    viewer = make_napari_viewer()
    for data, kwargs, kind in sample_data.nuclei():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = open_widget(viewer, "Segment")
    widget.prepare_radius = 0.3  # the crop of the nucleus box and its 4 lattice neighbours, to keep the test short
    qtbot.waitUntil(lambda: widget.worker.idle, timeout=300_000)
    first = np.asarray(list(nuclei_boxes.values())[40], dtype=float)
    viewer.layers[BOXES].add_rectangles(rectangle(first))
    qtbot.waitUntil(lambda: widget.worker.drained, timeout=600_000)  # the prompt, then the preparation
    engine = next(iter(widget._segmenters.values()))
    calls = engine.encoder_calls

    assert not roi.centred(first)  # a nucleus: lattice crops (fmscope.imaging.roi.CENTRED_FROM)
    step = roi.lattice_side(first) / 2  # a nucleus-sized box one lattice step to the left
    second = first - np.array([step, 0, step, 0])
    assert roi.crop_for(second, nuclei[0].shape) != roi.crop_for(first, nuclei[0].shape)
    click(qtbot, widget, "New (n)")
    viewer.layers[BOXES].add_rectangles(rectangle(second))
    qtbot.waitUntil(lambda: widget.worker.idle and (viewer.layers[LABELS].data == 2).any(), timeout=300_000)
    assert engine.encoder_calls == calls  # painted from a prepared embedding
    segmenter.set_image(nuclei[0])
    assert (
        dice(viewer.layers[LABELS].data == 2, segmenter.predict(box=second).mask & (viewer.layers[LABELS].data != 1))
        >= 0.999
    )
