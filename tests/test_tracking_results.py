"""The label store's snapshot / restore (the napari Track panel's undo of engine labels)."""

from __future__ import annotations

import numpy as np

from fmscope.imaging.tracking.results import LabelStore, ObjectMask


def test_snapshot_restores_frames_and_scores_exactly():
    store = LabelStore(3, (4, 5))
    a = np.zeros((4, 5), bool)
    a[1:3, 1:4] = True
    store.update(0, {1: ObjectMask(a, 0.9)})
    before_stack, before_scores = store.stack(), {k: dict(v) for k, v in store.scores.items()}
    saved = store.snapshot(range(3))
    store.update(0, {2: ObjectMask(np.ones((4, 5), bool), 0.95)})
    store.update(2, {1: ObjectMask(a, 0.5)})
    assert not np.array_equal(store.stack(), before_stack)
    store.restore(saved)
    assert np.array_equal(store.stack(), before_stack) and store.scores == before_scores
    assert store.object_frames(1) == {0: 0.9} and store.object_frames(2) == {}
