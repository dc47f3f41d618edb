"""The Segment panel's recorded session (issue 29): box, click and hand stroke recorded as they happen, resumed in a
new viewer with identical labels; sessions of other images named and refused; autosave off the UI thread.

A 160 x 160 crop of the nuclei sample, saved as a PNG and opened from its file, as a user does; the kill test drives
the panel in a napari process of its own (segment_session_driver.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from napari_helpers import click, wait_idle
from segment_session_driver import rectangle as stroke_rectangle

from fmscope import samples
from fmscope.imaging import io
from fmscope.napari.segment_widget import BOXES, CLICKS, LABELS
from fmscope.session_record import ImageIdentity, methods_summary, replay, resume
from fmscope.session_record.journal import Journal

DRIVER = Path(__file__).parent / "segment_session_driver.py"


def rectangle(box):
    x0, y0, x1, y1 = box
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)


@pytest.fixture(scope="module")
def cells_png(nuclei, tmp_path_factory):
    """(path, pixels) of a 160 x 160 uint8 crop of the nuclei image, written as a PNG."""
    image = nuclei[0][96:256, 96:256]
    pixels = np.round(255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
    path = tmp_path_factory.mktemp("cells") / "cells.png"
    io.write_image(pixels, path)
    return path, pixels


def wait_recorded(qtbot, widget, count: int) -> None:
    """Wait until the panel's session holds ``count`` actions and their autosave has run."""
    qtbot.waitUntil(lambda: widget.worker.drained, timeout=300_000)  # the model job (a propagation: many seconds)
    qtbot.waitUntil(lambda: widget.session.recorder is not None and widget.session.recorder.seq == count, timeout=5000)
    qtbot.waitUntil(lambda: widget.worker.drained, timeout=60_000)  # and the autosave it started


def open_segment(make_napari_viewer, open_widget, qtbot, path):
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari")
    widget = open_widget(viewer, "Segment")
    wait_idle(qtbot, widget)
    qtbot.waitUntil(lambda: widget.session.found is not None, timeout=60_000)
    return viewer, widget


@pytest.mark.slow  # 7-11 s: two viewers, two embeddings of the image
def test_box_click_and_stroke_are_recorded_and_resumed_in_a_new_viewer(
    make_napari_viewer, open_widget, qtbot, cells_png, tmp_path
):
    path, _ = cells_png
    folder = path.parent / "cells.png.fmscope-session"
    viewer, widget = open_segment(make_napari_viewer, open_widget, qtbot, path)
    widget.session.autosave_interval_s = 0  # a snapshot after every action (default: at most every 5 s)
    assert widget.session.folder_edit.text() == str(folder)
    assert "next to the image file" in widget.status.text()
    assert widget.session.resume_button.isHidden()

    viewer.layers[BOXES].add_rectangles(rectangle([40, 40, 90, 90]))  # box prompt
    wait_idle(qtbot, widget)
    layer = viewer.layers[LABELS]
    ys, xs = np.nonzero(layer.data == 1)
    assert len(ys) > 20
    after_box = layer.data.copy()
    viewer.layers[CLICKS].add([ys.mean(), xs.mean()])  # click refine
    wait_idle(qtbot, widget)
    refined = not np.array_equal(layer.data, after_box)  # else the refine changed nothing: not on the undo stack
    layer.brush_size = 5
    layer.paint((10, 10), 7)  # a hand stroke
    wait_recorded(qtbot, widget, 3)
    labels = layer.data.copy()
    assert (labels == 7).any() and (labels == 1).any()

    journal = Journal(folder)
    kinds = [action.kind for _, action, _ in journal.actions()]
    snapshot = journal.latest_snapshot()
    journal.close()
    assert kinds == ["box", "refine", "paint"]
    assert snapshot[0] == 3  # autosaved after the last action
    assert "model prompts per object: 1: 2" in methods_summary(folder)

    widget.close()  # as closing napari does: the worker stops, the journal is closed
    assert widget.session.recorder is None
    second, resumed = open_segment(make_napari_viewer, open_widget, qtbot, path)
    assert not second.layers[LABELS].data.any()
    assert not resumed.session.resume_button.isHidden()
    assert "3 actions, 2 objects" in resumed.session.summary.text()
    click(qtbot, resumed, "Resume session")
    wait_idle(qtbot, resumed)
    assert np.array_equal(second.layers[LABELS].data, labels)
    assert resumed.state.current is not None and resumed.state.current.label == 1
    assert len(resumed.state.current.points) == 1  # the object's last prompt: further clicks refine it
    assert resumed.session.resume_button.isHidden()

    second.layers[LABELS].paint((150, 150), 9)  # recording goes on in the resumed session
    wait_recorded(qtbot, resumed, 4)
    click(qtbot, resumed, "Undo (u)")  # the undo history was resumed too: the last model result is undone
    wait_recorded(qtbot, resumed, 5)
    expected = after_box.copy() if refined else np.zeros_like(after_box)
    strokes = np.isin(second.layers[LABELS].data, [7, 9])  # hand strokes are not undone
    expected[strokes] = second.layers[LABELS].data[strokes]
    assert np.array_equal(second.layers[LABELS].data, expected)


def test_session_of_another_image_is_named_not_loaded(make_napari_viewer, open_widget, qtbot, cells_png, tmp_path):
    path, pixels = cells_png
    other = tmp_path / "cells.png"
    io.write_image(pixels[::-1].copy(), other)  # same name, other pixels
    viewer, widget = open_segment(make_napari_viewer, open_widget, qtbot, other)
    viewer.layers[LABELS].paint((10, 10), 3)
    wait_recorded(qtbot, widget, 1)
    session = tmp_path / "cells.png.fmscope-session"
    assert (session / "journal.sqlite").is_file()
    io.write_image(pixels, other)  # the file now holds the first image: the session is not its own

    again, widget2 = open_segment(make_napari_viewer, open_widget, qtbot, other)
    assert widget2.session.resume_button.isHidden()
    assert "session of another image" in widget2.status.text() and str(session) in widget2.status.text()
    assert f"recorded in {session}-2" in widget2.status.text()
    assert not again.layers[LABELS].data.any()


def test_layer_without_a_file_records_in_the_sessions_folder(
    make_napari_viewer, open_widget, qtbot, cells_png, sessions_dir
):
    viewer = make_napari_viewer()
    viewer.add_image(cells_png[1], name="pasted")
    widget = open_widget(viewer, "Segment")
    qtbot.waitUntil(lambda: widget.session.found is not None, timeout=60_000)
    assert "the layer has no file" in widget.status.text()
    assert widget.session.folder_edit.text().startswith(str(sessions_dir / "pasted-"))
    viewer.layers[LABELS].paint((20, 20), 2)
    wait_recorded(qtbot, widget, 1)
    assert list(sessions_dir.glob("pasted-*/journal.sqlite"))


def test_chosen_folder_of_other_files_gets_a_session_folder_inside(
    make_napari_viewer, open_widget, qtbot, cells_png, tmp_path
):
    """A folder the user picks that holds other files: fmscope records in a folder of its own inside it."""
    chosen = tmp_path / "my data"
    chosen.mkdir()
    (chosen / "labels-000000001.npy").write_bytes(b"the user's file")  # named like a snapshot: must survive
    viewer = make_napari_viewer()
    viewer.add_image(cells_png[1], name="pasted")
    widget = open_widget(viewer, "Segment")
    qtbot.waitUntil(lambda: widget.session.found is not None, timeout=60_000)
    widget.session.folder_edit.setText(str(chosen))
    widget.session.folder_edit.editingFinished.emit()
    qtbot.waitUntil(lambda: widget.session.folder_edit.text() == str(chosen / "pasted.fmscope-session"), timeout=60_000)
    assert "(chosen)" in widget.status.text()
    viewer.layers[LABELS].paint((20, 20), 2)
    wait_recorded(qtbot, widget, 1)
    assert (chosen / "pasted.fmscope-session" / "journal.sqlite").is_file()
    assert (chosen / "labels-000000001.npy").read_bytes() == b"the user's file"


def test_autosave_does_not_stall_the_event_loop(make_napari_viewer, open_widget, qtbot):
    """A 40 x 700 x 700 volume's labels (39 MB) saved after a stroke: the Qt timer keeps ticking meanwhile."""
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (40, 700, 700), dtype=np.uint8), name="volume")
    widget = open_widget(viewer, "Segment")
    wait_idle(qtbot, widget)
    qtbot.waitUntil(lambda: widget.session.found is not None, timeout=60_000)
    viewer.layers[LABELS].paint((3, 100, 100), 4)
    wait_recorded(qtbot, widget, 1)
    recorder = widget.session.recorder
    busy = []

    def autosave(job):
        recorder._snapshot_seq = -1  # force a full snapshot of the labels, timed below
        started = time.perf_counter()
        recorder.autosave()
        busy.append(time.perf_counter() - started)

    ticks = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    qtbot.wait(50)
    for _ in range(3):
        widget.worker.submit(autosave, background=True)  # as SessionPanel.record submits it
    qtbot.waitUntil(lambda: widget.worker.drained and len(busy) == 3, timeout=60_000)
    qtbot.wait(30)
    timer.stop()
    gaps = np.diff(ticks) * 1000
    busy_ms = sum(busy) * 1000
    print(f"\nlongest UI stall during 3 autosaves: {gaps.max():.0f} ms (autosave work {busy_ms:.0f} ms)")
    assert len(ticks) > 10
    assert gaps.max() < 0.5 * busy_ms


@pytest.mark.slow  # 10-14 s: a napari process with the Segment panel and LiteMedSAM starts, then is killed
def test_killed_napari_session_resumes_every_completed_action(cells_png, tmp_path):
    """The real panel in a napari process, killed (SIGKILL) at a random moment after a box and some strokes:
    the session resumes to the labels after the last action it recorded, no more, no less."""
    path = tmp_path / "cells.png"
    io.write_image(cells_png[1], path)
    process = subprocess.Popen(
        [sys.executable, str(DRIVER), str(path), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_after = int(np.random.default_rng().integers(2, 15))
    try:
        for line in process.stdout:
            if int(line) >= kill_after:
                break
        time.sleep(float(np.random.default_rng().uniform(0, 0.05)))  # somewhere inside a later action
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]

    resumed = resume(path.parent / "cells.png.fmscope-session", ImageIdentity.of(cells_png[1], path), None)
    resumed.recorder.close()
    count = len(resumed.actions)
    assert count >= kill_after and [a.kind for a in resumed.actions] == ["box"] + ["paint"] * (count - 1)
    expected = np.load(tmp_path / "after-1.npy")
    for k in range(2, count + 1):
        expected[stroke_rectangle(k, expected.shape)] = k
    assert np.array_equal(resumed.labels, expected)


@pytest.mark.slow  # 7-10 s: 3 CT slices embedded by the panel, again by the replay
def test_propagation_is_recorded_and_replays_bit_for_bit(
    make_napari_viewer, open_widget, qtbot, ct_volume, segmenter, sessions_dir
):
    volume, truth = ct_volume
    key = samples.key_slice(truth)
    image = np.ascontiguousarray(volume.array[key - 1 : key + 2])
    viewer = make_napari_viewer()
    viewer.add_image(image, name="ct")
    widget = open_widget(viewer, "Segment")
    viewer.dims.set_point(0, 1)
    wait_idle(qtbot, widget)
    qtbot.waitUntil(lambda: widget.session.found is not None, timeout=60_000)
    box = samples.boxes_from_labels(truth[key])[1]
    viewer.layers[BOXES].add_rectangles(np.c_[np.ones(4), rectangle(box)])
    wait_idle(qtbot, widget)
    click(qtbot, widget, "Propagate (p)")
    wait_recorded(qtbot, widget, 2)
    labels = viewer.layers[LABELS].data.copy()
    assert all(labels[z].any() for z in range(3))
    folder = widget.session.recorder.folder
    outcome = replay(folder, image, segmenter)
    assert [a.kind for a in resume(folder, ImageIdentity.of(image), None).actions] == ["box", "propagate"]
    assert outcome.rerun == 2 and outcome.identical and np.array_equal(outcome.labels, labels)
