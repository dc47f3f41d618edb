"""The video / cine DICOM reader in a real viewer (pytest-qt, Xvfb): lazy layers that decode only the
frames shown, the echo cine sample, tracking a lazy layer, and the NIfTI export with geometry."""

from __future__ import annotations

import gc

import av
import numpy as np
import psutil
import pydicom
import pytest
import SimpleITK as sitk
from napari.utils.notifications import notification_manager
from napari_helpers import click, wait_idle

from fmscope.errors import FmscopeError
from fmscope.imaging import io
from fmscope.imaging.prompts import box_from_mask
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.imaging.tracking.frames import FrameSource
from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker
from fmscope.napari import sample_data
from fmscope.napari.track_panel import BOXES, LABELS
from fmscope.napari.video_reader import LazyFrames, get_video_reader
from fmscope.samples import get_case, sample_data_dir

ECHO = sample_data_dir() / "echo_a4c_cine.dcm"  # (30, 240, 320, 3) uint8, 30 fps


def count_reads(data: LazyFrames) -> list[int]:
    """Record every frame index the layer's FrameSource is asked to read (wraps its ``_read``)."""
    reads, read = [], data.source._read

    def counted(index):
        reads.append(index)
        return read(index)

    data.source._read = counted
    return reads


def show(viewer, qtbot, frame: int) -> None:
    viewer.dims.set_current_step(0, frame)
    qtbot.wait(5)


def write_video(path, n: int, side: int = 64, fps: int = 25) -> None:
    codec = "mpeg4" if "mpeg4" in av.codecs_available else "libx264"
    yy, xx = np.mgrid[:side, :side]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for t in range(n):
            grey = ((xx * 3 + yy + 7 * t) % 256).astype(np.uint8)
            rgb = np.repeat(grey[..., None], 3, axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_sample_cine_opens_lazily_and_decodes_only_the_frames_shown(make_napari_viewer, open_widget, qtbot):
    viewer = make_napari_viewer()
    [(data, kwargs, kind)] = sample_data.echo_cine()
    assert isinstance(data, LazyFrames) and data.shape == (30, 240, 320, 3) and data.dtype == np.uint8
    assert kwargs["metadata"]["fmscope_axis"] == "time" and kwargs["metadata"]["fmscope_source"] == str(ECHO)
    reads = count_reads(data)
    layer = viewer.add_image(data, **kwargs)
    assert layer.rgb and layer.data is data
    shown = {0, viewer.dims.current_step[0]}  # napari slices frame 0 as it adds the layer, then the middle one
    for frame in (7, 19, 29):
        show(viewer, qtbot, frame)
        shown.add(frame)
    assert set(reads) <= shown and len(reads) <= 2 * len(shown)  # about the frames shown, never all 30
    assert np.array_equal(data[19], open_frames(ECHO)[19])

    panel = open_widget(viewer, "Track")  # the sample is a time series for the Track panel
    assert panel.axis_combo.currentText() == "time" and viewer.layers[LABELS].data.shape == (30, 240, 320)
    assert len(reads) <= 2 * len(shown)  # choosing the layer decoded nothing


def test_reader_is_registered_and_refuses_other_files(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(ECHO), plugin="fmscope")  # through the npe2 manifest
    assert isinstance(layer.data, LazyFrames) and layer.metadata["fmscope_fps"] == pytest.approx(30, rel=1e-3)
    assert layer.name == "echo_a4c_cine"

    one = pydicom.dcmread(ECHO)  # a single-frame DICOM is not a cine clip
    one.NumberOfFrames = 1
    one.save_as(tmp_path / "one.dcm")
    for path in (
        get_case("nuclei").image_path,
        sample_data_dir() / "ct_lung_volume.nrrd",
        tmp_path / "one.dcm",
        tmp_path / "missing.mp4",
    ):
        assert get_video_reader(str(path)) is None
    assert get_video_reader([str(ECHO)]) is None


def test_a_corrupt_video_gives_a_message_not_a_traceback(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    messages = []

    def record(notification):
        messages.append(str(notification.message))

    notification_manager.notification_ready.connect(record)
    try:
        assert viewer.open(str(bad), plugin="fmscope") == []
    finally:
        notification_manager.notification_ready.disconnect(record)
    assert not len(viewer.layers)
    assert any("Cannot read" in m and "noise.mp4" in m and "Fix:" in m for m in messages), messages


class BrokenAfter(FrameSource):
    """Grey 8x8 frames of value ``index``; frames from ``bad`` on cannot be decoded."""

    def __init__(self, n: int, bad: int) -> None:
        self.name, self.n_frames, self.bad, self.kind = "broken", n, bad, "video"
        self._set_geometry(self._read(0))

    def _read(self, index):
        if index >= self.bad:
            raise FmscopeError(f"broken is corrupt at frame {index}.", "Re-encode it.")
        return np.full((8, 8), index, np.uint8)


def test_indexing_and_an_undecodable_frame():
    errors = []
    data = LazyFrames(BrokenAfter(6, bad=4), on_error=errors.append)
    assert data.shape == (6, 8, 8) and data.ndim == 3 and data.dtype == np.uint8 and len(data) == 6
    assert data[2, 1:3].shape == (2, 8) and data[-3][0, 0] == 3 and data[:4, ..., 0].shape == (4, 8)
    assert [int(f[0, 0]) for f in data[1:4]] == [1, 2, 3] and data[3::-2].shape == (2, 8, 8)
    with pytest.raises(IndexError):
        data[6]
    assert not data[4].any() and not data[5].any() and not data[4].any()  # shown blank, each one reported once
    assert [str(e).split(".")[0] for e in errors] == ["broken is corrupt at frame 4", "broken is corrupt at frame 5"]
    assert data.errors == {4: errors[0], 5: errors[1]}
    for bulk in (lambda: data[3:6], lambda: np.asarray(data), lambda: data.frame(5)):  # data, not display: raise
        with pytest.raises(FmscopeError, match="corrupt at frame 4|corrupt at frame 5"):
            bulk()
    with pytest.raises(FmscopeError, match="corrupt at frame 4"):  # no handler: the error itself
        LazyFrames(BrokenAfter(6, bad=4))[4]


@pytest.mark.slow
def test_a_long_video_keeps_memory_flat(make_napari_viewer, qtbot, tmp_path):
    path = tmp_path / "long.mp4"
    write_video(path, 2000)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="fmscope")
    data = layer.data
    assert isinstance(data, LazyFrames) and data.shape == (2000, 64, 64, 3)
    reads = count_reads(data)
    for frame in range(20):  # warm up (Qt, GL and napari caches)
        show(viewer, qtbot, frame)
    gc.collect()
    before = psutil.Process().memory_info().rss
    for frame in range(20, 220):
        show(viewer, qtbot, frame)
        assert len(data.source._cache) <= data.source._cache_frames  # decoded frames held stay bounded
    gc.collect()
    grown_mb = (psutil.Process().memory_info().rss - before) / 2**20
    print(f"\nRSS growth over 200 frames of a 2,000-frame video: {grown_mb:.1f} MB")
    assert grown_mb < 50
    assert len(set(reads)) <= 230 and max(reads) < 230  # only the frames shown were read
    assert (
        np.abs(
            data[150][..., 0].astype(int) - (np.mgrid[:64, :64][1] * 3 + np.mgrid[:64, :64][0] + 7 * 150) % 256
        ).mean()
        < 20
    )


@pytest.mark.slow
def test_a_lazy_layer_is_tracked_from_its_file(make_napari_viewer, open_widget, qtbot, segmenter):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(ECHO), plugin="fmscope")
    reads = count_reads(layer.data)
    panel = open_widget(viewer, "Track")
    box = np.array([120.0, 60.0, 200.0, 150.0])  # x0, y0, x1, y1 around the left ventricle
    x0, y0, x1, y1 = box
    viewer.layers[BOXES].add_rectangles(np.array([[0, y0, x0], [0, y0, x1], [0, y1, x1], [0, y1, x0]], float))
    wait_idle(qtbot, panel)
    panel.last_spin.setValue(2)
    panel.direction_combo.setCurrentText("forward")
    click(qtbot, panel, "Propagate (Shift-P)")
    wait_idle(qtbot, panel)
    assert type(panel.session.frames).__name__ == "DicomFrames"  # its own source, not the layer's array
    assert panel.session.frames is not layer.data.source
    source = open_frames(ECHO)
    reference = TrackingSession(source, backend=LiteMedSAMTracker(source, segmenter=segmenter))
    reference.add_box(0, 1, box)
    list(reference.propagate("forward", (0, 2)))
    labels = viewer.layers[LABELS].data
    assert np.array_equal(labels, reference.labels()) and all((labels[f] == 1).sum() > 100 for f in range(3))
    assert len(reads) <= 4  # the layer itself decoded only what was shown


def rotated_volume(path) -> io.Volume:
    """A crop of the sample CT written as NIfTI with anisotropic spacing, an offset and a rotation."""
    array = io.read_volume(get_case("ct_lung_volume").image_path).array[7:12, 40:168, 40:168]
    image = sitk.GetImageFromArray(array)
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-12.5, 30.25, 101.0))
    image.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    sitk.WriteImage(image, str(path))
    return io.read_volume(path)


@pytest.mark.slow
def test_nifti_export_keeps_the_volume_geometry(make_napari_viewer, open_widget, qtbot, tmp_path):
    original = rotated_volume(tmp_path / "ct.nii.gz")
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tmp_path / "ct.nii.gz"), plugin="fmscope")
    panel = open_widget(viewer, "Track")
    assert panel.axis_combo.currentText() == "z"
    tumour = io.read_volume(get_case("ct_lung_volume").labels_path).array[9, 40:168, 40:168] > 0
    x0, y0, x1, y1 = box_from_mask(tumour).astype(float)
    viewer.layers[BOXES].add_rectangles(np.array([[2, y0, x0], [2, y0, x1], [2, y1, x1], [2, y1, x0]], float))
    wait_idle(qtbot, panel)
    labels = viewer.layers[LABELS].data
    assert (labels[2] == 1).sum() > 50
    panel.format_combo.setCurrentText("NIfTI")
    panel.export_edit.setText(str(tmp_path / "out"))
    click(qtbot, panel, "Export")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ct_labels.nii.gz", "ct_objects.csv"]
    back = io.read_volume(tmp_path / "out" / "ct_labels.nii.gz")
    assert np.array_equal(back.array, labels) and back.array.dtype == np.uint16
    assert np.allclose(back.spacing, original.spacing) and np.allclose(back.origin, original.origin)
    assert np.allclose(back.direction, original.direction, atol=1e-6)

    viewer.add_image(np.zeros((3, 32, 32), np.uint8), name="plain")  # no geometry: a message, no file
    panel.image_combo.setCurrentText("plain")
    panel.state.objects[1] = {0}
    viewer.layers[LABELS].data[0, 5:9, 5:9] = 1
    assert panel.export(tmp_path / "plain") == [] and "NIfTI export needs" in panel.status.text()
    assert not (tmp_path / "plain").exists()


def test_the_segment_panel_segments_a_video_frame_without_decoding_the_video(
    make_napari_viewer, open_widget, qtbot, tmp_path
):
    """Plugins > fmscope > Segment on a 300-frame video: its window needs no frame (uint8), no session hashes every
    frame; a box on the shown frame reads that frame (was: all 300 decoded as the panel opened)."""
    from fmscope.napari.segment_widget import BOXES as SEGMENT_BOXES
    from fmscope.napari.segment_widget import LABELS as SEGMENT_LABELS

    path = tmp_path / "clip.mp4"
    write_video(path, 300)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="fmscope")
    reads = count_reads(layer.data)
    widget = open_widget(viewer, "Segment")
    wait_idle(qtbot, widget)
    show(viewer, qtbot, 7)
    wait_idle(qtbot, widget)
    viewer.layers[SEGMENT_BOXES].add_rectangles(np.array([[7, 10, 10], [7, 10, 40], [7, 40, 40], [7, 40, 10]], float))
    wait_idle(qtbot, widget)
    assert (viewer.layers[SEGMENT_LABELS].data[7] > 0).any()
    assert len(set(reads)) <= 4 and set(reads) <= {0, 7, 149}, sorted(set(reads))  # shown frames only
