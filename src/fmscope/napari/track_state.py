"""Qt-free state of the Track panel: the tracked objects, the selected one, exact undo of frames.

Painting rule: an engine frame (uint16 (H, W) labels of every tracked object) is written only
where the layer holds background or a tracked object, so labels painted by hand (any other id)
are never overwritten; the engine itself never lets two objects overlap.
Undo rule: an action (a prompt, a propagation) remembers each frame it changed as it was before;
undo puts back the pixels that still hold the action's value, and gives the engine's label
store back the frames' previous contents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fmscope.imaging.tracking.results import paint_frame
from fmscope.napari.state import PixelChange

__all__ = ["TrackEdit", "TrackState", "paint_frame"]


@dataclass
class TrackEdit:
    """One action: the layer frames it changed and the engine store's frames before it."""

    frames: dict[int, PixelChange] = field(default_factory=dict)
    store: dict = field(default_factory=dict)  # LabelStore.snapshot() taken before the action
    created: int | None = None  # the object this action created (a first prompt): undo forgets it
    session_state: object | None = None  # a correction's engine state before it (fmscope.napari.track_corrections)
    objects: dict[int, set[int]] | None = None  # ... and the panel's objects before it
    _before: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> plane before (while open)


class TrackState:
    """Objects (id -> prompted frames), the selected object, and the undo stack."""

    def __init__(self, max_undo: int = 50) -> None:
        self.objects: dict[int, set[int]] = {}
        self.selected: int | None = None
        self.max_undo = max_undo
        self._undo: list[TrackEdit] = []
        self._open: TrackEdit | None = None

    def reset(self) -> None:
        """Forget objects and undo (a new image or model: the layer's labels become plain labels)."""
        self.objects.clear()
        self.selected = None
        self._undo.clear()
        self._open = None

    def load(self, objects: dict[int, set[int]], edits: list[TrackEdit]) -> None:
        """Take a resumed session's objects (id -> prompted frames) and undo history (oldest first)."""
        self.reset()
        self.objects.update({obj: set(frames) for obj, frames in objects.items()})
        self._undo = list(edits)[-self.max_undo :]

    @property
    def tracked(self) -> set[int]:
        return set(self.objects)

    def new_id(self, labels: np.ndarray) -> int:
        """An id used neither in the layer nor by an object."""
        return max([int(labels.max()) if labels.size else 0, *self.objects]) + 1

    # edits -------------------------------------------------------------------------------------
    def begin(self, labels: np.ndarray, store_snapshot: dict | None = None) -> TrackEdit:
        """Open an action (closing any open one); frames painted through :meth:`paint` join it."""
        self.end(labels)
        self._open = TrackEdit(store=dict(store_snapshot or {}))
        return self._open

    def paint(self, labels: np.ndarray, frame: int, engine: np.ndarray) -> bool:
        """:func:`paint_frame` within the open action (remembering the frame as it was first)."""
        edit = self._open if self._open is not None else self.begin(labels)
        before = labels[frame].copy()
        if not paint_frame(labels, frame, engine, self.tracked):
            return False
        edit._before.setdefault(frame, before)
        return True

    def end(self, labels: np.ndarray) -> TrackEdit | None:
        """Close the open action: record what it changed on each frame; it joins the undo stack."""
        edit, self._open = self._open, None
        if edit is None:
            return None
        for frame, before in edit._before.items():
            plane = labels[frame]
            index = np.flatnonzero(plane != before)
            edit.frames[frame] = PixelChange(index, before.flat[index], plane.flat[index])
        edit._before = {}
        if edit.frames or edit.store or edit.session_state is not None:
            self._undo.append(edit)
            del self._undo[: -self.max_undo]
        return edit

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) or self._open is not None

    def undo(self, labels: np.ndarray) -> TrackEdit | None:
        """Undo the last action on ``labels``: its pixels that still hold the value it wrote get their
        old value back; returns the action (its ``store`` snapshot is for the engine), None if none."""
        self.end(labels)
        if not self._undo:
            return None
        edit = self._undo.pop()
        if edit.created is not None:
            self.objects.pop(edit.created, None)
            if self.selected == edit.created:
                self.selected = None
        for frame, change in edit.frames.items():
            plane = labels[frame]
            unchanged = plane.flat[change.index] == change.after
            plane.flat[change.index[unchanged]] = change.before[unchanged]
        return edit
