"""A recorded tracking session, re-run: the napari Track panel's prompts, propagations and undos
(:mod:`fmscope.napari.track_panel`), replayed on a :class:`fmscope.imaging.tracking.TrackingSession`.

The Track panel records its model actions as kind ``track``, ``plane`` = (frame,) for a prompt and ``params``:

- ``op``: ``"box"`` (``box`` x0, y0, x1, y1), ``"points"`` (``points`` (x, y)... with ``point_labels``) or
  ``"propagate"`` (``direction``, ``range`` [first, last] inclusive, ``frames``: how many frame results were
  painted, ``complete``: False when the user cancelled it or it stopped on a bad frame);
  or ``"correct"`` (a correction of the panel's Corrections box: ``correction`` one of
  :data:`fmscope.imaging.tracking.corrections.CORRECTIONS`, the action's object and ``plane`` frame, ``other`` the
  second object);
- ``engine``: a token naming the engine session (a new image, model or axis starts a new one, whose objects
  begin afresh; the old ones are plain labels from then on); ``axis``: ``"time"`` or ``"z"``.

Each action carries the tracker's model, weights sha256, backend, precision and intensity ``window``
(:mod:`fmscope.session_record.engine`: the default tracker's LiteMedSAM, or MedSAM2 / SAM2.1); a new engine session
is replayed with the window of its first action.

:class:`TrackReplay` does what the panel did, in the same order: each prompt or propagation is re-run and its
frames painted with :func:`fmscope.imaging.tracking.results.paint_frame` (background and tracked objects only), an
undo gives the engine back its store frames and forgets the object the undone prompt created. The labels then equal
the recorded ones pixel for pixel on the same backend and precision (both trackers are deterministic). It also
keeps the panel's undo history (:attr:`TrackReplay.steps`), which a resumed panel takes over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.session_record.action import TRACK, UNDO, Action
from fmscope.session_record.journal import Journal
from fmscope.session_record.snapshot import START, read_snapshot

if TYPE_CHECKING:
    from fmscope.imaging.tracking import TrackingSession
    from fmscope.session_record.delta import Delta

MAX_UNDO = 50  # as fmscope.napari.track_state.TrackState's default: older steps fall off both stacks alike
BOX_OP, POINTS_OP, PROPAGATE_OP, CORRECT_OP = "box", "points", "propagate", "correct"


@dataclass
class TrackStep:
    """One undoable tracking action as replayed: ``frames`` {frame: (flat indices, values before, values after)} of
    the labels it changed, ``store``: the engine store's frames before it (:meth:`LabelStore.snapshot`),
    ``created``: the object its prompt created (None: it prompted or propagated existing ones); a correction keeps
    the whole engine state and the objects before it instead (its undo restores them)."""

    frames: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    store: dict
    created: int | None
    session_state: object | None = None  # a correction's engine state before it (corrections.capture) ...
    objects: dict[int, set[int]] | None = None  # ... and the objects before it


class TrackReplay:
    """Replays tracking actions onto labels (T, H, W) with engine sessions from ``make_session(axis, window)``
    (:func:`fmscope.session_record.engine.tracking_sessions`)."""

    def __init__(self, make_session: Callable[[str, tuple | None], TrackingSession]) -> None:
        self.make_session = make_session
        self.session: TrackingSession | None = None
        self.engine: str | None = None  # the recorded engine token of :attr:`session`
        self.axis: str | None = None  # and its axis ("time" / "z")
        self.objects: dict[int, set[int]] = {}  # object -> prompted frames (the panel's TrackState.objects)
        self.steps: list[TrackStep] = []  # the undo history

    def apply(self, labels: np.ndarray, action: Action, delta: Delta) -> bool:
        """Replay ``action`` on ``labels`` (in place): a ``track`` action is re-run (returns True); an ``undo``
        applies its recorded pixels and undoes the engine's last step; any other its recorded pixels."""
        if action.kind == TRACK:
            self._track(labels, action)
            return True
        delta.apply(labels)
        if action.kind == UNDO and self.steps:
            self._undo_engine(self.steps.pop())
        return False

    def _track(self, labels: np.ndarray, action: Action) -> None:
        params = action.params
        if params.get("engine") != self.engine or self.session is None:
            self.axis = params.get("axis", "time")
            self.session = self.make_session(self.axis, action.window)
            self.engine = params.get("engine")
            self.objects.clear()
            self.steps.clear()
        op = params.get("op")
        before: dict[int, np.ndarray] = {}
        if op in (BOX_OP, POINTS_OP):
            frame, obj = action.plane[0], action.object_id
            store = self.session.store.snapshot([frame])
            if op == BOX_OP:
                result = self.session.add_box(frame, obj, action.box)
            else:
                result = self.session.add_points(
                    frame, obj, [list(p) for p in action.points], list(action.point_labels)
                )
            created = obj if obj not in self.objects else None
            self.objects.setdefault(obj, set()).add(frame)
            self._paint(labels, frame, result.labels, before)
        elif op == PROPAGATE_OP:
            store, created = self._propagate(labels, params, before)
            if not params.get("frames"):
                return  # nothing painted: the panel opened no undo step
        elif op == CORRECT_OP:
            self._correct(labels, action, before)
            return
        else:
            raise FmscopeError(
                f"Unknown tracking action '{op}' in the session.", "Record it with this fmscope version."
            )
        self._push(labels, before, store, created)

    def _propagate(self, labels: np.ndarray, params: dict, before: dict) -> tuple[dict, None]:
        first, last = (int(f) for f in params["range"])
        store = self.session.store.snapshot(range(first, last + 1))
        results = self.session.propagate(params.get("direction", "both"), (first, last))
        count, complete = int(params.get("frames", 0)), bool(params.get("complete", True))
        if not complete and not count:
            return store, None
        try:
            for done, result in enumerate(results, start=1):
                self._paint(labels, result.frame, result.labels, before)
                if not complete and done >= count:
                    break  # where the user cancelled: the engine stopped after this frame
        finally:
            results.close()
        if complete and self.session.frames.kind == "volume":  # the panel repaints a volume's frames at the end
            for frame in range(first, last + 1):
                self._paint(labels, frame, self.session.frame_labels(frame), before)
        return store, None

    def _correct(self, labels: np.ndarray, action: Action, before: dict) -> None:
        """A correction, as the panel's Corrections box does it: the engine edit, objects it brought in tracked while
        its frames are painted, objects it merged away forgotten after."""
        from fmscope.imaging.tracking import corrections

        state, objects = corrections.capture(self.session), {k: set(v) for k, v in self.objects.items()}
        frames = corrections.apply_correction(
            self.session, action.params["correction"], action.object_id, action.plane[0], int(action.params["other"])
        )
        present = {obj for scores in self.session.store.scores.values() for obj in scores}
        for obj in present - set(self.objects):
            self.objects[obj] = set()
        for frame in frames:
            self._paint(labels, frame, self.session.frame_labels(frame), before)
        for obj in set(self.objects) - present:
            del self.objects[obj]
        self._push(labels, before, {}, None)
        self.steps[-1].session_state, self.steps[-1].objects = state, objects

    def _paint(self, labels: np.ndarray, frame: int, engine: np.ndarray, before: dict[int, np.ndarray]) -> None:
        from fmscope.imaging.tracking.results import paint_frame  # the tracking package: when a session tracks

        plane = labels[frame].copy()
        if paint_frame(labels, frame, engine, set(self.objects)):
            before.setdefault(frame, plane)

    def _push(self, labels: np.ndarray, before: dict[int, np.ndarray], store: dict, created: int | None) -> None:
        frames = {}
        for frame, plane in before.items():
            index = np.flatnonzero(labels[frame] != plane)
            frames[frame] = (index, plane.flat[index], labels[frame].flat[index])
        self.steps.append(TrackStep(frames, store, created))
        del self.steps[:-MAX_UNDO]

    def _undo_engine(self, step: TrackStep) -> None:
        """What the panel's undo does to the engine: forget the object created, put the store's frames back (a
        correction: the whole engine state and the objects as they were)."""
        if step.session_state is not None:
            from fmscope.imaging.tracking import corrections

            corrections.restore(self.session, step.session_state)
            self.objects = {k: set(v) for k, v in step.objects.items()}
            return
        if step.created is not None:
            self.session.remove_object(step.created)
            self.objects.pop(step.created, None)
        self.session.store.restore(step.store)


def rebuild(journal: Journal, make_session: Callable[[str, tuple | None], TrackingSession]) -> TrackReplay:
    """Replay every action of ``journal`` from the labels the session started with: the :class:`TrackReplay` holds
    the engine session, objects and undo history after the last one (a resumed Track panel's)."""
    shape, dtype = journal.meta("labels_shape"), journal.meta("labels_dtype")
    labels = np.array(read_snapshot(journal.folder, START, shape, dtype), copy=True)
    replayed = TrackReplay(make_session)
    for _seq, action, delta in journal.actions():
        replayed.apply(labels, action, delta)
    return replayed
