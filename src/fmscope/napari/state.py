"""Qt-free state of the Segment widget: the current object, and exact undo of label edits.

Painting rule: a model result only changes pixels that are background or already belong to
the current object, so labels painted by hand or other objects are never overwritten.
Undo rule: an edit remembers only the pixels it changed (old and new value); undo restores
those that still hold the edit's value, so painting done after the edit, on the same slice
or over the edited pixels, survives. A result for a huge image covers its crop only: it is painted, and
undone, in that region of the labels (a numpy array or a :class:`~fmscope.imaging.label_pyramid.LabelPyramid`,
read and written by rectangles), never reading the whole slice.
Design after micro-sam's annotator state object (one small object the UI reads and writes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fmscope.imaging.label_pyramid import LabelPyramid


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
    """The pixels one edit changed on one slice: flat indices (into ``region`` of the slice, or into the whole
    slice when it is None), values before and after."""

    index: np.ndarray
    before: np.ndarray
    after: np.ndarray
    region: Region | None = None


Region = tuple[int, int, int, int]  # (y0, x0, y1, x1): rows y0..y1-1, columns x0..x1-1 of a slice


@dataclass
class _Edit:
    slices: dict[tuple[int | None, Region | None], PixelChange]  # (slice z or None, region or None) -> changes


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

    @staticmethod
    def _read(plane, region: Region | None) -> np.ndarray:
        """A copy of ``region`` of ``plane`` (the whole plane when None)."""
        if region is None:
            return plane.copy()
        y0, x0, y1, x1 = region
        return np.array(plane[y0:y1, x0:x1])

    @staticmethod
    def _write(plane, region: Region | None, values: np.ndarray) -> None:
        if region is None:
            plane[...] = values
        else:
            y0, x0, y1, x1 = region
            plane[y0:y1, x0:x1] = values

    def paint(
        self, labels: np.ndarray, z: int | None, label: int, mask: np.ndarray, region: Region | None = None
    ) -> bool:
        """Make ``label`` cover exactly ``mask`` on slice ``z`` without touching other labels; record undo.
        ``region``: the rectangle of the slice ``mask`` covers (a huge image's crop; outside it nothing changes),
        None for the whole slice. Returns False (and records nothing) when nothing changes.
        """
        return self.paint_slices(labels, label, {z: mask}, region)

    def paint_slices(
        self, labels: np.ndarray, label: int, masks: dict[int | None, np.ndarray], region: Region | None = None
    ) -> bool:
        """:meth:`paint` on several slices (``None`` = the whole 2D image) as one undo step."""
        return self._paint_regions(labels, label, [(z, region, mask) for z, mask in masks.items()])

    def _paint_regions(self, labels, label: int, parts: list[tuple[int | None, Region | None, np.ndarray]]) -> bool:
        changes = {}
        for z, region, mask in parts:
            plane = self._plane(labels, z)
            before = self._read(plane, region)
            updated = before.copy()
            updated[(before == label) & ~mask] = 0
            updated[mask & ((before == 0) | (before == label))] = label
            index = np.flatnonzero(updated != before)
            if index.size:
                changes[(z, region)] = PixelChange(index, before.flat[index], updated.flat[index], region)
                self._write(plane, region, updated)
        if changes:
            self._push(changes)
        return bool(changes)

    def erase(self, labels: np.ndarray, label: int) -> bool:
        """Remove ``label`` everywhere (one undo step)."""
        if isinstance(labels, LabelPyramid):  # only its written chunks can hold the label
            return self._paint_regions(
                labels,
                label,
                [
                    (None, (y0, x0, y1, x1), np.zeros((y1 - y0, x1 - x0), bool))
                    for y0, x0, y1, x1 in labels.written_regions()
                ],
            )
        if labels.ndim == 2:
            return self.paint(labels, None, label, np.zeros(labels.shape, bool))
        return self.paint_slices(
            labels,
            label,
            {int(z): np.zeros(labels.shape[1:], bool) for z in np.nonzero((labels == label).any(axis=(1, 2)))[0]},
        )

    def _push(self, slices: dict[tuple[int | None, Region | None], PixelChange]) -> None:
        self._undo.append(_Edit(slices))
        del self._undo[: -self.max_undo]

    def load_history(self, edits: list[dict[int | None, PixelChange]]) -> None:
        """Replace the undo stack with ``edits`` (oldest first; per edit {slice key: what changed}): a resumed
        session's history (:func:`fmscope.session_record.history.undo_history`); whole planes (a huge image, whose
        edits are regions, has no session)."""
        self._undo = [_Edit({(z, None): change for z, change in slices.items()}) for slices in edits][-self.max_undo :]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self, labels: np.ndarray) -> bool:
        """Undo the last edit: its pixels that still hold the value it wrote get their old value back.

        Pixels painted since (by hand or by a later edit that was not undone) keep their value.
        """
        if not self._undo:
            return False
        for (z, region), change in self._undo.pop().slices.items():
            plane = self._plane(labels, z)
            if region is None:
                unchanged = plane.flat[change.index] == change.after
                plane.flat[change.index[unchanged]] = change.before[unchanged]
                continue
            values = self._read(plane, region)
            unchanged = values.flat[change.index] == change.after
            values.flat[change.index[unchanged]] = change.before[unchanged]
            self._write(plane, region, values)
        return True
