"""A user's corrections to the tracks of a :class:`~fmscope.imaging.tracking.session.TrackingSession` (issue 28).

Each edit changes the session's labels (its :class:`~fmscope.imaging.tracking.results.LabelStore`), its
lineage, and which object each prompt and tracked frame belongs to, and returns the frames whose labels
changed. :func:`capture` before an edit and :func:`restore` after it put the session back exactly (undo).
Removing a division is :meth:`TrackingSession.remove_division`; re-propagating from a corrected frame is a
prompt on that frame then :meth:`TrackingSession.propagate` (a prompt on a tracked frame is a correction).

* :func:`split_track`: an object's frames from ``frame`` on become a new object (a track that jumped to
  another cell); its daughters go with that part.
* :func:`link_tracks`: a track that began later (``later``) is the continuation of ``earlier``: its pixels,
  prompts and daughters become ``earlier``'s (the tracker lost a cell and found it again as a new one).
* :func:`mark_division`: ``parent`` divided on ``frame`` into its own continuation (a new id) and
  ``sibling``, a track beginning on that frame (the division the tracker missed).

No Qt.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from fmscope.errors import FmscopeError
from fmscope.imaging.tracking.session import TrackingSession


@dataclass
class SessionState:
    """What an edit may change: the store's frames (a :meth:`LabelStore.snapshot`), the lineage, the prompts and
    tracked frames, and the default tracker's anchors, prompts and reference areas."""

    store: dict
    parents: dict[int, int]
    prompts: dict
    tracked: dict
    backend: dict


BACKEND_FIELDS = ("anchors", "prompts", "reference")  # the default tracker's per-object state


def capture(session: TrackingSession, frames=None) -> SessionState:
    """The session as it is (``frames``: those an edit may change; default all)."""
    frames = range(session.frames.n_frames) if frames is None else frames
    backend = {
        name: copy.copy(getattr(session.backend, name)) for name in BACKEND_FIELDS if hasattr(session.backend, name)
    }
    return SessionState(
        session.store.snapshot(frames),
        dict(session.lineage.parents),
        {obj: dict(f) for obj, f in session.prompts.items()},
        {obj: dict(f) for obj, f in session.tracked.items()},
        {name: {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()} for name, value in backend.items()},
    )


def restore(session: TrackingSession, state: SessionState) -> None:
    """Put the session back as :func:`capture` saw it."""
    session.store.restore(state.store)
    session.lineage.parents = dict(state.parents)
    session.prompts = {obj: dict(f) for obj, f in state.prompts.items()}
    session.tracked = {obj: dict(f) for obj, f in state.tracked.items()}
    for name, value in state.backend.items():
        setattr(session.backend, name, {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()})


def _frames_of(session: TrackingSession, obj: int) -> list[int]:
    frames = sorted(session.store.object_frames(obj))
    if not frames:
        raise FmscopeError(f"Object {obj} has no tracked pixels.", "Pick an object the Objects table lists.")
    return frames


def _relabel(session: TrackingSession, old: int, new: int, frames) -> list[int]:
    """Object ``old``'s pixels, prompts, tracked frames and tracker state on ``frames`` become ``new``'s."""
    changed = []
    frames = set(frames)
    for index in sorted(frames & set(session.store.object_frames(old))):
        labels, scores = session.store.frame(index), dict(session.store.scores.get(index, {}))
        labels[labels == old] = new
        scores[new] = scores.pop(old)
        session.store.set_frame(index, labels, scores)
        changed.append(index)
    for table in (session.prompts, session.tracked):
        moved = {f: v for f, v in table.get(old, {}).items() if f in frames}
        if moved:
            table.setdefault(new, {}).update(moved)
            table[old] = {f: v for f, v in table[old].items() if f not in frames}
            if not table[old]:
                del table[old]
    anchors, prompts = getattr(session.backend, "anchors", None), getattr(session.backend, "prompts", None)
    if anchors is not None and old in anchors:
        moved = {f: m for f, m in anchors[old].items() if f in frames}
        if moved:
            anchors.setdefault(new, {}).update(moved)
            anchors[old] = {f: m for f, m in anchors[old].items() if f not in frames}
    if prompts is not None:
        for obj, index in [key for key in prompts if key[0] == old and key[1] in frames]:
            prompts[(new, index)] = prompts.pop((obj, index))
    reference = getattr(session.backend, "reference", None)
    if reference is not None and old in reference and new not in reference:
        reference[new] = reference[old]
    return changed


def split_track(session: TrackingSession, obj: int, frame: int) -> tuple[int, list[int]]:
    """Object ``obj``'s frames from ``frame`` on become a new object; returns (its id, the frames changed).
    Raises FmscopeError when ``obj`` has no pixels on ``frame`` or none before it."""
    obj, frame = int(obj), int(frame)
    frames = _frames_of(session, obj)
    if frame not in frames or frame == frames[0]:
        raise FmscopeError(
            f"Object {obj} is on frames {frames[0]}..{frames[-1]}; a split needs it on frame {frame} and before.",
            "Go to a frame where the object is, after its first, and split there.",
        )
    new = session._new_id()
    changed = _relabel(session, obj, new, [f for f in frames if f >= frame])
    for daughter in session.lineage.daughters(obj):
        session.lineage.link(daughter, new)
    return new, changed


def link_tracks(session: TrackingSession, earlier: int, later: int) -> list[int]:
    """``later`` continues ``earlier``: its pixels, prompts and daughters become ``earlier``'s; returns the frames
    changed. Raises FmscopeError when ``later`` does not begin after ``earlier`` ends, ``later`` has a parent or
    ``earlier`` has daughters."""
    earlier, later = int(earlier), int(later)
    first, second = _frames_of(session, earlier), _frames_of(session, later)
    if earlier == later or second[0] <= first[-1]:
        raise FmscopeError(
            f"Object {later} (frames {second[0]}..{second[-1]}) does not begin after object {earlier} ends "
            f"(frames {first[0]}..{first[-1]}).",
            "Link a track to one that ends before it begins (split one of them first).",
        )
    if session.lineage.parent(later) or session.lineage.daughters(earlier):
        raise FmscopeError(
            f"Object {later} has a parent or object {earlier} has daughters: the link would break the lineage.",
            "Remove that division first.",
        )
    changed = _relabel(session, later, earlier, second)
    for daughter in session.lineage.daughters(later):
        session.lineage.unlink(daughter)
        session.lineage.link(daughter, earlier)
    session.backend.remove_object(later)
    return changed


def mark_division(session: TrackingSession, parent: int, frame: int, sibling: int) -> tuple[list[int], list[int]]:
    """``parent`` divided on ``frame``: its frames from there become a daughter (a new id), ``sibling`` (an object
    that begins on ``frame``) the other; returns ([daughters], frames changed). Raises FmscopeError when
    ``parent`` is not on ``frame`` and the frame before, or ``sibling`` does not begin on ``frame`` or has a
    parent."""
    parent, frame, sibling = int(parent), int(frame), int(sibling)
    theirs = _frames_of(session, sibling)
    if theirs[0] != frame or session.lineage.parent(sibling) or sibling == parent:
        had = " and has a parent" if session.lineage.parent(sibling) else ""
        raise FmscopeError(
            f"Object {sibling} begins on frame {theirs[0]}{had}; a daughter of a division on frame {frame} must "
            "begin there.",
            "Go to the frame where the daughters first appear and pick the new one there.",
        )
    if session.lineage.daughters(parent):
        raise FmscopeError(f"Object {parent} already divided.", "Remove that division first.")
    daughter, changed = split_track(session, parent, frame)
    session.lineage.link(daughter, parent)
    session.lineage.link(sibling, parent)
    return [daughter, sibling], changed


CORRECTIONS = ("split", "link", "mark_division", "remove_division")


def apply_correction(session: TrackingSession, name: str, obj: int, frame: int, other: int) -> list[int]:
    """The correction ``name`` (one of :data:`CORRECTIONS`) on ``session``, as the napari Track panel asks it and a
    recorded session replays it: ``split`` ``obj`` on ``frame``; ``link`` ``other`` onto ``obj``; ``mark_division``
    of ``obj`` on ``frame`` with ``other`` a daughter; ``remove_division`` of ``obj``'s daughters. Returns the frames
    changed. Raises FmscopeError for an unknown name and as each correction does."""
    if name == "split":
        return split_track(session, obj, frame)[1]
    if name == "link":
        return link_tracks(session, obj, other)
    if name == "mark_division":
        return mark_division(session, obj, frame, other)[1]
    if name == "remove_division":
        return session.remove_division(obj)
    raise FmscopeError(f"Unknown track correction '{name}'.", f"Use one of: {', '.join(CORRECTIONS)}.")
