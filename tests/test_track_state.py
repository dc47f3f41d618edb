"""The Track panel's Qt-free state: the painting rule and exact undo (no napari, no model)."""

from __future__ import annotations

import numpy as np

from fmscope.napari.track_state import TrackState, paint_frame


def test_engine_frames_never_overwrite_hand_labels():
    labels = np.zeros((2, 4, 4), np.uint16)
    labels[0, 0, :] = 9  # painted by hand
    labels[0, 3, 3] = 1  # a tracked object's old pixel
    engine = np.zeros((4, 4), np.uint16)
    engine[:2, :2] = 1
    engine[2, 2] = 2
    assert paint_frame(labels, 0, engine, {1, 2})
    assert (labels[0, 0] == 9).all() and labels[0, 1, 0] == 1 and labels[0, 2, 2] == 2
    assert labels[0, 3, 3] == 0 and not labels[1].any()
    assert not paint_frame(labels, 0, engine, {1, 2})  # nothing left to change


def test_undo_restores_the_frames_and_keeps_later_hand_painting():
    state = TrackState()
    labels = np.zeros((3, 4, 4), np.uint16)
    state.objects[1] = {0}
    edit = state.begin(labels, {0: (None, None)})
    edit.created = 1
    first = np.zeros((4, 4), np.uint16)
    first[1:3, 1:3] = 1
    state.paint(labels, 0, first)
    state.end(labels)
    after_prompt = labels.copy()
    state.begin(labels, {1: (None, None), 2: (None, None)})
    for frame in (1, 2, 1):  # a frame painted twice (both directions) is one change
        state.paint(labels, frame, np.roll(first, frame, axis=1))
    state.end(labels)
    assert labels[2, 1, 3] == 1
    labels[2, 1, 3] = 7  # hand painting over the propagation's pixel, after it
    undone = state.undo(labels)
    assert sorted(undone.frames) == [1, 2] and sorted(undone.store) == [1, 2]
    assert np.array_equal(labels[:2], after_prompt[:2]) and labels[2, 1, 3] == 7 and (labels[2] == 1).sum() == 0
    assert state.undo(labels).created == 1 and not state.objects and not labels[0].any()
    assert state.undo(labels) is None
    assert state.new_id(labels) == 8
