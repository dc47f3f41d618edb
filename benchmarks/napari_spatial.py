"""napari at slide scale: a synthetic slide of N cells (default 1M) opened through the Spatial widget.

Prints the time to open it (read + rasterise + layers), the process's peak memory, and the
frame time while panning (each frame drawn in full with ``SceneCanvas.render``), for fmscope's
rasterised domains layer and, for comparison, the same cells as one napari Points layer.
Run under a display: ``xvfb-run -a .venv/bin/python benchmarks/napari_spatial.py [--cells N]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from fmscope.napari.slide_layers import category_colours, sorted_names, yx_um
from fmscope.napari.spatial_widget import DOMAINS
from fmscope.omics.synthetic import large_synthetic_slide


def pan_frames(viewer: napari.Viewer, extent_um: float, frames: int = 30) -> np.ndarray:
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    viewer.camera.zoom = viewer.camera.zoom * 4
    canvas.render()
    times = []
    for step in range(frames):
        position = extent_um * (0.2 + 0.6 * step / frames)
        viewer.camera.center = (0, position, position)
        started = time.perf_counter()
        canvas.render()
        times.append(time.perf_counter() - started)
    return np.array(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--skip-points", action="store_true", help="do not time the plain Points comparison")
    args = parser.parse_args()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    _dock, widget = viewer.window.add_plugin_dock_widget("fmscope", "Spatial omics")  # as Plugins > fmscope opens it
    slide_data = large_synthetic_slide(args.cells)
    extent = float(slide_data.obsm["spatial"].max())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "slide.h5ad"
        slide_data.write_h5ad(path)
        del slide_data
        started = time.perf_counter()
        widget.open_slide(str(path))
        while not widget.worker.idle:
            QApplication.processEvents()
            time.sleep(0.005)
        QApplication.processEvents()
        opened = time.perf_counter() - started
    frames = pan_frames(viewer, extent)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.cells:,} cells: open {opened:.1f} s (read h5ad + raster + layers), peak memory {peak:.0f} MB, "
        f"domains layer {viewer.layers[DOMAINS]._type_string} {viewer.layers[DOMAINS].data.shape}"
    )
    print(f"pan frame time, raster layers: median {np.median(frames):.1f} ms, p95 {np.percentile(frames, 95):.1f} ms")
    if not args.skip_points:
        slide = widget.slide
        for layer in list(viewer.layers):
            viewer.layers.remove(layer)
        values = slide.adata.obs["fmscope_domain"].astype(str).to_numpy()
        colours = category_colours(sorted_names(values))
        started = time.perf_counter()
        viewer.add_points(
            yx_um(slide), size=slide.cell_diameter_um, border_width=0, face_color=np.array([colours[v] for v in values])
        )
        QApplication.processEvents()
        added = time.perf_counter() - started
        points_frames = pan_frames(viewer, extent, frames=10)
        print(
            f"same cells as one Points layer: add {added:.1f} s, pan frame median {np.median(points_frames):.0f} ms "
            f"(x{np.median(points_frames) / np.median(frames):.0f} the raster)"
        )
    widget.worker.shutdown()
    viewer.close()


if __name__ == "__main__":
    main()
