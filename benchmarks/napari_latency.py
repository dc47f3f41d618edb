"""napari: time from a box added to the Shapes layer to the label painted, with a cached embedding.

Run under a display: ``xvfb-run -a .venv/bin/python benchmarks/napari_latency.py`` (``make bench``).
The image embedding is computed first (the widget prefetches the displayed slice); the first
boxes are large enough to use the whole-image embedding, as a user's organ or cell-cluster box
does. Then nucleus-sized boxes near a first small box, once the widget has prepared the zoom
crops around it in the background. Also: the time to open the widget (module import included).
"""

from __future__ import annotations

import time

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from fmscope.napari import sample_data


def wait(widget, drained: bool = False) -> None:
    while not (widget.worker.drained if drained else widget.worker.idle):
        QApplication.processEvents()
        time.sleep(0.001)
    QApplication.processEvents()


def main() -> None:
    viewer = napari.Viewer(show=True)
    for data, kwargs, kind in sample_data.nuclei():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    started = time.perf_counter()
    from fmscope.napari.segment_widget import BOXES

    _dock, widget = viewer.window.add_plugin_dock_widget("fmscope", "Segment")  # as Plugins > fmscope opens it
    print(
        f"napari: open the Segment widget (import + build; the model loads on its thread) "
        f"{(time.perf_counter() - started) * 1000:.0f} ms"
    )
    wait(widget)
    rng = np.random.default_rng(0)
    latencies = []
    for _ in range(10):
        x0, y0 = rng.integers(0, 300, size=2)
        size = rng.integers(140, 200)
        widget.new_object()
        viewer.layers[BOXES].add_rectangles(
            np.array([[y0, x0], [y0, x0 + size], [y0 + size, x0 + size], [y0 + size, x0]], dtype=float)
        )
        wait(widget)
        latencies.append(widget.last_latency_ms)
    print(
        f"napari Shapes event -> painted label (cached embedding, 512x512): median {np.median(latencies):.0f} ms, "
        f"max {np.max(latencies):.0f} ms over {len(latencies)} boxes"
    )

    def add_box(x0: float, y0: float, size: float = 24) -> None:
        widget.new_object()
        viewer.layers[BOXES].add_rectangles(
            np.array([[y0, x0], [y0, x0 + size], [y0 + size, x0 + size], [y0 + size, x0]], dtype=float)
        )

    widget.prepare_radius = 0.5  # the default: crops centred within 37.5 px (side 75 px), enough here
    add_box(200, 200)  # a first small box: the widget prepares the zoom crops around it
    wait(widget, drained=True)
    small = []
    for dx, dy in ((16, 0), (0, 16), (-16, 0), (16, 16), (-16, -16), (32, 0)):  # nucleus-sized, nearby
        add_box(200 + dx, 200 + dy)
        wait(widget)
        small.append(widget.last_latency_ms)
        wait(widget, drained=True)
    print(
        f"napari Shapes event -> painted label, 24 px boxes near a prepared small box (ROI zoom): median "
        f"{np.median(small):.0f} ms = {np.median(small) / np.median(latencies):.2f}x the whole-image boxes, "
        f"max {np.max(small):.0f} ms over {len(small)} boxes"
    )
    widget.worker.shutdown()
    viewer.close()


if __name__ == "__main__":
    main()
