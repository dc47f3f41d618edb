"""Corrections of a tracking session's lineage (issue 28): split, link, mark a division; undo restores exactly."""

from __future__ import annotations

import numpy as np
import pytest

from fmscope.errors import FmscopeError
from fmscope.imaging.tracking import TrackingSession
from fmscope.imaging.tracking.corrections import capture, link_tracks, mark_division, restore, split_track
from fmscope.imaging.tracking.results import ObjectMask


def square(y: int, x: int, shape=(40, 60)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y : y + 6, x : x + 6] = True
    return mask


def session_with(tracks: dict[int, dict[int, tuple[int, int]]], segmenter) -> TrackingSession:
    """A session on 5 blank-free frames whose store holds ``tracks`` ({object: {frame: (y, x) of a 6 px square}})
    as the tracker would have written them."""
    from fmscope.imaging.tracking import open_frames
    from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker

    frames = np.random.default_rng(0).integers(0, 255, (5, 40, 60)).astype(np.uint8)
    source = open_frames(frames)
    session = TrackingSession(source, backend=LiteMedSAMTracker(source, segmenter=segmenter))
    for obj, where in tracks.items():
        for frame, (y, x) in where.items():
            session.store.update(frame, {obj: ObjectMask(square(y, x), 0.9)})
            session.tracked.setdefault(obj, {})[frame] = False
    return session


def test_split_link_and_mark_division_and_their_undo(segmenter):
    session = session_with(
        {1: {0: (2, 2), 1: (2, 4), 2: (2, 6), 3: (20, 30)}, 2: {2: (20, 20), 3: (20, 40)}}, segmenter
    )
    before = session.labels().copy()
    state = capture(session)
    new, changed = split_track(session, 1, 3)  # object 1 jumped to another cell on frame 3
    assert changed == [3] and new not in (1, 2)
    assert (session.labels()[3] == new).sum() == 36 and not (session.labels()[3] == 1).any()
    with pytest.raises(FmscopeError, match="does not begin after"):
        link_tracks(session, 2, new)  # 2 is still on frame 3
    daughters, changed = mark_division(session, 1, 2, 2)  # object 1 divided on frame 2 into itself and 2
    assert changed == [2] and daughters[1] == 2
    assert session.lineage.parents == {daughters[0]: 1, 2: 1}
    assert (session.labels()[2] == daughters[0]).sum() == 36 and (session.labels()[:2] == 1).sum() == 72
    restore(session, state)
    assert np.array_equal(session.labels(), before) and session.lineage.parents == {}


def test_link_tracks_joins_a_lost_and_refound_cell(segmenter):
    session = session_with({1: {0: (2, 2), 1: (2, 4)}, 5: {3: (2, 8), 4: (2, 10)}}, segmenter)
    assert link_tracks(session, 1, 5) == [3, 4]
    assert set(np.unique(session.labels())) == {0, 1} and session.tracked[1].keys() == {0, 1, 3, 4}
    with pytest.raises(FmscopeError, match="does not begin after"):
        link_tracks(session, 1, 1)
    with pytest.raises(FmscopeError, match="a split needs it"):
        split_track(session, 1, 0)
