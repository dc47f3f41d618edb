"""Render the napari plugin in a real window and save screenshots to docs/ (run: make screenshots).

Opens each widget as a user does, from *Plugins > fmscope* (napari's ``add_plugin_dock_widget``, the path the
tests in tests/napari_plugin/ drive), then drives the Segment widget and the Track panel as a user would
(boxes into their Shapes layer, New / Propagate buttons) and the Spatial widget (open the Visium slide,
compute domains; paint regions, train the head), waiting for the worker thread, then saves viewer
screenshots with the widget docked.
``python scripts/screenshots.py [nuclei|ct_volume|hela_tracking|echo_tracking|visium|finetune ...]`` renders only those.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication, QPushButton, QWidget

from fmscope import samples
from fmscope.napari import sample_data
from fmscope.napari.segment_widget import BOXES
from fmscope.omics.synthetic import annotate_blocks

DOCS = Path(__file__).resolve().parents[1] / "docs"


def wait(widget: QWidget, timeout: float = 300) -> None:
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


def click(widget: QWidget, text: str) -> None:
    """Click the widget's button labelled ``text``."""
    [button] = [b for b in widget.findChildren(QPushButton) if b.text() == text]
    button.click()


def open_viewer(layers, widget: str = "Segment", height: int = 950):
    """A shown viewer of 1500 x ``height`` with ``layers`` and the fmscope widget ``widget`` (its name in the
    Plugins menu) docked by napari's plugin machinery, as the menu does (idle)."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, height)
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    _dock, opened = viewer.window.add_plugin_dock_widget("fmscope", widget)
    wait(opened)
    return viewer, opened


def nuclei() -> None:
    viewer, widget = open_viewer(sample_data.nuclei())
    truth = viewer.layers["nuclei ground truth"].data
    for box in list(samples.boxes_from_labels(truth).values())[:12]:
        click(widget, "New (n)")
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
    click(widget, "Propagate (p)")
    wait(widget)
    viewer.camera.zoom *= 1.6
    viewer.camera.center = (
        0,
        *(np.array(np.nonzero(truth[z])).mean(axis=1) * viewer.layers["ct_lung_volume"].scale[1:]),
    )
    viewer.dims.set_point(0, (z + 1) * viewer.layers["ct_lung_volume"].scale[0])
    for _ in range(20):
        QApplication.processEvents()
    wait(widget)
    viewer.screenshot(str(DOCS / "napari_ct_propagated.png"), canvas_only=False)
    widget.worker.shutdown()
    viewer.close()


def propagate_and_shoot(viewer, panel, frame: int, name: str) -> None:
    """Propagate the Track panel's objects, show ``frame`` whole, save docs/``name``, close."""
    click(panel, "Propagate (Shift-P)")
    wait(panel, timeout=1800)
    viewer.dims.set_point(0, frame)
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(str(DOCS / name), canvas_only=False)
    panel.worker.shutdown()
    viewer.close()


def hela_tracking() -> None:
    """The Track panel on the first 10 frames of the HeLa time-lapse: 4 nuclei boxed on frame 0, propagated."""
    import tifffile

    from fmscope.napari.track_panel import BOXES as TRACK_BOXES

    case = samples.get_case("hela_timelapse")
    frames = 10
    images, tracks = (tifffile.imread(path)[:frames, :256, :256] for path in (case.image_path, case.labels_path))
    viewer, panel = open_viewer(
        [
            (
                images,
                {"name": "hela", "contrast_limits": (np.percentile(images, 1), np.percentile(images, 99.8))},
                "image",
            )
        ],
        "Track",
    )
    ids = [i for i in np.unique(tracks[0]) if i and all((tracks[t] == i).any() for t in range(frames))]
    for track in ids[:4]:
        click(panel, "New (Shift-N)")
        viewer.layers[TRACK_BOXES].add_rectangles(rectangle(samples.boxes_from_labels(tracks[0] == track)[1], 0))
        wait(panel)
    propagate_and_shoot(viewer, panel, frames - 1, "napari_hela_tracking.png")


def echo_tracking() -> None:
    """The Track panel on the echo cine clip (read lazily): the left ventricle boxed on frame 0, propagated."""
    from fmscope.napari.track_panel import BOXES as TRACK_BOXES

    viewer, panel = open_viewer(sample_data.echo_cine(), "Track")
    viewer.dims.set_point(0, 0)
    wait(panel)
    viewer.layers[TRACK_BOXES].add_rectangles(rectangle((150, 55, 205, 130), 0))
    wait(panel)
    propagate_and_shoot(viewer, panel, 12, "napari_echo_tracking.png")


def spatial_visium() -> None:
    viewer, widget = open_viewer((), "Spatial omics", 1000)
    widget.open_slide(str(samples.sample_data_dir() / "visium_mouse_brain"))
    wait(widget)
    widget.n_domains_spin.setValue(8)
    click(widget, "Compute domains")
    wait(widget)
    viewer.layers[-2].visible = False  # the plain spots layer under the domains
    viewer.screenshot(str(DOCS / "napari_visium_domains.png"), canvas_only=False)
    widget.worker.shutdown()
    viewer.close()


def spatial_finetune() -> None:
    viewer, widget = open_viewer(sample_data.semi_synthetic_tissue(), "Spatial omics", 1000)
    slide = widget.slide
    widget.n_domains_spin.setValue(4)
    click(widget, "Compute domains")
    wait(widget)
    layer = widget.add_annotation_layer()
    labels = annotate_blocks(slide.adata)
    yx = slide.adata.obsm["spatial"][:, ::-1]
    names = {}
    for code, name in enumerate(sorted(set(labels) - {""}), start=1):
        names[code] = f"domain {name}"
        members = yx[labels == name]
        for part in (
            members[members[:, 1] < np.median(members[:, 1])],
            members[members[:, 1] >= np.median(members[:, 1])],
        ):
            low = np.floor((part.min(axis=0) - layer.translate) / layer.scale).astype(int)
            high = np.ceil((part.max(axis=0) - layer.translate) / layer.scale).astype(int)
            layer.data[low[0] : high[0] + 1, low[1] : high[1] + 1] = code
    layer.refresh()
    widget.names_edit.setText(", ".join(f"{code}: {name}" for code, name in names.items()))
    widget.head_edit.setText(str(Path(tempfile.mkdtemp()) / "head.pt"))
    click(widget, "Train head")
    wait(widget)
    for name in ("semi_synthetic_tissue cells", "fmscope domains", "fmscope uncertainty"):
        viewer.layers[name].visible = False
    layer.opacity = 0.6
    viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))
    viewer.reset_view()
    viewer.screenshot(str(DOCS / "napari_finetune.png"), canvas_only=False)
    widget.worker.shutdown()
    viewer.close()


def image_expression() -> None:
    viewer, widget = open_viewer((), "Spatial omics", 1000)
    widget.open_slide(str(samples.sample_data_dir() / "visium_mouse_brain"))
    wait(widget)
    widget.image_expression.model_edit.setText(str(Path(tempfile.mkdtemp()) / "brain.pt"))
    click(widget, "Train on this slide")
    wait(widget, timeout=900)
    viewer.layers[1].visible = False  # the plain spots layer under the predicted grid
    viewer.screenshot(str(DOCS / "napari_image_expression.png"), canvas_only=False)
    widget.worker.shutdown()
    viewer.close()


SHOTS = {
    "nuclei": nuclei,
    "ct_volume": ct_volume,
    "hela_tracking": hela_tracking,
    "echo_tracking": echo_tracking,
    "visium": spatial_visium,
    "finetune": spatial_finetune,
    "image_expression": image_expression,
}

if __name__ == "__main__":
    DOCS.mkdir(exist_ok=True)
    for name in sys.argv[1:] or SHOTS:
        SHOTS[name]()
    print(f"screenshots written to {DOCS}")
