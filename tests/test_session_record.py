"""The session record (fmscope.session_record, issue 29): record -> resume / replay, refusals, a kill test.

The real LiteMedSAM on a 160 x 160 crop of the nuclei sample; the kill test uses hand-painting actions only (no
model in the killed process, so five runs take about a second each).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage
from session_kill_worker import state  # tests/ is on sys.path (conftest.py)

from fmscope import samples
from fmscope.errors import FmscopeError
from fmscope.imaging import io
from fmscope.session_record import Action, ImageIdentity, ModelIdentity, Recorder, methods_summary, replay, resume
from fmscope.session_record.action import KINDS
from fmscope.session_record.delta import difference
from fmscope.session_record.paint import paint_mask
from fmscope.session_record.propagate import propagate_action

WORKER = Path(__file__).parent / "session_kill_worker.py"


def _model_action(segmenter, kind: str, object_id: int, target: np.ndarray, plane=(), **prompt) -> Action:
    """Run one prompt as the Segment panel does (predict, then paint) and return the action to record."""
    started = time.time()
    result = segmenter.predict(**prompt)
    paint_mask(target, object_id, result.mask)
    return Action.of_prompt(
        kind,
        object_id,
        segmenter,
        result,
        box=prompt.get("box"),
        points=prompt.get("points") or (),
        point_labels=prompt.get("labels") or (),
        plane=plane,
        started=started,
    )


@pytest.fixture(scope="module")
def recorded(segmenter, nuclei, tmp_path_factory):
    """A 2D session of six actions on a nuclei crop: (folder, image path, pixels, labels after the last action)."""
    root = tmp_path_factory.mktemp("session")
    image, truth = nuclei
    path = root / "cells.tif"
    io.write_image(image[96:256, 96:256], path)
    pixels = io.load_image(path).array
    boxes = samples.boxes_from_labels(truth[96:256, 96:256])
    ids = sorted(boxes, key=lambda i: -int(np.prod(boxes[i][2:] - boxes[i][:2])))[:3]
    labels = np.zeros(pixels.shape, np.uint16)
    recorder = Recorder.start(root / "s", ImageIdentity.of(pixels, path), ModelIdentity.of(segmenter), labels)
    segmenter.set_image(pixels)
    recorder.record(_model_action(segmenter, "box", 1, labels, box=boxes[ids[0]]), labels)
    recorder.record(_model_action(segmenter, "box", 2, labels, box=boxes[ids[1]]), labels)
    x0, y0, x1, y1 = boxes[ids[0]]
    refine = {"box": boxes[ids[0]], "points": [[(x0 + x1) / 2, (y0 + y1) / 2], [x0, y0]], "labels": [1, 0]}
    recorder.record(_model_action(segmenter, "refine", 1, labels, **refine), labels)
    labels[5:15, 5:25] = 3  # a hand stroke
    recorder.record(Action("paint", 3, params={"brush_px": 10}), labels)
    before = labels.copy()
    recorder.record(_model_action(segmenter, "box", 4, labels, box=boxes[ids[2]], roi_zoom=False), labels)
    labels[...] = before  # undo
    recorder.record(Action("undo", 4), labels)
    assert recorder.autosave()
    recorder.close()
    return root / "s", path, pixels, labels.copy()


@pytest.mark.slow  # 8 s: fmscope replay loads its own LiteMedSAM (4 s) and embeds the image and a crop again
def test_replay_equals_saved_labels_bit_for_bit(recorded, tmp_path):
    folder, _, _, labels = recorded
    output = tmp_path / "replayed.tif"
    result = run_cli("replay", folder, "-o", output)
    assert result.returncode == 0, result.stderr
    assert "re-ran 4 model actions" in result.stdout and "2 other actions" in result.stdout
    assert "identical to the saved labels" in result.stdout
    assert np.array_equal(io.read_image(output), labels)
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def test_replay_measures_a_difference(segmenter, recorded, tmp_path):
    """Saved labels that the model does not give again (as on another backend): Dice per object, not 'identical'."""
    _, path, pixels, _ = recorded
    segmenter.set_image(pixels)
    labels = np.zeros(pixels.shape, np.uint16)
    recorder = Recorder.start(tmp_path / "s", ImageIdentity.of(pixels, path), ModelIdentity.of(segmenter), labels)
    action = _model_action(segmenter, "box", 7, labels, box=[20, 20, 60, 60])
    labels[ndimage.binary_dilation(labels == 7, iterations=2)] = 7
    recorder.record(action, labels)
    recorder.close()
    result = replay(tmp_path / "s", pixels, segmenter, path)
    assert not result.identical and result.rerun == 1
    with pytest.raises(FmscopeError, match=r"crop \[0, 0, 500, 40\] \(y0, x0, y1, x1\) does not fit the 160 x 160"):
        segmenter.predict(box=[20, 20, 60, 60], crop=(0, 0, 500, 40))
    assert set(result.dice) == {7} and 0.5 < result.dice[7] < 1.0


@pytest.mark.slow  # about 3 encoder passes (2 slices and a crop)
def test_volume_session_replays_prompt_and_propagation_bit_for_bit(segmenter, ct_volume, tmp_path):
    """A volume session: a box on the key slice, a propagation to the next slice, a hand stroke; replay equals it."""
    volume, truth = ct_volume
    key = samples.key_slice(truth)
    image = volume.array[key : key + 2]
    labels = np.zeros(image.shape, np.uint16)
    recorder = Recorder.start(tmp_path / "s", ImageIdentity.of(image), ModelIdentity.of(segmenter), labels)
    segmenter.set_image(image[0], "lung")
    box = samples.boxes_from_labels(truth[key])[1]
    box_action = _model_action(segmenter, "box", 1, labels[0], plane=(0,), box=box)
    recorder.record(box_action, labels)
    propagate = Action("propagate", 1, box=tuple(box), plane=(0,), window=box_action.window, params={"range": [0, 1]})
    propagate_action(labels, image, propagate, segmenter)
    recorder.record(propagate, labels)
    labels[1, :4, :4] = 2
    recorder.record(Action("paint", 2), labels)
    recorder.close()
    assert (labels[0] == 1).any() and (labels[1] == 1).any()
    result = replay(tmp_path / "s", image, segmenter)
    assert result.identical and (result.rerun, result.from_record) == (2, 1)


def test_resume_restores_labels_prompts_and_goes_on(segmenter, recorded, tmp_path):
    folder, path, pixels, labels = recorded
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in folder.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    resumed = resume(copy, ImageIdentity.of(pixels, path), ModelIdentity.of(segmenter))
    assert np.array_equal(resumed.labels, labels)
    assert [a.kind for a in resumed.actions] == ["box", "box", "refine", "paint", "box", "undo"]
    assert [a.kind for a in resumed.objects[1]] == ["box", "refine"]
    assert resumed.objects[1][1].point_labels == (1, 0) and resumed.objects[1][1].model == segmenter.model.name
    assert resumed.actions[3].model is None and resumed.actions[3].time > 0  # a hand stroke, its time filled in
    assert resumed.objects[2][0].crop is not None and resumed.objects[4][0].crop is None  # a zoomed prompt, a whole
    more = resumed.labels.copy()
    more[0, 0] = 9
    assert resumed.recorder.record(Action("paint", 9), more) == 7
    resumed.recorder.close()
    assert np.array_equal(resume(copy, ImageIdentity.of(pixels), None).labels, more)


def test_session_from_another_image_or_weights_is_refused(segmenter, recorded, tmp_path):
    folder, path, pixels, _ = recorded
    other = pixels.copy()
    other[0, 0] += 1
    with pytest.raises(FmscopeError, match="made on another image.*\n.*Fix: Open the image the session was made on"):
        resume(folder, ImageIdentity.of(other, "other.tif"), ModelIdentity.of(segmenter))
    tuned = ModelIdentity(segmenter.model.name, "0" * 64, segmenter.backend, segmenter.precision)
    with pytest.raises(FmscopeError, match=r"weights sha256 0000.*\n.*Fix: Choose"):
        resume(folder, ImageIdentity.of(pixels, path), tuned)
    moved = tmp_path / "other.tif"
    io.write_image(other, moved)
    result = run_cli("replay", folder, "--image", moved, "-o", tmp_path / "out.tif")
    assert result.returncode == 1 and "made on another image" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.tif").exists()
    recorder = resume(folder, ImageIdentity.of(pixels, path), ModelIdentity.of(segmenter)).recorder
    with pytest.raises(FmscopeError, match=r"action was made with a model \(weights sha256 0000.*\n.*Fix: Start a new"):
        recorder.record(Action("box", 1, box=(1, 1, 9, 9), weights_sha256="0" * 64), np.zeros_like(pixels, np.uint16))
    assert recorder.journal.last_seq() == 6
    recorder.close()
    with pytest.raises(FmscopeError, match="already holds an fmscope session"):
        Recorder.start(folder, ImageIdentity.of(pixels), ModelIdentity.of(segmenter), np.zeros((2, 2), np.uint16))
    with pytest.raises(FmscopeError, match="not an fmscope session folder"):
        resume(tmp_path, ImageIdentity.of(pixels), None)
    result = run_cli("session", "info", tmp_path)
    assert result.returncode == 1 and "not an fmscope session folder" in result.stderr


def test_session_info_prints_the_methods_summary(segmenter, recorded):
    folder = recorded[0]
    result = run_cli("session", "info", folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == methods_summary(folder)
    assert f"weights sha256 {segmenter.model.weights_sha256}" in result.stdout
    assert "objects: 4; model prompts per object: 1: 2, 2: 1, 4: 1" in result.stdout
    assert "actions: 6 (box 3, paint 1, refine 1, undo 1)" in result.stdout


@pytest.mark.parametrize("seed", range(5))
def test_sigkill_at_a_random_moment_keeps_every_completed_action(seed, tmp_path):
    """A recording process killed with SIGKILL: reopening gives the labels after the last action it completed
    (or one later, when the kill came between the commit and the print), never a partial or earlier state."""
    folder = tmp_path / "s"
    process = subprocess.Popen([sys.executable, str(WORKER), str(folder), str(seed)], stdout=subprocess.PIPE, text=True)
    rng = np.random.default_rng(seed)
    stop_after = int(rng.integers(5, 60))
    completed = 0
    for line in process.stdout:
        completed = int(line)
        if completed >= stop_after:
            time.sleep(float(rng.uniform(0, 0.01)))
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and completed >= stop_after
    image = np.random.default_rng(0).integers(0, 255, (192, 192), dtype=np.uint8)
    resumed = resume(folder, ImageIdentity.of(image), None)
    count = len(resumed.actions)
    assert count >= completed
    assert np.array_equal(resumed.labels, state(seed, count))
    resumed.recorder.close()


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    object_id=st.integers(0, 2**31),
    points=st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), max_size=4),
    window=st.none() | st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4), st.text(max_size=8)),
    params=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_action_json_round_trip(kind, object_id, points, window, params):
    action = Action(
        kind, object_id, points=tuple(points), point_labels=(1,) * len(points), window=window, params=params
    )
    assert Action.from_json(action.to_json()) == action
    json.loads(action.to_json())  # plain JSON (no NaN)


@settings(max_examples=25, deadline=None)
@given(
    before=hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=3, max_side=6), elements=st.integers(0, 3)),
    data=st.data(),
)
def test_delta_takes_before_to_after(before, data):
    after = data.draw(hnp.arrays(np.uint16, before.shape, elements=st.integers(0, 3)))
    delta = difference(before, after)
    assert delta.empty == np.array_equal(before, after)
    restored = before.copy()
    delta.apply(restored)
    assert np.array_equal(restored, after)


@settings(max_examples=10, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 11), st.integers(0, 11), st.integers(1, 6), st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_journal_round_trip_through_snapshots_and_deltas(tmp_path_factory, edits):
    """Any run of edits, autosaved after some of them: resume gives the labels after the last edit and every action."""
    folder = tmp_path_factory.mktemp("journal") / "s"
    image = np.zeros((12, 12), np.uint8)
    labels = np.zeros((12, 12), np.uint16)
    recorder = Recorder.start(folder, ImageIdentity.of(image), ModelIdentity("m", "0" * 64, "torch", "fp32"), labels)
    for object_id, y, x, size, save in edits:
        labels[y : y + size, x : x + size] = object_id
        recorder.record(Action("paint", object_id, params={"yx": [y, x]}), labels)
        if save:
            recorder.autosave()
    recorder.close()
    resumed = resume(folder, ImageIdentity.of(image), None)
    assert np.array_equal(resumed.labels, labels)
    assert [a.params["yx"] for a in resumed.actions] == [[y, x] for _, y, x, _, _ in edits]
    assert len(list(folder.glob("labels-*.npy"))) <= 1  # older snapshots removed
    resumed.recorder.close()


def test_undo_history_is_rebuilt_from_the_journal(tmp_path):
    """Model results and clears that changed pixels are on the resumed undo stack, hand strokes and no-ops are not,
    and each recorded undo pops one; each step names the pixels it changed per slice, before and after."""
    from fmscope.session_record.history import undo_history

    image = np.zeros((3, 8, 8), np.uint8)
    model = ModelIdentity("m", "0" * 64, "torch", "fp32")
    labels = np.zeros((3, 8, 8), np.uint16)
    recorder = Recorder.start(tmp_path / "s", ImageIdentity.of(image), model, labels)
    labels[1, 2:4, 2:4] = 1
    recorder.record(Action("box", 1, box=(2, 2, 4, 4), plane=(1,)), labels)
    labels[0, 2:4, 2:4] = labels[2, 3, 3] = 1
    recorder.record(Action("propagate", 1, box=(2, 2, 4, 4), plane=(1,), params={"range": [0, 2]}), labels)
    labels[2, 0, 0] = 5
    recorder.record(Action("paint", 5), labels)
    recorder.record(Action("refine", 1, box=(2, 2, 4, 4), points=((3, 3),), point_labels=(1,), plane=(1,)), labels)
    labels[1, 6, 6] = 2
    recorder.record(Action("box", 2, box=(6, 6, 7, 7), plane=(1,)), labels)
    labels[1, 6, 6] = 0
    recorder.record(Action("undo", 0), labels)
    recorder.close()

    steps = undo_history(tmp_path / "s")
    assert [step.action.kind for step in steps] == ["box", "propagate"]
    index, before, after = steps[1].planes[0]
    assert sorted(steps[1].planes) == [0, 2] and list(index) == [18, 19, 26, 27]
    assert not before.any() and (after == 1).all()
    assert list(steps[1].planes[2][0]) == [27]
