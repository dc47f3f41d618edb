"""Render the napari plugin in a real window and save screenshots to docs/ (run: make screenshots).

Drives the Segment widget as a user would (boxes into its Shapes layer, Propagate), waiting
for the model thread, then saves viewer screenshots with the widget docked.
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from fmscope import samples
from fmscope.napari import sample_data
from fmscope.napari.segment_widget import BOXES, SegmentWidget

DOCS = Path(__file__).resolve().parents[1] / "docs"


def wait(widget: SegmentWidget, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not widget.worker.idle and time.time() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()


def rectangle(box, z=None) -> np.ndarray:
    x0, y0, x1, y1 = box
    corners = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)
    return corners if z is None else np.c_[np.full(4, z), corners]


def open_viewer(case_layers) -> tuple[napari.Viewer, SegmentWidget]:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    for data, kwargs, kind in case_layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="fmscope: Segment")
    wait(widget)
    return viewer, widget


def nuclei() -> None:
    viewer, widget = open_viewer(sample_data.nuclei())
    truth = viewer.layers["nuclei ground truth"].data
    for box in list(samples.boxes_from_labels(truth).values())[:12]:
        widget.new_object()
        viewer.layers[BOXES].add_rectangles(rectangle(box))
        wait(widget)
    viewer.screenshot(str(DOCS / "napari_nuclei.png"), canvas_only=False)
    widget.worker.shutdown()
    viewer.close()


def ct_volume() -> None:
    viewer, widget = open_viewer(sample_data.ct_lung_volume())
    truth = viewer.layers["ct_lung_volume ground truth"].data
    z = samples.key_slice(truth)
    viewer.dims.set_point(0, z * viewer.layers["ct_lung_volume"].scale[0])
    wait(widget)
    viewer.layers[BOXES].add_rectangles(rectangle(samples.boxes_from_labels(truth[z])[1], z))
    wait(widget)
    widget.propagate()
    wait(widget)
    viewer.camera.zoom *= 1.6
    viewer.camera.center = (0, *(np.array(np.nonzero(truth[z])).mean(axis=1) * viewer.layers["ct_lung_volume"].scale[1:]))
    viewer.dims.set_point(0, (z + 1) * viewer.layers["ct_lung_volume"].scale[0])
    for _ in range(20):
        QApplication.processEvents()
    wait(widget)
    viewer.screenshot(str(DOCS / "napari_ct_propagated.png"), canvas_only=False)
    widget.worker.shutdown()
    viewer.close()


if __name__ == "__main__":
    DOCS.mkdir(exist_ok=True)
    nuclei()
    ct_volume()
    print(f"screenshots written to {DOCS}")
