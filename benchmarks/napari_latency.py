"""napari: time from a box added to the Shapes layer to the label painted, with a cached embedding.

Run under a display: ``xvfb-run -a .venv/bin/python benchmarks/napari_latency.py`` (``make bench``).
The image embedding is computed first (the widget prefetches the displayed slice); boxes are
large enough to use the whole-image embedding, as a user's organ or cell-cluster box does.
"""

from __future__ import annotations

import time

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from fmscope.napari import sample_data
from fmscope.napari.segment_widget import BOXES, SegmentWidget


def wait(widget: SegmentWidget) -> None:
    while not widget.worker.idle:
        QApplication.processEvents()
        time.sleep(0.001)
    QApplication.processEvents()


def main() -> None:
    viewer = napari.Viewer(show=True)
    for data, kwargs, kind in sample_data.nuclei():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = SegmentWidget(viewer)
    wait(widget)
    rng = np.random.default_rng(0)
    latencies = []
    for _ in range(10):
        x0, y0 = rng.integers(0, 300, size=2)
        size = rng.integers(140, 200)
        widget.new_object()
        viewer.layers[BOXES].add_rectangles(np.array([[y0, x0], [y0, x0 + size], [y0 + size, x0 + size],
                                                      [y0 + size, x0]], dtype=float))
        wait(widget)
        latencies.append(widget.last_latency_ms)
    print(f"napari Shapes event -> painted label (cached embedding, 512x512): median {np.median(latencies):.0f} ms, "
          f"max {np.max(latencies):.0f} ms over {len(latencies)} boxes")
    widget.worker.shutdown()
    viewer.close()


if __name__ == "__main__":
    main()
