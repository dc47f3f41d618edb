"""Qt-free state of the Segment widget: the current object, and exact undo of label edits.

Painting rule: a model result only changes pixels that are background or already belong to
the current object, so labels painted by hand or other objects are never overwritten.
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
class _Edit:
    slices: dict  # slice key (z or None) -> previous 2D labels of that slice


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
        previous = {}
        for z, mask in masks.items():
            plane = self._plane(labels, z)
            updated = plane.copy()
            updated[(plane == label) & ~mask] = 0
            updated[mask & ((plane == 0) | (plane == label))] = label
            if not np.array_equal(updated, plane):
                previous[z] = plane.copy()
                plane[...] = updated
        if previous:
            self._push(previous)
        return bool(previous)

    def erase(self, labels: np.ndarray, label: int) -> bool:
        """Remove ``label`` everywhere (one undo step)."""
        if labels.ndim == 2:
            return self.paint(labels, None, label, np.zeros(labels.shape, bool))
        return self.paint_slices(labels, label, {int(z): np.zeros(labels.shape[1:], bool)
                                                 for z in np.nonzero((labels == label).any(axis=(1, 2)))[0]})

    def _push(self, slices: dict) -> None:
        self._undo.append(_Edit(slices))
        del self._undo[:-self.max_undo]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self, labels: np.ndarray) -> bool:
        """Restore the labels exactly as before the last edit."""
        if not self._undo:
            return False
        for z, plane in self._undo.pop().slices.items():
            self._plane(labels, z)[...] = plane
        return True
