"""The napari Track panel in a real viewer (pytest-qt, Xvfb) with the real LiteMedSAM weights,
on a corner of the HeLa time-lapse, compared with the tracking engine run directly."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import tifffile
from napari_helpers import click, wait_idle
from qtpy.QtCore import QTimer

from fmscope.cli import main
from fmscope.imaging.model_file import TunedModel, trained_state, write_model_file
from fmscope.imaging.prompts import box_from_mask
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.imaging.tracking.export import tracks_data
from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker
from fmscope.napari.track_panel import BOXES, CLICKS, LABELS, TRACKS
from fmscope.samples import get_case
from fmscope.training.segmenter import TRAINED_PARTS

FRAMES, SIDE = 4, 128
NUCLEUS, NEIGHBOUR = 12, 9  # ground-truth track ids of two nuclei in the crop, both on frame 0
OTHER = 4  # another nucleus, like NUCLEUS on frames 0..2


@pytest.fixture(scope="module")
def hela():
    case = get_case("hela_timelapse")
    images = tifffile.imread(case.image_path)[:FRAMES, :SIDE, :SIDE]
    tracks = tifffile.imread(case.labels_path)[:FRAMES, :SIDE, :SIDE]
    return images, tracks


def gt_box(tracks, frame, track):
    return box_from_mask(tracks[frame] == track).astype(float)


def rectangle(box, frame):
    x0, y0, x1, y1 = box
    return np.c_[np.full(4, frame), [[y0, x0], [y0, x1], [y1, x1], [y1, x0]]].astype(float)


def engine(images, segmenter) -> TrackingSession:
    source = open_frames(images)
    return TrackingSession(source, backend=LiteMedSAMTracker(source, segmenter=segmenter))


def make_panel(make_napari_viewer, open_widget, images, name="hela"):
    """A viewer holding ``images`` with the Track panel opened from the Plugins menu."""
    viewer = make_napari_viewer()
    viewer.add_image(images, name=name)
    return viewer, open_widget(viewer, "Track")


@pytest.fixture
def hela_panel(make_napari_viewer, open_widget, hela):
    return make_panel(make_napari_viewer, open_widget, hela[0])


@pytest.mark.slow
def test_two_boxes_on_one_frame_are_tracked_like_fmscope_track(make_napari_viewer, open_widget, qtbot, hela, tmp_path):
    """Issue 24: opened from the Plugins menu, two objects boxed on the middle of 3 frames, New between them,
    Propagate (both directions): both are tracked, voxel for voxel what ``fmscope track`` gives for the same boxes."""
    frames = 3
    images, tracks = hela[0][:frames], hela[1][:frames]
    viewer, panel = make_panel(make_napari_viewer, open_widget, images)
    boxes = [gt_box(tracks, 1, track) for track in (NUCLEUS, OTHER)]
    viewer.layers[BOXES].add_rectangles(rectangle(boxes[0], 1))
    wait_idle(qtbot, panel)
    click(qtbot, panel, "New (Shift-N)")
    viewer.layers[BOXES].add_rectangles(rectangle(boxes[1], 1))
    wait_idle(qtbot, panel)
    assert [row[0] for row in panel.object_rows()] == [1, 2]
    assert panel.direction_combo.currentText() == "both"
    click(qtbot, panel, "Propagate (Shift-P)")
    wait_idle(qtbot, panel)
    assert panel.status.text() == "Propagated."
    assert panel.object_rows() == [(1, f"0..{frames - 1}", "1"), (2, f"0..{frames - 1}", "1")]

    path, out = tmp_path / "hela.tif", tmp_path / "labels.tif"
    tifffile.imwrite(path, images, photometric="minisblack", metadata={"axes": "TYX"})
    argv = ["track", str(path), "--frame", "1", "--direction", "both", "-o", str(out)]  # the panel's device
    for box in boxes:
        argv += ["--box", *map(str, box)]
    assert main(argv) == 0
    expected = tifffile.imread(out)
    assert all((expected[f] == obj).any() for f in range(frames) for obj in (1, 2))
    assert np.array_equal(viewer.layers[LABELS].data, expected)


@pytest.mark.slow
@pytest.mark.serial
def test_box_propagate_correct_undo_and_export(hela_panel, qtbot, hela, segmenter, tmp_path):
    viewer, panel = hela_panel
    images, tracks = hela
    layer = viewer.layers[LABELS]
    box = gt_box(tracks, 1, NUCLEUS)
    viewer.layers[BOXES].add_rectangles(rectangle(box, 1))  # a box on frame 1
    wait_idle(qtbot, panel)
    reference = engine(images, segmenter)
    prompted = reference.add_box(1, 1, box)
    assert np.array_equal(layer.data[1], prompted.labels) and (layer.data == 1).sum() > 100
    assert not layer.data[[0, 2, 3]].any()
    after_prompt = layer.data.copy()

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    started = time.perf_counter()
    click(qtbot, panel, "Propagate (Shift-P)")
    wait_idle(qtbot, panel)
    frame_ms = (time.perf_counter() - started) * 1000 / FRAMES
    timer.stop()
    stall_ms = np.diff(ticks).max() * 1000
    print(f"\nlongest UI stall while propagating {FRAMES} frames: {stall_ms:.0f} ms ({frame_ms:.0f} ms per frame)")
    # the Qt thread never waited on the model: a model call on it would stall it for a whole frame
    assert len(ticks) > 20 and stall_ms < 0.25 * frame_ms
    list(reference.propagate("both", (0, FRAMES - 1)))
    expected = reference.labels()
    assert np.array_equal(layer.data, expected)  # voxel for voxel what the engine gives
    assert all(expected[f].any() for f in range(FRAMES))
    assert panel.object_rows() == [(1, f"0..{FRAMES - 1}", "1")]
    assert np.array_equal(viewer.layers[TRACKS].data[:, 1], np.arange(FRAMES))
    propagated = layer.data.copy()

    correction = box + [3, 3, 3, 3]  # the selected object, corrected on frame 2
    viewer.layers[BOXES].add_rectangles(rectangle(correction, 2))
    wait_idle(qtbot, panel)
    reference.add_box(2, 1, correction)
    click(qtbot, panel, "Propagate (Shift-P)")
    wait_idle(qtbot, panel)
    assert [r.frame for r in reference.propagate("both", (0, FRAMES - 1))] == [2, 3]
    corrected = layer.data.copy()
    assert np.array_equal(corrected, reference.labels())
    assert np.array_equal(corrected[:2], propagated[:2])  # only frames from the correction on changed
    assert not np.array_equal(corrected[2], propagated[2])
    assert panel.object_rows()[0][2] == "1, 2"

    click(qtbot, panel, "Undo (Shift-U)")  # the re-propagation
    click(qtbot, panel, "Undo (Shift-U)")  # the correction prompt
    assert np.array_equal(layer.data, propagated)
    click(qtbot, panel, "Undo (Shift-U)")  # the first propagation
    assert np.array_equal(layer.data, after_prompt)
    wait_idle(qtbot, panel)
    assert np.array_equal(panel.session.labels(), after_prompt)  # the engine's labels follow

    click(qtbot, panel, "Undo (Shift-U)")  # the box that started the object: the engine forgets it too
    wait_idle(qtbot, panel)
    assert not layer.data.any() and not panel.state.objects and not panel.session.prompts
    assert not panel.session.labels().any() and TRACKS not in viewer.layers
    click(qtbot, panel, "Undo (Shift-U)")
    assert "Nothing to undo" in panel.status.text()


@pytest.mark.slow
def test_two_objects_hand_painting_cancel_and_export(hela_panel, qtbot, hela, tmp_path):
    viewer, panel = hela_panel
    images, tracks = hela
    layer = viewer.layers[LABELS]
    hand = np.zeros(layer.data.shape, bool)
    x0, y0, x1, y1 = gt_box(tracks, 0, NEIGHBOUR).astype(int)
    hand[:, y0 : y0 + 8, x0 : x1 + 1] = True  # the top of the neighbour, painted by hand as 50
    layer.data[hand] = 50
    viewer.layers[BOXES].add_rectangles(rectangle(gt_box(tracks, 0, NUCLEUS), 0))
    wait_idle(qtbot, panel)
    click(qtbot, panel, "New (Shift-N)")
    viewer.layers[BOXES].add_rectangles(rectangle(gt_box(tracks, 0, NEIGHBOUR), 0))
    wait_idle(qtbot, panel)
    assert sorted(panel.state.objects) == [51, 52]  # new ids, never the hand-painted one
    assert (layer.data[0] == 51).any() and (layer.data[0] == 52).any()
    panel.objects_table.selectRow(0)  # object 51 selected in the list: a click refines it
    assert panel.state.selected == 51
    ys, xs = np.nonzero(layer.data[0] == 51)
    viewer.layers[CLICKS].add([0, ys.mean(), xs.mean()])
    wait_idle(qtbot, panel)
    refined = panel.session.prompts[51][0]
    assert refined.box is not None and refined.points.tolist() == [[xs.mean(), ys.mean()]]
    assert sorted(panel.state.objects) == [51, 52]
    assert np.array_equal(np.where(hand[0], 0, layer.data[0]), np.where(hand[0], 0, panel.session.frame_labels(0)))

    seen = []

    def cancel_on_first(token, result):
        if not isinstance(result, dict):
            seen.append(result.done)
            panel.cancel()

    before, engine_before = layer.data.copy(), panel.session.labels()
    panel.frame_ready.connect(cancel_on_first)
    panel.direction_combo.setCurrentText("forward")
    click(qtbot, panel, "Propagate (Shift-P)")
    wait_idle(qtbot, panel)
    panel.frame_ready.disconnect(cancel_on_first)
    assert 1 <= max(seen) <= 2 < FRAMES  # stopped within one frame of the Cancel
    assert "cancelled" in panel.status.text()
    # a cancelled job writes nothing: the frames it painted are taken back, in the layer and in the engine
    assert np.array_equal(layer.data, before) and np.array_equal(panel.session.labels(), engine_before)
    assert not engine_before[1:].any()

    click(qtbot, panel, "Propagate (Shift-P)")
    wait_idle(qtbot, panel)
    engine_labels = panel.session.labels()
    assert engine_labels[1:].any()  # the second run tracked the frames the Cancel took back
    assert np.array_equal(np.where(hand, 0, layer.data), np.where(hand, 0, engine_labels))
    assert np.array_equal(layer.data[hand], np.full(hand.sum(), 50))  # hand painting never overwritten
    for obj in (51, 52):  # objects never overwrite each other: each is exactly its engine pixels
        assert np.array_equal(layer.data == obj, (engine_labels == obj) & ~hand)

    assert np.allclose(viewer.layers[TRACKS].data, tracks_data(np.where(hand, 0, layer.data)))
    written = panel.export(tmp_path)
    assert [p.name for p in written] == ["hela_labels.tif", "hela_objects.csv", "hela_ctc"]
    exported = tifffile.imread(written[0])
    assert np.array_equal(exported, np.where(hand, 0, layer.data))  # tracked objects only
    with open(written[1], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(int(r["frame"]), int(r["object"])) for r in rows} == {
        (f, o) for f in range(FRAMES) for o in (51, 52) if (exported[f] == o).any()
    }
    track_rows = (written[2] / "res_track.txt").read_text().split("\n")
    assert track_rows[0].split()[:2] == ["51", "0"]
    assert np.array_equal(tifffile.imread(written[2] / "mask003.tif"), exported[3])


def test_bad_input_gives_a_message_and_changes_nothing(make_napari_viewer, open_widget, qtbot, hela):
    images, _ = hela
    viewer = make_napari_viewer()
    viewer.add_image(images[0], name="one frame")
    panel = open_widget(viewer, "Track")
    assert "spatial dimensions" in panel.status.text()  # a 2D image
    assert [layer.name for layer in viewer.layers] == ["one frame"]

    viewer.add_image(images, name="hela")
    panel.image_combo.setCurrentText("hela")
    wait_idle(qtbot, panel)  # the session look (fmscope.napari.session_panel) loads the model
    layer = viewer.layers[LABELS]
    panel.model_combo.setCurrentText("medsam2")  # no checkpoint
    viewer.layers[BOXES].add_rectangles(rectangle([10, 10, 40, 40], 0))
    assert "needs its checkpoint" in panel.status.text()
    panel.checkpoint_edit.setText("/nonexistent/MedSAM2_latest.pt")
    viewer.layers[CLICKS].add([0, 20, 20])
    assert "not found" in panel.status.text()
    click(qtbot, panel, "Propagate (Shift-P)")
    assert panel.worker.idle and not layer.data.any() and not panel.state.objects

    panel.model_combo.setCurrentText("/nonexistent/tuned.pt")
    viewer.layers[CLICKS].add([0, 22, 22])
    assert "nor a model file" in panel.status.text()
    assert panel.worker.idle and not layer.data.any() and not panel.state.objects

    panel.model_combo.setCurrentText("litemedsam")
    viewer.layers[BOXES].scale = (1, 2, 2)  # a box on another grid
    viewer.layers[BOXES].add_rectangles(rectangle([10, 10, 40, 40], 0))
    assert "not on the grid" in panel.status.text()
    assert panel.worker.idle and not layer.data.any() and not panel.state.objects
    click(qtbot, panel, "Undo (Shift-U)")
    assert "Nothing to undo" in panel.status.text()
    assert panel.export("/tmp") == [] and "Nothing to export" in panel.status.text()


@pytest.mark.slow
def test_volume_slices_are_tracked_like_the_engine(make_napari_viewer, open_widget, qtbot, segmenter, tmp_path):
    from fmscope.imaging import io

    case = get_case("ct_lung_volume")
    volume = io.read_volume(case.image_path).array[7:12, 40:168, 40:168]  # (Z, Y, X) around the tumour
    tumour = io.read_volume(case.labels_path).array[7:12, 40:168, 40:168] > 0
    viewer, panel = make_panel(make_napari_viewer, open_widget, volume, "volume")
    panel.axis_combo.setCurrentText("z")
    box = box_from_mask(tumour[2]).astype(float)
    viewer.layers[BOXES].add_rectangles(rectangle(box, 2))
    wait_idle(qtbot, panel)
    click(qtbot, panel, "Propagate (Shift-P)")
    wait_idle(qtbot, panel)
    source = open_frames(volume, kind="volume")
    reference = TrackingSession(source, backend=LiteMedSAMTracker(source, segmenter=segmenter))
    reference.add_box(2, 1, box)
    list(reference.propagate("both"))
    layer = viewer.layers[LABELS]
    assert np.array_equal(layer.data, reference.labels()) and (layer.data[2] == 1).sum() > 50
    written = panel.export(tmp_path)
    assert [p.name for p in written] == ["volume_labels.tif", "volume_objects.csv"]  # no CTC for slices
    assert np.array_equal(tifffile.imread(written[0]), layer.data)


def test_samples_open_with_their_frame_axis(make_napari_viewer, open_widget):
    from fmscope.napari import sample_data

    viewer = make_napari_viewer()
    for data, kwargs, kind in sample_data.hela_timelapse():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    panel = open_widget(viewer, "Track")
    assert panel.image_combo.currentText() == "hela_timelapse" and panel.axis_combo.currentText() == "time"
    assert viewer.layers[LABELS].data.shape == (20, 512, 512) and panel.last_spin.value() == 19
    for data, kwargs, kind in sample_data.ct_lung_volume():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    panel.image_combo.setCurrentText("ct_lung_volume")
    assert panel.axis_combo.currentText() == "z" and viewer.layers[LABELS].data.shape == (20, 192, 192)
    assert np.allclose(viewer.layers[BOXES].scale, viewer.layers["ct_lung_volume"].scale)


@pytest.mark.slow
def test_a_model_file_is_a_model_choice(hela_panel, qtbot, hela, segmenter, tmp_path):
    """A file from train-segmenter typed in 'model' tracks with that segmenter (here the base
    weights, so the labels are the embedded model's)."""
    viewer, panel = hela_panel
    images, tracks = hela
    path = tmp_path / "tuned.pt"
    write_model_file(
        path,
        TunedModel(
            "litemedsam",
            "litemedsam",
            segmenter.model.weights_sha256,
            TRAINED_PARTS,
            trained_state(segmenter.model.net, TRAINED_PARTS),
        ),
    )
    panel.model_combo.setCurrentText(str(path))
    box = gt_box(tracks, 0, NUCLEUS)
    viewer.layers[BOXES].add_rectangles(rectangle(box, 0))
    wait_idle(qtbot, panel)
    session = panel._session[1]
    assert session.backend.segmenter.model.tuned is not None
    assert np.array_equal(viewer.layers[LABELS].data[0], engine(images, segmenter).add_box(0, 1, box).labels)
