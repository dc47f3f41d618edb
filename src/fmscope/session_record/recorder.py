"""Recording a session (:class:`Recorder`) and resuming one (:func:`resume`).

A front end calls, on the UI thread, :meth:`Recorder.record` after each completed action (it diffs the labels
against the last recorded state and commits the action with the changed pixels: a few ms for a 2D image), and,
on a worker thread, :meth:`Recorder.autosave` (a full snapshot, so resuming does not re-apply a long journal).
A crash loses at most the action in progress: resuming applies the journal after the last snapshot.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import fmscope
from fmscope.errors import FmscopeError
from fmscope.session_record.action import TRAIN, Action
from fmscope.session_record.delta import difference
from fmscope.session_record.identity import ImageIdentity, ModelIdentity
from fmscope.session_record.journal import FORMAT, JOURNAL_FILE, Journal
from fmscope.session_record.snapshot import read_snapshot, remove_older, write_snapshot

LABEL_DTYPES = ("uint8", "uint16", "uint32", "int32", "int64")


class Recorder:
    """Appends a session's actions to its folder; use :meth:`start` (a new session) or :func:`resume`."""

    def __init__(self, journal: Journal, labels: np.ndarray, seq: int, snapshot_seq: int) -> None:
        self.journal = journal
        self.folder = journal.folder
        self.model = ModelIdentity.from_json(journal.meta("model"))
        self._labels = labels  # the labels after action ``seq``: the recorder's own copy
        self._seq = seq
        self._snapshot_seq = snapshot_seq
        self._lock = threading.Lock()  # guards _labels / _seq between record() and autosave()
        self._autosave_lock = threading.Lock()  # one autosave at a time
        # weights_sha256 of the model files this session's training runs wrote: later actions may use them
        self._trained = {
            action.params["output"]["weights_sha256"] for _, action, _ in journal.actions() if action.kind == TRAIN
        }

    @classmethod
    def start(
        cls,
        folder: str | Path,
        image: ImageIdentity,
        model: ModelIdentity,
        labels: np.ndarray,
    ) -> Recorder:
        """A new session in ``folder`` (created; its parent must exist) for ``image`` annotated with ``model``,
        starting from ``labels`` (integer ids, the image's spatial shape: (H, W), (Z, H, W) or (T, H, W); copied).

        Raises :class:`FmscopeError` when ``folder`` already holds a session (resume it or choose another) or
        cannot be created."""
        folder = Path(folder)
        if (folder / JOURNAL_FILE).exists():
            raise FmscopeError(
                f"{folder} already holds an fmscope session.",
                "Resume it (fmscope.session_record.resume), or give another folder for a new session.",
            )
        if labels.dtype.name not in LABEL_DTYPES:
            raise FmscopeError(
                f"Labels of type {labels.dtype} cannot be recorded.", f"Use one of: {', '.join(LABEL_DTYPES)}."
            )
        try:
            folder.mkdir(exist_ok=True)
        except OSError as error:
            raise FmscopeError(
                f"Cannot create the session folder {folder} ({type(error).__name__}: {error}).",
                "Choose a session folder in a writable place that exists.",
            ) from None
        journal = Journal(folder, create=True)
        labels = np.array(labels, copy=True)
        journal.set_meta(
            {
                "format": FORMAT,
                "fmscope": fmscope.__version__,
                "created": time.time(),
                "image": image.to_json(),
                "model": model.to_json(),
                "labels_shape": list(labels.shape),
                "labels_dtype": labels.dtype.str,
            }
        )
        recorder = cls(journal, labels, 0, 0)
        journal.add_snapshot(0, write_snapshot(folder, 0, labels))
        return recorder

    def labels(self) -> np.ndarray:
        """A copy of the labels after the last recorded action."""
        with self._lock:
            return self._labels.copy()

    @property
    def seq(self) -> int:
        """The number of actions recorded so far."""
        return self._seq

    def record(self, action: Action, labels: np.ndarray) -> int:
        """Commit ``action``, after which the labels are ``labels`` (same shape and dtype as the session's; not
        kept). Returns the action's sequence number. Call it once the action is complete; when it returns, the
        action survives any crash. Raises :class:`FmscopeError` when the journal cannot be written."""
        if labels.shape != self._labels.shape or labels.dtype != self._labels.dtype:
            raise FmscopeError(
                f"Labels {labels.dtype} {labels.shape} do not fit the session's {self._labels.dtype} "
                f"{self._labels.shape}.",
                "Record the labels layer the session was started with.",
            )
        action = self._completed(action)
        with self._lock:
            delta = difference(self._labels, labels)
            seq = self.journal.append(action, delta)
            delta.apply(self._labels)
            self._seq = seq
        return seq

    def _completed(self, action: Action) -> Action:
        """``action`` with its time and, for a model action, the session's model filled in; other weights refused."""
        filled = {}
        if not action.time:
            filled["time"] = time.time() - action.duration_s
        if action.kind == TRAIN:
            self._trained.add(action.params["output"]["weights_sha256"])
        elif action.is_model and action.weights_sha256 in self._trained:
            pass  # made with a model file a training run of this session wrote: recorded as it is
        elif action.is_model:
            if action.weights_sha256 not in (None, self.model.weights_sha256):
                raise FmscopeError(
                    f"This session records {self.model.name} (weights sha256 {self.model.weights_sha256[:12]}) and the "
                    "model files its training runs wrote; the "
                    f"action was made with {action.model or 'a model'} (weights sha256 {action.weights_sha256[:12]}).",
                    "Start a new session for the other model or weights.",
                )
            filled.update(
                {
                    name: getattr(self.model, source)
                    for name, source in (
                        ("model", "name"),
                        ("weights_sha256", "weights_sha256"),
                        ("backend", "backend"),
                        ("precision", "precision"),
                    )
                    if getattr(action, name) is None
                }
            )
        return replace(action, **filled) if filled else action

    def autosave(self) -> bool:
        """Save the labels after the last recorded action as a snapshot (atomic write + fsync), then drop older
        snapshots. Thread-safe: meant for a worker thread, never blocks :meth:`record` for longer than a copy of the
        labels. Returns False when the last snapshot is already current."""
        with self._autosave_lock:
            with self._lock:
                if self._seq == self._snapshot_seq:
                    return False
                seq, labels = self._seq, self._labels.copy()
            name = write_snapshot(self.folder, seq, labels)
            self.journal.add_snapshot(seq, name)
            self._snapshot_seq = seq
            remove_older(self.folder, name)
            return True

    def close(self) -> None:
        self.journal.close()


@dataclass
class Resumed:
    """A reopened session: ``labels`` after its last completed action, its ``actions`` in order (the undo history),
    ``objects`` ({object id: its actions in order}: the prompts that made it) and a ``recorder`` that goes on."""

    labels: np.ndarray
    actions: list[Action]
    objects: dict[int, list[Action]]
    recorder: Recorder


def restore(journal: Journal) -> tuple[np.ndarray, list[Action], int]:
    """(labels after the last committed action, the actions, the last snapshot's seq) of a journal."""
    snapshot = journal.latest_snapshot()
    if snapshot is None:
        raise FmscopeError(
            f"The session {journal.folder} has no labels snapshot.", "Start a new session in another folder."
        )
    snapshot_seq, name = snapshot
    labels = read_snapshot(journal.folder, name, journal.meta("labels_shape"), journal.meta("labels_dtype"))
    labels = np.array(labels, copy=True)
    actions = []
    for seq, action, delta in journal.actions():
        actions.append(action)
        if seq > snapshot_seq:
            delta.apply(labels)
    return labels, actions, snapshot_seq


def check_identity(journal: Journal, image: ImageIdentity, model: ModelIdentity | None) -> None:
    """Refuse a session made on another image, or with other weights than ``model``'s (None: not checked); a model
    file one of the session's training runs wrote is the session's too."""
    recorded = ImageIdentity.from_json(journal.meta("image"))
    if recorded.sha256 != image.sha256:
        raise FmscopeError(
            f"The session {journal.folder} was made on another image: {recorded.path or 'an image'} "
            f"({recorded.dtype} {recorded.shape}, pixels sha256 {recorded.sha256[:12]}), "
            f"not {image.path or 'this one'} ({image.dtype} {image.shape}, sha256 {image.sha256[:12]}).",
            "Open the image the session was made on, or start a new session for this image in another folder.",
        )
    if model is None:
        return
    made_with = ModelIdentity.from_json(journal.meta("model"))
    if (made_with.name, made_with.weights_sha256) != (model.name, model.weights_sha256) and not any(
        a.kind == TRAIN and a.params["output"]["weights_sha256"] == model.weights_sha256
        for _, a, _ in journal.actions()
    ):
        raise FmscopeError(
            f"The session {journal.folder} was made with {made_with.name} (weights sha256 "
            f"{made_with.weights_sha256[:12]}), not {model.name} (weights sha256 {model.weights_sha256[:12]}).",
            f"Choose {made_with.name} with the weights the session used to resume it, or start a new session.",
        )


def resume(folder: str | Path, image: ImageIdentity, model: ModelIdentity | None) -> Resumed:
    """Reopen the session in ``folder`` for ``image`` annotated with ``model`` (None: any weights, for reading).

    Raises :class:`FmscopeError` when ``folder`` holds no session, or one made on another image (pixel sha256) or
    with other weights, naming both and the fix."""
    journal = Journal(folder)
    try:
        check_identity(journal, image, model)
        labels, actions, snapshot_seq = restore(journal)
    except BaseException:
        journal.close()
        raise
    objects: dict[int, list[Action]] = {}
    for action in actions:
        if action.object_id:
            objects.setdefault(action.object_id, []).append(action)
    return Resumed(labels, actions, objects, Recorder(journal, labels.copy(), journal.last_seq(), snapshot_seq))
