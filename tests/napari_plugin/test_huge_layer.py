"""The Segment panel on a 40,000 x 40,000 multiscale OME-Zarr layer (issue 27), in a real napari viewer with the
real LiteMedSAM weights: a box on a nucleus reads only its crop, paints the same mask as on a 2,000 x 2,000 image
holding the same pixels, about as fast, the process growing by less than 500 MB, the labels a pyramid of chunks
stored only where labelled."""

from __future__ import annotations

import gc

import numpy as np
import psutil
import pytest
import zarr
from napari_helpers import wait_idle

from fmscope.imaging import label_pyramid
from fmscope.imaging.intensity import auto_intensity
from fmscope.imaging.label_pyramid import LabelPyramid
from fmscope.napari.segment_widget import BOXES, LABELS

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # a latency ratio: a neighbouring test would skew it

SIDE = 40_000
OFFSET = (20_480, 15_360)  # (y, x) of the 512 x 512 nuclei sample in the huge image
SMALL_OFFSET = (768, 768)  # and in the 2,000 x 2,000 image (offsets on the 64-pixel crop lattice: same crops)
# two nuclei of the sample (x0, y0, x1, y1), away from its borders and from each other (their own crops embedded)
BOXES_XY = (np.array([410.0, 443.0, 441.0, 466.0]), np.array([155.0, 129.0, 179.0, 153.0]))


def rectangle(box, offset):
    x0, y0, x1, y1 = box + np.array([offset[1], offset[0], offset[1], offset[0]])
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)


@pytest.fixture(scope="module")
def sample8(nuclei) -> np.ndarray:
    image = nuclei[0]
    return auto_intensity(image).to_uint8(image)


@pytest.fixture(scope="module")
def huge_zarr(tmp_path_factory, sample8):
    """A 40k x 40k OME-Zarr 0.4 pyramid (7 levels, 512-pixel chunks) on disk: the fill value everywhere but the
    chunks holding the pasted sample (a few MB on disk); its level arrays, as napari-ome-zarr hands them over."""
    store = tmp_path_factory.mktemp("huge_layer") / "huge.ome.zarr"
    group = zarr.open_group(store, mode="w", zarr_format=2)
    levels, datasets, factor = [], [], 1
    while SIDE // factor >= 512:
        side = SIDE // factor
        level = group.create_array(
            str(len(levels)), shape=(side, side), chunks=(512, 512), dtype=np.uint8, fill_value=0
        )
        part = sample8[::factor, ::factor]
        y, x = OFFSET[0] // factor, OFFSET[1] // factor
        level[y : y + part.shape[0], x : x + part.shape[1]] = part
        datasets.append(
            {"path": str(len(levels)), "coordinateTransformations": [{"type": "scale", "scale": [factor] * 2}]}
        )
        levels.append(level)
        factor *= 2
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
            "datasets": datasets,
        }
    ]
    return [zarr.open_array(store / d["path"], mode="r") for d in datasets]


def test_box_on_a_40k_multiscale_layer_costs_its_crop(make_napari_viewer, open_widget, qtbot, sample8, huge_zarr):
    small = np.zeros((2000, 2000), np.uint8)
    small[SMALL_OFFSET[0] : SMALL_OFFSET[0] + 512, SMALL_OFFSET[1] : SMALL_OFFSET[1] + 512] = sample8
    viewer = make_napari_viewer()
    viewer.add_image(small, name="small")
    widget = open_widget(viewer, "Segment")
    widget.prepare_radius = 0  # prepared crops: the own crop alone (the full set takes a minute on CPU)
    wait_idle(qtbot, widget)
    small_ms = _boxes(viewer, widget, qtbot, SMALL_OFFSET)
    small_labels = viewer.layers[LABELS].data
    expected = small_labels[SMALL_OFFSET[0] : SMALL_OFFSET[0] + 512, SMALL_OFFSET[1] : SMALL_OFFSET[1] + 512].copy()
    assert (expected == 1).sum() > 100 and (expected == 2).sum() > 100
    assert np.count_nonzero(small_labels) == np.count_nonzero(expected)

    gc.collect()
    process = psutil.Process()
    rss_before = process.memory_info().rss
    viewer.add_image(huge_zarr, name="huge", multiscale=True)
    widget.image_combo.setCurrentText("huge")
    qtbot.waitUntil(lambda: widget.worker.drained, timeout=120_000)  # the crops around the view prepared too
    labels_layer = viewer.layers[LABELS]
    assert labels_layer.multiscale and labels_layer.data.shape == (SIDE, SIDE)
    pyramid = widget.labels_data()
    assert isinstance(pyramid, LabelPyramid) and pyramid.levels[0].nchunks_initialized == 0
    segmenter = next(iter(widget._segmenters.values()))
    centre = np.array(viewer.scene.camera.center[-2:])
    assert segmenter._prepared, "prefetch prepared no crop around the view"
    for y0, x0, y1, x1 in segmenter._prepared:  # around the view's centre only, never the whole image
        assert np.hypot((y0 + y1) / 2 - centre[0], (x0 + x1) / 2 - centre[1]) < 2 * (y1 - y0) < 2000

    huge_ms = _boxes(viewer, widget, qtbot, OFFSET)
    growth_mb = (process.memory_info().rss - rss_before) / 2**20
    print(
        f"\nbox latencies: 2k {small_ms[0]:.0f} / {small_ms[1]:.0f} ms, 40k {huge_ms[0]:.0f} / {huge_ms[1]:.0f} ms "
        f"(ratios {huge_ms[0] / small_ms[0]:.2f} / {huge_ms[1] / small_ms[1]:.2f}); RSS +{growth_mb:.0f} MB"
    )
    assert "rror" not in widget.status.text(), widget.status.text()
    painted = pyramid[OFFSET[0] : OFFSET[0] + 512, OFFSET[1] : OFFSET[1] + 512]
    assert np.array_equal(painted, expected)  # the masks of the 2k image, pixel for pixel
    regions = list(pyramid.written_regions())  # only the crop's neighbourhood holds stored chunks
    assert 0 < len(regions) <= 4
    for y0, x0, y1, x1 in regions:
        assert (
            OFFSET[0] - label_pyramid.CHUNK <= y0 < OFFSET[0] + 512
            and OFFSET[1] - label_pyramid.CHUNK <= x0 < OFFSET[1] + 512
        )
    assert pyramid.levels[0].nchunks_initialized <= 4
    # each click within 2x (issue 27's bar); the second one also checks that nothing the first one started in the
    # background scales with the image (roi.lattice_neighbours enumerated the whole 40k lattice: 4.7 s)
    for huge_box, small_box in zip(huge_ms, small_ms):
        assert huge_box <= 2 * small_box, f"a box on the 40k layer: {huge_box:.0f} ms, on the 2k image {small_box:.0f}"
    assert growth_mb < 500

    widget.undo()
    assert np.array_equal(
        pyramid[OFFSET[0] : OFFSET[0] + 512, OFFSET[1] : OFFSET[1] + 512], np.where(expected == 1, 1, 0)
    )
    widget.undo()
    assert not pyramid[OFFSET[0] : OFFSET[0] + 512, OFFSET[1] : OFFSET[1] + 512].any()


def _boxes(viewer, widget, qtbot, offset) -> list[float]:
    """Draw the two boxes one after the other on the image whose sample starts at ``offset``; their latencies
    (Shapes event to painted label, ms): one encoder pass each."""
    total = []
    for box in BOXES_XY:
        viewer.layers[BOXES].add_rectangles(rectangle(box, offset))
        wait_idle(qtbot, widget)
        total.append(widget.last_latency_ms)
    return total
