"""The Segment panel's session: every completed action recorded, autosaved in the background, resumable.

The engine side is :mod:`fmscope.session_record`; this panel only translates. On the Qt thread, after a result is
painted (box prompt, click refine, propagate, undo, clear) or a hand stroke ends on the fmscope labels layer
(napari's ``paint`` event: one per stroke), :meth:`SessionPanel.record` commits the action with
:meth:`Recorder.record`; :meth:`Recorder.autosave` then runs on the widget's worker as a background job. The
session starts at the first recorded action, in the folder shown ("Session folder"): by default next to the
image's file (``cells.tif.fmscope-session``), or, for a layer without a file, under ``$FMSCOPE_SESSIONS_DIR``
(default ``~/fmscope_sessions``), named after the layer and its pixels' hash.

When the image is chosen, the panel looks (on the worker: hashing the pixels and loading the model take time) for
a session of the same pixels and weights in that folder or its numbered siblings and offers "Resume session";
sessions of other images or weights are named in the status line and never loaded. An image read on demand (the
owner's ``reads_on_demand(layer)``) is identified by its file (``session_file(layer)``: path, size and sha256 of its
bytes, never its decoded pixels: the Track panel's lazily read videos); one without such a file (the Segment
widget's huge images, read crop by crop with labels in a pyramid never snapshot whole) has no session.
Resuming restores the labels; the owner restores the rest (Segment: the current object and the undo history;
Track: the objects, the engine session and the undo history).

The owner (the Segment widget, the Track panel) provides, besides ``worker``, ``panel``, ``_say``,
``_image_layer``, ``labels_layer()``, ``labels_data()``, ``reads_on_demand(layer=None)`` and ``session_file(layer)``:
``_engine_settings()`` (read on the Qt thread),
``session_model(settings)`` (worker: the :class:`ModelIdentity` its model actions are recorded with),
``session_rebuild(resumed, settings)`` (worker: whatever resuming needs computed, e.g. the undo history) and
``session_restore(resumed, rebuilt)`` (Qt thread, after the labels are restored).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from fmscope.errors import FmscopeError
from fmscope.napari.state import CurrentObject
from fmscope.napari.worker import Job
from fmscope.session_record import Action, ImageIdentity, ModelIdentity, Recorder, resume
from fmscope.session_record.action import ERASE, PAINT, PROMPT_KINDS
from fmscope.session_record.find import Found, SessionInfo, default_folder, find_sessions, sessions_root
from fmscope.session_record.journal import JOURNAL_FILE

# Labels snapshots at most this often: a snapshot writes the whole labels (a volume's can be 50 MB) on the model
# thread, while the journal already holds every action; a snapshot only makes resuming shorter.
AUTOSAVE_INTERVAL_S = 5.0


def layer_path(layer) -> str | None:
    """The file a napari layer was opened from, or None."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return str(path) if path and Path(str(path)).is_file() else None


def _safe(name: str) -> str:
    """A layer name as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))[:60] or "image"


def describe(info: SessionInfo) -> str:
    """'5 actions, 3 objects, last 2026-12-07 01:23' for the Resume button's line."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.last)) if info.last else "unknown time"
    return f"{info.actions} actions, {info.objects} objects, last {when}"


class SessionPanel(QWidget):
    """Session folder choice, Resume button and summary; the recorder of the Segment widget ``owner``."""

    def __init__(self, owner) -> None:
        super().__init__()
        self.owner = owner
        self.recorder: Recorder | None = None
        self.image_identity: ImageIdentity | None = None
        self.model_identity: ModelIdentity | None = None
        self.found: Found | None = None
        self._baseline: np.ndarray | None = None  # the labels when the image was set: a new session starts there
        self._chosen = ""  # the folder the user typed or chose ("": the default for each image)
        self._shown = ""  # the folder the panel last showed
        self.autosave_interval_s = AUTOSAVE_INTERVAL_S
        self._saved_at = -float("inf")  # time.monotonic() of the last autosave submitted
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.timeout.connect(self._autosave)
        self._strokes: list[Action] = []  # hand strokes painted, recorded when their event has been handled
        self._stroke_timer = QTimer(self)
        self._stroke_timer.setSingleShot(True)
        self._stroke_timer.timeout.connect(self._record_strokes)
        self.folder_edit = QLineEdit()
        self.folder_edit.setToolTip("where the session (journal + labels snapshots) is kept; resumed from")
        self.folder_edit.editingFinished.connect(self._folder_typed)
        choose = QPushButton("Choose...")
        choose.clicked.connect(self._choose_folder)
        self.resume_button = QPushButton("Resume session")
        self.resume_button.clicked.connect(self.resume)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Session folder"))
        row.addWidget(self.folder_edit)
        row.addWidget(choose)
        offer = QHBoxLayout()
        offer.addWidget(self.resume_button)
        offer.addWidget(self.summary)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addLayout(offer)
        self._show_offer(None)

    # -- the image and its folder -----------------------------------------------------------------------------------
    def image_set(self, layer) -> None:
        """A new image layer was chosen: forget the old session, then (on the worker) hash the pixels, load the
        model and look for a session to resume."""
        self.image_removed()
        source = self._source(layer)
        if source is None:  # read on demand with no file to identify it by (issue 27's huge images): no session
            self._baseline = None
            self._show_folder("")
            return
        self._baseline = np.array(self.owner.labels_data(), copy=True)
        path, _ = source
        self._show_folder(self._chosen or ("" if path is None else str(default_folder(path))))
        self._look(layer, *source)

    def _source(self, layer) -> tuple[str | None, bool] | None:
        """(the layer's file or None, whether the session identifies the image by that file); None: no session."""
        if not self.owner.reads_on_demand(layer):
            return layer_path(layer), False
        path = self.owner.session_file(layer)
        return None if path is None else (path, True)

    def image_removed(self) -> None:
        self._close()
        self.image_identity = self.model_identity = self.found = None
        self._show_offer(None)

    @staticmethod
    def _default_without_file(layer, identity: ImageIdentity) -> Path:
        return sessions_root() / f"{_safe(layer.name)}-{identity.sha256[:12]}.fmscope-session"

    @staticmethod
    def _base(typed: str, layer) -> Path:
        """The folder the user gave, or, when it is a folder of other files (not a session), a session folder
        inside it: fmscope never writes its snapshots among files it did not make."""
        chosen = Path(typed).expanduser()
        if chosen.is_dir() and not (chosen / JOURNAL_FILE).exists() and any(chosen.iterdir()):
            return chosen / f"{_safe(layer.name)}.fmscope-session"
        return chosen

    def _look(self, layer, path: str | None, by_file: bool) -> None:
        settings = self.owner._engine_settings()
        if settings is None:  # the owner said why (no model or weights chosen): nothing is recorded
            return
        pixels = layer.data
        typed = self._chosen

        def identify(job: Job) -> tuple:
            model = self.owner.session_model(settings)
            if by_file:  # hashing the pixels would decode every frame
                image = ImageIdentity.of_file(path, pixels.shape, pixels.dtype)
            else:
                image = ImageIdentity.of(np.asarray(pixels), path)
            if typed:
                base = self._base(typed, layer)
            else:
                base = default_folder(path) if path else self._default_without_file(layer, image)
            return image, model, base, find_sessions(base, image, model)

        def found(outcome: tuple) -> None:
            if self.owner._image_layer is not layer:
                return
            self.image_identity, self.model_identity, base, self.found = outcome
            self._show_folder(str(base))
            beside = path is not None and Path(base).parent == Path(path).parent
            where = "the sessions folder: a sample or a folder you cannot write" if path else "the layer has no file"
            where = "chosen" if typed else "next to the image file" if beside else where
            self._report(base, where)

        self.owner.worker.submit(identify, key="session-look", on_done=found, on_error=self._not_recorded)

    def _not_recorded(self, error: BaseException) -> None:
        """The image or model could not be identified (weights missing, file unreadable ...): nothing is recorded."""
        self.owner.panel.fail(error, "Session not recorded")

    def _report(self, base: Path, where: str) -> None:
        found = self.found
        notes = [f"Session folder {base} ({where})."]
        for info in found.other_image:
            notes.append(
                f"{info.folder} holds a session of another image ({info.image.path or 'no file'}, "
                f"{' x '.join(map(str, info.image.shape))}); not loaded."
            )
        for info in found.other_weights:
            notes.append(
                f"{info.folder} holds a session made with {info.model.name} (weights sha256 "
                f"{info.model.weights_sha256[:12]}), not {self.model_identity.name} (weights sha256 "
                f"{self.model_identity.weights_sha256[:12]}); not loaded: choose that model to resume it."
            )
        for folder, why in found.unreadable.items():
            notes.append(f"{folder} cannot be read ({why}); not loaded.")
        if found.free is None:
            notes.append("Every session folder there is taken: choose another folder, nothing is recorded.")
        elif found.resumable is not None:
            notes.append(f"Resume it, or new work is recorded in {found.free}.")
        elif found.free != base:
            notes.append(f"New work is recorded in {found.free}.")
        self._show_offer(found.resumable)
        self.owner._say(" ".join(notes))

    def _show_offer(self, info: SessionInfo | None) -> None:
        self.resume_button.setVisible(info is not None)
        self.summary.setVisible(info is not None)
        self.summary.setText("" if info is None else f"{info.folder.name}: {describe(info)}")

    def _show_folder(self, text: str) -> None:
        self._shown = text
        self.folder_edit.setText(text)

    def _folder_typed(self) -> None:
        """The user typed or chose a session folder (editingFinished also fires when the field loses focus)."""
        text = self.folder_edit.text().strip()
        if text == self._shown:
            return
        self._chosen = text
        if self.recorder is not None:
            self.owner._say(f"This image's session goes on in {self.recorder.folder}; {text} is for the next image.")
            self.folder_edit.setText(self._shown)
            return
        source = None if self.owner._image_layer is None else self._source(self.owner._image_layer)
        if source is not None:
            self._look(self.owner._image_layer, *source)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Session folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self._folder_typed()

    # -- recording --------------------------------------------------------------------------------------------------
    def record(self, action: Action) -> None:
        """Commit ``action`` (complete: its result is painted) with the labels as they are now, then autosave in
        the background. Problems (journal not writable, other weights) go to the status line; the labels stay."""
        if self.image_identity is None or self.found is None or self.owner.labels_layer() is None:
            return  # still identifying the image: the next recorded action carries these pixels too
        labels = self.owner.labels_data()
        try:
            if self.recorder is None:
                if self.found.free is None:
                    return
                model = self.model_identity
                if action.is_model and action.weights_sha256 not in (None, model.weights_sha256):
                    model = ModelIdentity(action.model, action.weights_sha256, action.backend, action.precision)
                if self.found.free.parent == sessions_root():
                    sessions_root().mkdir(parents=True, exist_ok=True)
                self.recorder = Recorder.start(self.found.free, self.image_identity, model, self._baseline)
                self._show_folder(str(self.recorder.folder))
                self._show_offer(None)
            self.recorder.record(action, labels)
        except FmscopeError as error:
            self.owner.panel.fail(error, "Session not recorded")
            return
        wait = self._saved_at + self.autosave_interval_s - time.monotonic()
        if wait <= 0:
            self._autosave()
        elif not self._autosave_timer.isActive():
            self._autosave_timer.start(int(wait * 1000) + 1)

    def _autosave(self) -> None:
        """Snapshot the labels on the worker, as a background job (a model job that comes first runs first; a
        snapshot cancelled so is taken after the next action, and the journal has the action meanwhile)."""
        recorder = self.recorder
        if recorder is None:
            return
        self._saved_at = time.monotonic()
        self.owner.worker.submit(
            lambda job: recorder.autosave(), key="autosave", background=True, on_error=self._not_recorded
        )

    def on_paint(self, event) -> None:
        """napari's ``paint`` event of the labels layer: one hand stroke (a list of history atoms)."""
        atoms = list(getattr(event, "value", None) or [])
        if not atoms:
            return
        last = atoms[-1]
        new = getattr(last, "new_value", None)
        if new is None:
            values = np.ravel(np.asarray(last[2]))
            new = values[0] if values.size else 0
        layer = self.owner.labels_layer()
        action = Action(
            PAINT if int(new) else ERASE,
            int(new),
            params={"atoms": len(atoms), "brush_px": float(getattr(layer, "brush_size", 0) or 0)},
        )
        # napari emits ``paint`` as it files the stroke's undo item, before writing a single paint call's pixels:
        # record once the event is handled
        self._strokes.append(action)
        self._stroke_timer.start(0)

    def _record_strokes(self) -> None:
        strokes, self._strokes = self._strokes, []
        for action in strokes:
            self.record(action)

    # -- resuming ---------------------------------------------------------------------------------------------------
    def resume(self) -> None:
        """Reopen the offered session (on the worker: the model's weights are checked), then restore the labels
        and the current object on the Qt thread."""
        info = self.found.resumable if self.found else None
        if info is None or self.recorder is not None:
            return
        settings, image, layer = self.owner._engine_settings(), self.image_identity, self.owner._image_layer
        self.owner._say(f"Resuming the session in {info.folder} ...")

        def reopen(job: Job):
            resumed = resume(info.folder, image, self.owner.session_model(settings))
            try:
                return resumed, self.owner.session_rebuild(resumed, settings)
            except BaseException:
                resumed.recorder.close()
                raise

        def restore(outcome) -> None:
            resumed, rebuilt = outcome
            if self.owner._image_layer is not layer or self.owner.labels_layer() is None:
                resumed.recorder.close()
                return
            labels_layer = self.owner.labels_layer()
            labels_layer.data[...] = resumed.labels
            labels_layer.refresh()
            self.recorder = resumed.recorder
            self._show_folder(str(self.recorder.folder))
            self.owner.session_restore(resumed, rebuilt)
            self._show_offer(None)
            self.owner._say(f"Resumed {info.folder}: {describe(info)}; Undo undoes its last action.")

        self.owner.worker.submit(
            reopen,
            key="session-resume",
            on_done=restore,
            on_error=lambda error: self.owner.panel.fail(error, "Session not resumed"),
        )

    def _close(self) -> None:
        self._autosave_timer.stop()
        recorder, self.recorder = self.recorder, None
        if recorder is not None:  # a last snapshot, then close, after the jobs queued before (run in order)
            self.owner.worker.submit(lambda job: (recorder.autosave(), recorder.close()), key=None)

    def shutdown(self) -> None:
        """The widget closes and its worker has stopped: close the journal here."""
        self._autosave_timer.stop()
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.close()


def current_object(actions: list[Action]) -> CurrentObject | None:
    """The object of the last model prompt, with that prompt (so clicks refine it further), or None."""
    for n in range(len(actions) - 1, -1, -1):
        action = actions[n]
        if action.kind in PROMPT_KINDS and action.box is not None:
            if any(later.kind == ERASE and later.object_id == action.object_id for later in actions[n + 1 :]):
                return None  # cleared since
            return CurrentObject(
                action.object_id,
                action.plane[0] if action.plane else None,
                np.array(action.box),
                [tuple(p) for p in action.points],
                list(action.point_labels),
            )
    return None
