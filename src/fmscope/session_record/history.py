"""The undo history of a recorded session, rebuilt from its journal, so that Undo after Resume undoes the last
recorded action as it would have before the crash.

The Segment panel's undo stack (:class:`fmscope.napari.state.SegmentState`) holds each model result, propagation
and clear that changed pixels, and Undo pops the last; hand strokes are not on it. Walking the journal from the
labels the session started with gives every action's pixels before and after it, hence the same stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmscope.session_record.action import ERASE, PROMPT_KINDS, PROPAGATE, UNDO, Action
from fmscope.session_record.journal import Journal
from fmscope.session_record.snapshot import START, read_snapshot

SEGMENT_UNDOABLE = PROMPT_KINDS + (PROPAGATE, ERASE)
MAX_UNDO = 50  # as SegmentState's default


@dataclass
class UndoStep:
    """One undoable action and what it changed: ``planes`` {plane key: (flat indices in the plane, values before,
    values after)}; the key is the index on the first axis of (Z, H, W) labels, None for (H, W) labels."""

    action: Action
    planes: dict[int | None, tuple[np.ndarray, np.ndarray, np.ndarray]]


def _changes(before: np.ndarray, after: np.ndarray, bounds) -> dict[int | None, tuple]:
    """{plane key: (flat indices, before, after)} of the pixels that differ between ``before`` (the labels inside
    ``bounds``, the delta's box, before the action) and ``after`` (the whole labels after it)."""
    region = tuple(slice(start, stop) for start, stop in bounds)
    inside = after[region]
    changed = np.nonzero(before != inside)
    coords = [index + start for index, (start, _) in zip(changed, bounds, strict=True)]
    old, new = before[changed], inside[changed]
    if after.ndim == 2:
        flat = np.ravel_multi_index(coords, after.shape)
        return {None: (flat, old, new)} if flat.size else {}
    planes = {}
    for z in np.unique(coords[0]):
        here = coords[0] == z
        planes[int(z)] = (
            np.ravel_multi_index((coords[1][here], coords[2][here]), after.shape[1:]),
            old[here],
            new[here],
        )
    return planes


def undo_history(folder_or_journal, undoable: tuple[str, ...] = SEGMENT_UNDOABLE) -> list[UndoStep]:
    """The undo stack after the journal's last action (oldest first, at most :data:`MAX_UNDO`): each action of a
    kind in ``undoable`` that changed pixels is pushed, each ``undo`` pops the last."""
    journal = folder_or_journal if isinstance(folder_or_journal, Journal) else Journal(folder_or_journal)
    try:
        shape, dtype = journal.meta("labels_shape"), journal.meta("labels_dtype")
        labels = np.array(read_snapshot(journal.folder, START, shape, dtype), copy=True)
        steps: list[UndoStep] = []
        for _seq, action, delta in journal.actions():
            if action.kind == UNDO:
                if steps:
                    steps.pop()
                delta.apply(labels)
                continue
            if delta.empty:
                continue
            region = tuple(slice(start, stop) for start, stop in delta.bounds)
            before = labels[region].copy() if action.kind in undoable else None
            delta.apply(labels)
            if before is not None:
                planes = _changes(before, labels, delta.bounds)
                if planes:
                    steps.append(UndoStep(action, planes))
                    del steps[:-MAX_UNDO]
        return steps
    finally:
        if journal is not folder_or_journal:
            journal.close()
