"""The Track panel's recorded session (issue 29): a box, a propagation, a click correction, an undo, a hand stroke and
a split of the track (Corrections box) on a 2-frame crop of the HeLa time-lapse, opened from its TIFF as a user does;
``fmscope replay`` re-runs the tracker and equals the saved labels pixel for pixel; a new viewer resumes it (labels,
objects, engine, undo history). The same with MedSAM2 (a random-weight checkpoint in its official layout), and a
video read on demand, whose session identifies it by its file."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from napari_helpers import click, wait_idle

from fmscope.cli import main
from fmscope.imaging.prompts import box_from_mask
from fmscope.napari.track_panel import BOXES, CLICKS, LABELS
from fmscope.samples import get_case
from fmscope.session_record.journal import Journal

FRAMES, SIDE = 2, 128
NUCLEUS = 12  # a ground-truth track in the crop, on every frame


@pytest.fixture(scope="module")
def hela_tif(tmp_path_factory):
    """(path, frames, ground-truth tracks) of a (2, 128, 128) crop of the HeLa time-lapse, written as a TIFF."""
    case = get_case("hela_timelapse")
    images = tifffile.imread(case.image_path)[:FRAMES, :SIDE, :SIDE]
    tracks = tifffile.imread(case.labels_path)[:FRAMES, :SIDE, :SIDE]
    path = tmp_path_factory.mktemp("hela") / "hela.tif"
    tifffile.imwrite(path, images, photometric="minisblack")
    return path, images, tracks


def rectangle(box, frame):
    x0, y0, x1, y1 = box
    return np.c_[np.full(4, frame), [[y0, x0], [y0, x1], [y1, x1], [y1, x0]]].astype(float)


def open_track(make_napari_viewer, open_widget, qtbot, path):
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari")
    widget = open_widget(viewer, "Track")
    qtbot.waitUntil(lambda: widget.session_panel.found is not None, timeout=120_000)
    return viewer, widget


def recorded(qtbot, widget, count: int) -> None:
    wait_idle(qtbot, widget)
    panel = widget.session_panel
    qtbot.waitUntil(lambda: panel.recorder is not None and panel.recorder.seq == count, timeout=5000)
    wait_idle(qtbot, widget)


@pytest.mark.slow  # 25-45 s: two viewers; LiteMedSAM on 2 frames while annotating, replaying, resuming
def test_tracking_session_replays_by_retracking_and_resumes_with_undo(
    make_napari_viewer, open_widget, qtbot, hela_tif, tmp_path
):
    path, _, tracks = hela_tif
    folder = path.parent / "hela.tif.fmscope-session"
    viewer, widget = open_track(make_napari_viewer, open_widget, qtbot, path)
    assert widget.session_panel.folder_edit.text() == str(folder)
    widget.session_panel.autosave_interval_s = 0
    layer = viewer.layers[LABELS]

    viewer.layers[BOXES].add_rectangles(rectangle(box_from_mask(tracks[0] == NUCLEUS), 0))
    recorded(qtbot, widget, 1)
    click(qtbot, widget, "Propagate (Shift-P)")
    recorded(qtbot, widget, 2)
    assert all((layer.data[f] == 1).any() for f in range(FRAMES))
    after_propagation = layer.data.copy()
    ys, xs = np.nonzero(tracks[1] == NUCLEUS)
    viewer.layers[CLICKS].add([1, ys.mean(), xs.mean()])  # a correction on frame 1
    recorded(qtbot, widget, 3)
    click(qtbot, widget, "Undo (Shift-U)")
    recorded(qtbot, widget, 4)
    assert np.array_equal(layer.data, after_propagation)
    layer.paint((1, 5, 5), 9)  # a hand stroke
    recorded(qtbot, widget, 5)
    before_split = layer.data.copy()
    widget.objects_table.selectRow(0)
    viewer.dims.set_current_step(0, 1)
    click(qtbot, widget, "Split here")  # a correction (issue 28): frame 1 of object 1 becomes a new object
    recorded(qtbot, widget, 6)
    assert len(widget.state.objects) == 2 and not np.array_equal(layer.data, before_split)
    saved = layer.data.copy()
    journal = Journal(folder)
    actions = [action for _, action, _ in journal.actions()]
    journal.close()
    assert [(a.kind, a.params.get("op")) for a in actions] == [
        ("track", "box"),
        ("track", "propagate"),
        ("track", "points"),
        ("undo", None),
        ("paint", None),
        ("track", "correct"),
    ]

    # replay re-runs the tracker: 3 tracking actions re-run, 2 applied from their pixels, every pixel equal
    out = tmp_path / "replayed.tif"
    assert main(["replay", str(folder), "-o", str(out)]) == 0
    assert np.array_equal(tifffile.imread(out), saved)

    widget.close()
    second, resumed = open_track(make_napari_viewer, open_widget, qtbot, path)
    assert not resumed.session_panel.resume_button.isHidden()
    click(qtbot, resumed, "Resume session")
    wait_idle(qtbot, resumed)
    labels = second.layers[LABELS]
    assert np.array_equal(labels.data, saved)
    assert len(resumed.state.objects) == 2
    engine = resumed.session  # the engine session the resume re-ran: its objects and store
    assert np.array_equal(engine.labels() > 0, np.isin(saved, list(resumed.state.objects)))
    click(qtbot, resumed, "Undo (Shift-U)")  # undoes the last recorded action still on the stack: the split
    recorded(qtbot, resumed, 7)
    assert np.array_equal(labels.data, before_split) and set(resumed.state.objects) == {1}
    assert np.array_equal(engine.labels() == 1, before_split == 1)
    click(qtbot, resumed, "Undo (Shift-U)")  # then the propagation
    recorded(qtbot, resumed, 8)
    expected = before_split.copy()
    expected[1:][after_propagation[1:] == 1] = 0
    assert np.array_equal(labels.data, expected)
    assert (labels.data[0] == 1).any() and (labels.data == 9).any()


@pytest.fixture(scope="module")
def medsam2_checkpoint(tmp_path_factory) -> str:
    from sam2_checkpoint import write_random_medsam2_checkpoint  # MedSAM2's official layout, random weights

    return write_random_medsam2_checkpoint(tmp_path_factory.mktemp("medsam2") / "MedSAM2_latest.pt")


@pytest.mark.slow  # ~30 s: the checkpoint is built (5 s), MedSAM2 at 512 px on 2 small frames, replayed, resumed
def test_medsam2_tracking_session_is_recorded_replayed_and_resumed(
    make_napari_viewer, open_widget, qtbot, medsam2_checkpoint, tmp_path
):
    frames = np.full((2, 64, 64), 40, np.uint8)
    frames[0, 20:40, 18:38] = 190
    frames[1, 20:40, 22:42] = 190
    path = tmp_path / "discs.tif"
    tifffile.imwrite(path, frames, photometric="minisblack")

    def open_medsam2():
        viewer = make_napari_viewer()
        widget = open_widget(viewer, "Track")
        widget.model_combo.setCurrentText("medsam2")
        widget.checkpoint_edit.setText(medsam2_checkpoint)
        viewer.open(str(path), plugin="napari")
        qtbot.waitUntil(lambda: widget.session_panel.found is not None, timeout=120_000)
        assert "Model failure" not in widget.status.text() and "not recorded" not in widget.status.text()
        return viewer, widget

    viewer, widget = open_medsam2()
    widget.session_panel.autosave_interval_s = 0
    viewer.layers[BOXES].add_rectangles(rectangle((16, 18, 40, 42), 0))
    recorded(qtbot, widget, 1)
    after_box = viewer.layers[LABELS].data.copy()
    click(qtbot, widget, "Propagate (Shift-P)")
    recorded(qtbot, widget, 2)
    saved = viewer.layers[LABELS].data.copy()
    assert all((saved[f] == 1).any() for f in range(2))
    folder = path.parent / "discs.tif.fmscope-session"
    journal = Journal(folder)
    actions = [action for _, action, _ in journal.actions()]
    journal.close()
    assert [(a.kind, a.params["op"], a.model) for a in actions] == [
        ("track", "box", "medsam2"),
        ("track", "propagate", "medsam2"),
    ]
    assert all(a.weights_sha256 and a.backend and a.precision and a.window == (0.0, 255.0, "uint8") for a in actions)

    out = tmp_path / "replayed.tif"
    assert main(["replay", str(folder), "-o", str(out), "--checkpoint", medsam2_checkpoint]) == 0
    assert np.array_equal(tifffile.imread(out), saved)

    widget.close()  # resumed in a new viewer: the MedSAM2 engine re-runs the box and the propagation
    second, resumed = open_medsam2()
    assert not resumed.session_panel.resume_button.isHidden()
    click(qtbot, resumed, "Resume session")
    wait_idle(qtbot, resumed)
    assert np.array_equal(second.layers[LABELS].data, saved) and set(resumed.state.objects) == {1}
    click(qtbot, resumed, "Undo (Shift-U)")  # the propagation, undone after the resume
    recorded(qtbot, resumed, 3)
    assert np.array_equal(second.layers[LABELS].data, after_box)


@pytest.mark.slow  # ~30 s: LiteMedSAM on 2 frames of a small video, replayed from the file, resumed
def test_a_video_read_on_demand_gets_a_session_identified_by_its_file(make_napari_viewer, open_widget, qtbot, tmp_path):
    from test_video_reader import count_reads, write_video

    from fmscope.session_record.identity import file_sha256

    path = tmp_path / "clip.mp4"
    write_video(path, 6)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="fmscope")
    reads = count_reads(layer.data)
    widget = open_widget(viewer, "Track")
    qtbot.waitUntil(lambda: widget.session_panel.found is not None, timeout=120_000)
    assert widget.reads_on_demand(layer)
    image = widget.session_panel.image_identity
    assert image.by_file and image.sha256 == file_sha256(path) and image.size == path.stat().st_size
    widget.session_panel.autosave_interval_s = 0
    viewer.layers[BOXES].add_rectangles(rectangle((10, 10, 40, 40), 0))
    recorded(qtbot, widget, 1)
    widget.last_spin.setValue(1)
    widget.direction_combo.setCurrentText("forward")
    click(qtbot, widget, "Propagate (Shift-P)")
    recorded(qtbot, widget, 2)
    assert len(reads) <= 3  # the layer decoded what was shown; the session hashed the file's bytes instead
    saved = viewer.layers[LABELS].data.copy()
    journal = Journal(path.parent / "clip.mp4.fmscope-session")
    action = next(a for _, a, _ in journal.actions())
    journal.close()
    assert action.window is not None  # the default tracker's intensity window, recorded (issue 29 item 4)
    out = tmp_path / "replayed.tif"
    assert main(["replay", str(path.parent / "clip.mp4.fmscope-session"), "-o", str(out)]) == 0
    assert np.array_equal(tifffile.imread(out), saved)

    widget.close()  # resumed in a new viewer: the tracker re-runs from the file, frame by frame
    second = make_napari_viewer()
    second.open(str(path), plugin="fmscope")
    resumed = open_widget(second, "Track")
    qtbot.waitUntil(lambda: resumed.session_panel.found is not None, timeout=120_000)
    click(qtbot, resumed, "Resume session")
    wait_idle(qtbot, resumed)
    assert np.array_equal(second.layers[LABELS].data, saved) and set(resumed.state.objects) == {1}
