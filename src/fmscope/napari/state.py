"""Qt-free state of the Segment widget: the current object, and exact undo of label edits.

Painting rule: a model result only changes pixels that are background or already belong to
the current object, so labels painted by hand or other objects are never overwritten.
Undo rule: an edit remembers only the pixels it changed (old and new value); undo restores
those that still hold the edit's value, so painting done after the edit, on the same slice
or over the edited pixels, survives.
Design after micro-sam's annotator state object (one small object the UI reads and writes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CurrentObject:
    """The object being segmented: its label, the slice it was drawn on, its prompts."""

    label: int
    z: int | None  # slice index for stacks / volumes, None for 2D images
    box: np.ndarray  # [x0, y0, x1, y1] in slice pixels
    points: list[tuple[float, float]] = field(default_factory=list)
    polarities: list[int] = field(default_factory=list)


@dataclass
class PixelChange:
    """The pixels one edit changed on one slice: flat indices, values before and after."""

    index: np.ndarray
    before: np.ndarray
    after: np.ndarray


@dataclass
class _Edit:
    slices: dict[int | None, PixelChange]  # slice key (z, or None for a 2D image) -> what changed there


class SegmentState:
    """The current object and an undo stack of label edits."""

    def __init__(self, max_undo: int = 50) -> None:
        self.current: CurrentObject | None = None
        self._undo: list[_Edit] = []
        self.max_undo = max_undo

    @staticmethod
    def next_label(labels: np.ndarray) -> int:
        """A label id not used yet."""
        return int(labels.max()) + 1 if labels.size else 1

    @staticmethod
    def _plane(labels: np.ndarray, z: int | None) -> np.ndarray:
        return labels if z is None else labels[z]

    def paint(self, labels: np.ndarray, z: int | None, label: int, mask: np.ndarray) -> bool:
        """Make ``label`` cover exactly ``mask`` on slice ``z`` without touching other labels; record undo.

        Returns False (and records nothing) when nothing changes.
        """
        return self.paint_slices(labels, label, {z: mask})

    def paint_slices(self, labels: np.ndarray, label: int, masks: dict[int | None, np.ndarray]) -> bool:
        """:meth:`paint` on several slices (``None`` = the whole 2D image) as one undo step."""
        changes = {}
        for z, mask in masks.items():
            plane = self._plane(labels, z)
            updated = plane.copy()
            updated[(plane == label) & ~mask] = 0
            updated[mask & ((plane == 0) | (plane == label))] = label
            index = np.flatnonzero(updated != plane)
            if index.size:
                changes[z] = PixelChange(index, plane.flat[index], updated.flat[index])
                plane[...] = updated
        if changes:
            self._push(changes)
        return bool(changes)

    def erase(self, labels: np.ndarray, label: int) -> bool:
        """Remove ``label`` everywhere (one undo step)."""
        if labels.ndim == 2:
            return self.paint(labels, None, label, np.zeros(labels.shape, bool))
        return self.paint_slices(
            labels,
            label,
            {int(z): np.zeros(labels.shape[1:], bool) for z in np.nonzero((labels == label).any(axis=(1, 2)))[0]},
        )

    def _push(self, slices: dict[int | None, PixelChange]) -> None:
        self._undo.append(_Edit(slices))
        del self._undo[: -self.max_undo]

    def load_history(self, edits: list[dict[int | None, PixelChange]]) -> None:
        """Replace the undo stack with ``edits`` (oldest first; per edit {slice key: what changed}): a resumed
        session's history (:func:`fmscope.session_record.history.undo_history`)."""
        self._undo = [_Edit(dict(slices)) for slices in edits][-self.max_undo :]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self, labels: np.ndarray) -> bool:
        """Undo the last edit: its pixels that still hold the value it wrote get their old value back.

        Pixels painted since (by hand or by a later edit that was not undone) keep their value.
        """
        if not self._undo:
            return False
        for z, change in self._undo.pop().slices.items():
            plane = self._plane(labels, z)
            unchanged = plane.flat[change.index] == change.after
            plane.flat[change.index[unchanged]] = change.before[unchanged]
        return True
