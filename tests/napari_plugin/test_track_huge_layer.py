"""The Track panel on a huge multiscale layer (issue 27), in a real napari viewer with the real LiteMedSAM weights:
frames of 20,000 x 20,000 pixels (zarr levels holding the real HeLa frames) are tracked in a window around the first
box; the labels layer covers the window only, the labels equal the engine's on the eagerly cropped frames, full
resolution is read only inside the window (a wrapper around its store counts the chunks asked for), and the process
grows by far less than one whole frame (800 MB) while propagating."""

from __future__ import annotations

import gc

import numpy as np
import psutil
import pytest
import tifffile
import zarr
from counting_store import CountingStore
from napari_helpers import wait_idle
from zarr.storage import MemoryStore

from fmscope.imaging.tracking import TrackingSession
from fmscope.imaging.tracking.frames import ArrayFrames
from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker
from fmscope.napari.track_panel import BOXES, LABELS, TRACKS
from fmscope.samples import sample_data_dir

pytestmark = pytest.mark.slow

FRAMES, SIDE, CHUNK = 2, 20_000, 512
OFFSET = (10_100, 7_300)  # (y, x) of the 512 x 512 HeLa frames in the huge ones


def rectangle(box, frame):
    x0, y0, x1, y1 = box
    return np.c_[np.full(4, frame), [[y0, x0], [y0, x1], [y1, x1], [y1, x0]]].astype(float)


@pytest.fixture(scope="module")
def hela():
    folder = sample_data_dir() / "hela_timelapse"
    return tifffile.imread(folder / "images.tif")[:FRAMES], tifffile.imread(folder / "tracks.tif")[:FRAMES]


def pyramid(images: np.ndarray, store) -> list:
    """(FRAMES, SIDE / 2**k, SIDE / 2**k) zarr levels, the background everywhere but the pasted frames."""
    background, levels, factor = int(np.percentile(images, 1)), [], 1
    while SIDE // factor >= 512:
        side = SIDE // factor
        level = zarr.create_array(
            store=store if factor == 1 else MemoryStore(),
            shape=(FRAMES, side, side),
            chunks=(1, CHUNK, CHUNK),
            dtype=images.dtype,
            fill_value=background,
        )
        part = images[:, ::factor, ::factor]
        y, x = OFFSET[0] // factor, OFFSET[1] // factor
        level[:, y : y + part.shape[1], x : x + part.shape[2]] = part
        levels.append(level)
        factor *= 2
    return levels


def test_track_panel_on_a_20k_multiscale_layer_tracks_in_a_window(
    make_napari_viewer, open_widget, qtbot, hela, tmp_path
):
    images, tracks = hela
    ys, xs = np.nonzero(tracks[0] == tracks[0][260, 250] if tracks[0][260, 250] else tracks[0] == tracks[0].max())
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], float) + np.array([OFFSET[1], OFFSET[0]] * 2)
    store = CountingStore(MemoryStore())
    levels = pyramid(images, store)
    viewer = make_napari_viewer()
    viewer.add_image(levels, multiscale=True, name="huge", contrast_limits=(int(images.min()), int(images.max())))
    panel = open_widget(viewer, "Track")
    assert panel.reads_on_demand() and LABELS not in viewer.layers  # no dense (2, 20k, 20k) labels
    store.keys.clear()

    viewer.layers[BOXES].add_rectangles(rectangle(box, 0))
    wait_idle(qtbot, panel)
    layer = viewer.layers[LABELS]
    y0, x0, y1, x1 = panel._window
    assert layer.data.shape == (FRAMES, 1024, 1024) and (y1 - y0, x1 - x0) == (1024, 1024)
    assert np.allclose(layer.translate, [0, y0, x0]) and (layer.data[0] == 1).sum() > 100
    gc.collect()
    before = psutil.Process().memory_info().rss  # the model loaded (at the box)
    panel.propagate()
    wait_idle(qtbot, panel)
    grown = (psutil.Process().memory_info().rss - before) / 2**20

    reads = {key for key in store.keys if key.startswith("c/")}
    window_chunks = {
        f"c/{t}/{row}/{col}"
        for t in range(FRAMES)
        for row in range(y0 // CHUNK, (y1 - 1) // CHUNK + 1)
        for col in range(x0 // CHUNK, (x1 - 1) // CHUNK + 1)
    }
    assert reads and reads <= window_chunks  # full resolution read in the window only
    crop = ArrayFrames(np.asarray(levels[0][:, y0:y1, x0:x1]))
    reference = TrackingSession(crop, backend=LiteMedSAMTracker(crop, segmenter=panel.session.backend.segmenter))
    reference.add_box(0, 1, box - np.array([x0, y0] * 2))
    list(reference.propagate("forward"))
    np.testing.assert_array_equal(layer.data, reference.labels())
    assert (layer.data[1] == 1).sum() > 100
    print(f"\nprocess grew {grown:.0f} MB propagating through {FRAMES} frames of {SIDE} x {SIDE} in a window")
    assert grown < 300  # one whole frame is 800 MB

    assert np.allclose(viewer.layers[TRACKS].translate, layer.translate)  # the tracks drawn on the window too
    written = panel.export(tmp_path)  # named after the window: its pixels are the window's
    assert [path.name for path in written[:2]] == [
        f"huge_window_y{y0}_x{x0}_labels.tif",
        f"huge_window_y{y0}_x{x0}_objects.csv",
    ]
    np.testing.assert_array_equal(tifffile.imread(written[0]), layer.data)

    outside = box + 3000  # another object, outside the window: refused, nothing changes
    labels_before = layer.data.copy()
    viewer.layers[BOXES].add_rectangles(rectangle(outside, 0))
    wait_idle(qtbot, panel)
    assert "leaves the tracking window" in panel.status.text()
    np.testing.assert_array_equal(layer.data, labels_before)
