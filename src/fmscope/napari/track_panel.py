"""The Track panel: track objects through (T, Y, X[, C]) time-lapses / videos and (Z, Y, X) volumes.

The panel only translates between napari layers and a :class:`~fmscope.imaging.tracking.TrackingSession`:
every engine call runs on one persistent :class:`ModelWorker` thread, and frames are painted on the
Qt thread as they arrive through :class:`TrackState` (exact undo; labels painted by hand are never
overwritten; the engine never lets two objects overlap).

A box (``fmscope track boxes``) or a click (``fmscope track clicks``) on the displayed frame starts a
new object, or refines the selected one (a correction when that frame was tracked: the next
Propagate re-runs the object from there only). Keys: ``Shift-N`` new object, ``Shift-P`` propagate,
``Shift-U`` undo, ``Shift-C`` cancel the propagation.

The session is recorded as the Segment panel's is (:mod:`fmscope.napari.session_panel`): each prompt, propagation
(cancelled ones too, with the frames painted), undo and hand stroke once painted, as ``track`` actions that
``fmscope replay`` re-runs (:mod:`fmscope.session_record.tracking`: LiteMedSAM, model files, MedSAM2 / SAM2.1), each
with the model, weights, backend, precision and intensity window. Resuming re-runs them on the worker to give the
engine back its objects, prompts and stores and the panel its undo history. A video or cine read on demand is
identified by its file (path, size, sha256 of its bytes), never by decoding every frame.

Huge frames (of more than ``EAGER_MAX_PIXELS`` pixels: a multiscale layer's level 0, a dask / zarr stack from napari's
readers) are never read whole: the first box fixes a tracking window around it
(:meth:`~fmscope.imaging.tracking.frames.LazyStackFrames.window_around`), the labels layer covers that window only
(placed by its translate), the engine reads only the window's chunks of each frame, and prompts outside it are refused.
Such a layer gets no recorded session (it has no file to identify it by), and exports are named after the window.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fmscope import models
from fmscope.errors import FmscopeError
from fmscope.imaging.lazy_image import EAGER_MAX_PIXELS
from fmscope.imaging.tracking.export import tracks_data, write_ctc, write_label_stack, write_label_volume, write_table
from fmscope.imaging.tracking.frames import LazyStackFrames
from fmscope.imaging.tracking.lineage import napari_graph
from fmscope.napari.image_panel import ImagePanel, grid_of, same_grid
from fmscope.napari.session_panel import SessionPanel
from fmscope.napari.state import PixelChange
from fmscope.napari.status_panel import StatusPanel
from fmscope.napari.track_corrections import TrackCorrections, undo_correction
from fmscope.napari.track_state import TrackEdit, TrackState
from fmscope.napari.video_reader import LazyFrames
from fmscope.napari.worker import Job, ModelWorker
from fmscope.outputs import FOLDER, Output, check_outputs
from fmscope.session_record import Action, ModelIdentity
from fmscope.session_record.action import TRACK, UNDO
from fmscope.session_record.engine import engine_identity, tracker_engine, tracker_window, tracking_sessions
from fmscope.session_record.tracking import CORRECT_OP

MODELS = models.names(models.TRACK)
AXES = ("time", "z")  # what axis 0 of the image is: time-lapse / video frames, or volume slices
DIRECTIONS = ("both", "forward", "backward")
LABELS, BOXES, CLICKS, TRACKS = "fmscope track labels", "fmscope track boxes", "fmscope track clicks", "fmscope tracks"
CHECKPOINT_DIR_ENV = "FMSCOPE_CHECKPOINT_DIR"
EXPORT_FORMATS = ("TIFF", "NIfTI")  # the label stack; NIfTI keeps a volume's geometry (spacing, origin, direction)


class TrackPanel(ImagePanel, QWidget):
    """Dock widget; created by napari through the npe2 manifest with the viewer."""

    frame_ready = Signal(object, object)  # (propagation token, FrameResult), emitted on the worker thread

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = ModelWorker()
        self.state = TrackState()
        self._session = None  # the TrackingSession (made and used on the worker thread only)
        self._session_key: tuple | None = None  # what the session was made for (read on the Qt thread)
        self._generation = 0
        self._image_layer = None
        self._window: tuple[int, int, int, int] | None = None  # (y0, x0, y1, x1) tracked in huge frames (_windowed)
        self._job: Job | None = None  # the running propagation
        self._token = 0  # the running propagation (frames of an older one are still painted)
        self._painted = 0  # frame results the running propagation painted (recorded with it)
        self._propagation: dict = {}  # the running propagation's recorded params
        self._engine_token = uuid.uuid4().hex[:12]  # names the engine session in the recorded actions
        self.propagating = False
        self.frame_ready.connect(self._on_frame)
        self._build_ui()
        self.worker.progress.connect(self.panel.on_progress)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        for key, action in (
            ("Shift-N", self.new_object),
            ("Shift-P", self.propagate),
            ("Shift-U", self.undo),
            ("Shift-C", self.cancel),
        ):
            self.viewer.bind_key(key, lambda _viewer, action=action: action(), overwrite=True)
        self._refresh_layers()

    # -- UI ------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.image_combo = QComboBox()
        self.image_combo.currentIndexChanged.connect(self._on_image_chosen)
        self.axis_combo = QComboBox()
        self.axis_combo.addItems(AXES)
        self.model_combo = QComboBox()
        self.model_combo.addItems(MODELS)
        self.model_combo.setEditable(True)  # or the path of an fmscope model file (tracks as litemedsam)
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("weights file (MedSAM2 / SAM2.1 only)")
        self.negative_box = QCheckBox("negative clicks")
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(DIRECTIONS)
        self.first_spin, self.last_spin = QSpinBox(), QSpinBox()
        self.export_edit = QLineEdit()
        self.export_edit.setPlaceholderText("folder for the exports")
        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("axis 0 is", self.axis_combo)
        form.addRow("model", self.model_combo)
        form.addRow("checkpoint", self.checkpoint_edit)
        form.addRow("", self.negative_box)
        form.addRow("direction", self.direction_combo)
        span = QHBoxLayout()
        span.addWidget(self.first_spin)
        span.addWidget(self.last_spin)
        form.addRow("frames", span)
        self.objects_table = QTableWidget(0, 4)
        self.objects_table.setHorizontalHeaderLabels(["id", "colour", "frames", "prompted"])
        self.objects_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.objects_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.objects_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.objects_table.itemSelectionChanged.connect(self._on_row_selected)
        buttons = QHBoxLayout()
        self.buttons = {}
        for text, action in (
            ("New (Shift-N)", self.new_object),
            ("Propagate (Shift-P)", self.propagate),
            ("Cancel (Shift-C)", self.cancel),
            ("Undo (Shift-U)", self.undo),
        ):
            button = QPushButton(text)
            button.clicked.connect(action)
            buttons.addWidget(button)
            self.buttons[text.split()[0].lower()] = button
        self.buttons["cancel"].setEnabled(False)
        export = QHBoxLayout()
        export.addWidget(self.export_edit)
        self.format_combo = QComboBox()
        self.format_combo.addItems(EXPORT_FORMATS)
        self.format_combo.setToolTip("labels as TIFF, or NIfTI with the geometry of a volume read from NIfTI / NRRD")
        export.addWidget(self.format_combo)
        export_button = QPushButton("Export")
        export_button.clicked.connect(lambda: self.export())
        export.addWidget(export_button)
        self.panel = StatusPanel("Choose a time-lapse, video or volume, then draw a box on a frame.")
        self.status = self.panel.status
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.objects_table)
        layout.addLayout(buttons)
        self.corrections = TrackCorrections(self)
        layout.addWidget(self.corrections)
        layout.addLayout(export)
        self.session_panel = SessionPanel(self)
        layout.addWidget(self.session_panel)
        layout.addWidget(self.panel)
        layout.addStretch()

    # -- layers (fmscope.napari.image_panel) ---------------------------------------------------
    def _image_removed(self) -> None:
        self.worker.cancel_all()
        self._forget_session()
        self.session_panel.image_removed()

    def _shape_problem(self, shape: tuple[int, ...]) -> str | None:
        return None if len(shape) == 3 else "tracking needs frames: (T, Y, X[, C]) or (Z, Y, X)."

    def _image_set(self, layer, shape: tuple[int, ...]) -> None:
        self._window = None
        self._forget_session()
        for spin in (self.first_spin, self.last_spin):
            spin.setRange(0, shape[0] - 1)
        self.first_spin.setValue(0)
        self.last_spin.setValue(shape[0] - 1)
        kind = layer.metadata.get("fmscope_axis")
        if kind in AXES:
            self.axis_combo.setCurrentText(kind)
        self._ensure_layers()
        self.session_panel.image_set(layer)

    def _grid(self) -> dict:
        return grid_of(self._image_layer, 3)

    def _fits(self, layer) -> bool:
        """Whether one of the panel's layers has the image's grid (ndim, scale and offset)."""
        grid = self._grid()
        return layer.ndim == 3 and same_grid(layer, grid, 3)

    def _ensure_layers(self) -> None:
        """The panel's labels, boxes and clicks layers on the image's grid (replaced when they are not)."""
        shape, grid = self._spatial_shape(self._image_layer), self._grid()
        for name in (LABELS, BOXES, CLICKS, TRACKS):
            if name in self.viewer.layers and (
                not self._fits(self.viewer.layers[name])
                or (name == LABELS and self.viewer.layers[name].data.shape != shape)
            ):
                self.viewer.layers.remove(name)
        if LABELS not in self.viewer.layers and not self._windowed(self._image_layer):  # huge: at the first box
            self.viewer.add_labels(np.zeros(shape, dtype=np.uint16), name=LABELS, **grid)
            self.viewer.layers[LABELS].events.paint.connect(self.session_panel.on_paint)  # a hand stroke: recorded
        for name, add, handler in (
            (BOXES, self._add_boxes, self._on_box_event),
            (CLICKS, self._add_clicks, self._on_click_event),
        ):
            if name not in self.viewer.layers:
                add(grid).events.data.connect(handler)
        self.viewer.layers.selection.active = self.viewer.layers[BOXES]
        self.viewer.layers[BOXES].mode = "add_rectangle"

    def _windowed(self, layer) -> bool:
        """Whether ``layer``'s frames are tracked in a window (never read whole): frames (level 0 of a multiscale
        layer) of more than ``EAGER_MAX_PIXELS`` pixels (module docstring)."""
        if layer is None or isinstance(layer.data, LazyFrames):
            return False
        shape = self._spatial_shape(layer)
        return len(shape) == 3 and shape[1] * shape[2] > EAGER_MAX_PIXELS

    @staticmethod
    def _full_resolution(layer):
        """The layer's frames at full resolution: level 0 of a multiscale layer, else its data (any array)."""
        return layer.data[0] if layer.multiscale else layer.data

    def _huge_frames(self, layer, axis: str) -> LazyStackFrames:
        """The full-resolution frames of a windowed layer, read on demand (no pixel is read here)."""
        kind = "volume" if axis == "z" else "stack"
        return LazyStackFrames(self._full_resolution(layer), kind=kind, name=f"'{layer.name}'")

    def _into_window(self, box, points) -> tuple | None:
        """Qt thread, a windowed layer: the prompt in window pixels (the first prompt fixes the window and adds the
        labels layer over it), or None with a message when it leaves the window."""
        xy = np.asarray(points, float) if points is not None else None
        extent = np.asarray(box, float) if box is not None else np.r_[xy.min(axis=0), xy.max(axis=0)]
        if self._window is None:
            frames = self._huge_frames(self._image_layer, self.axis_combo.currentText())
            self._window = frames.window_around(extent).rectangle
            self._forget_session()
            shape, grid = self._spatial_shape(self._image_layer), self._grid()
            y0, x0, y1, x1 = self._window
            origin = np.array([0.0, y0, x0]) * np.asarray(grid["scale"])
            labels = self.viewer.add_labels(
                np.zeros((shape[0], y1 - y0, x1 - x0), np.uint16),
                name=LABELS,
                scale=grid["scale"],
                translate=np.asarray(grid["translate"]) + origin,
                affine=grid["affine"],
            )
            labels.events.paint.connect(self.session_panel.on_paint)
            self.viewer.layers.selection.active = self.viewer.layers[BOXES]
        y0, x0, y1, x1 = self._window
        if not (x0 <= extent[0] and extent[2] < x1 and y0 <= extent[1] and extent[3] < y1):
            self._say(
                f"This prompt leaves the tracking window (rows {y0}..{y1 - 1}, columns {x0}..{x1 - 1}): frames this "
                "large are tracked in one window around the first box, never read whole. Prompt objects inside it, "
                f"or remove the '{LABELS}' layer to track elsewhere. Nothing was changed.",
                error=True,
            )
            return None
        offset = np.array([x0, y0], float)
        return (
            None if box is None else [float(v) for v in np.asarray(box, float) - np.r_[offset, offset]],
            None if xy is None else (xy - offset).tolist(),
        )

    def _layer_removed(self, layer) -> None:
        if layer.name == LABELS and self._window is not None:  # a windowed image: the next box picks a window
            self._window = None
            self._forget_session()

    def _add_boxes(self, grid: dict):
        return self.viewer.add_shapes(
            name=BOXES, ndim=3, edge_color="yellow", face_color="transparent", edge_width=2, **grid
        )

    def _add_clicks(self, grid: dict):
        return self.viewer.add_points(name=CLICKS, ndim=3, size=6, face_color="lime", **grid)

    def _labels(self):
        return self.viewer.layers[LABELS] if LABELS in self.viewer.layers else None

    # -- the recorded session (fmscope.napari.session_panel) -----------------------------------
    def labels_layer(self):
        return self._labels()

    def labels_data(self) -> np.ndarray:
        return self.viewer.layers[LABELS].data

    def _engine_settings(self) -> tuple | None:
        return self._settings()

    def session_model(self, settings: tuple | None) -> ModelIdentity:
        """Worker thread: the identity of the tracker's model (LiteMedSAM, a model file, MedSAM2 / SAM2.1), loaded."""
        if settings is None:
            raise FmscopeError("No tracking model is set, so nothing is recorded.", "Choose a model, then the image.")
        return engine_identity(tracker_engine(self._session_for(settings).backend))

    def session_rebuild(self, resumed, settings: tuple):
        """Worker thread: re-run the resumed session's tracking actions (the engine's objects, prompts and stores;
        the undo history); the last engine session becomes this panel's when its axis is the one chosen."""
        from fmscope.session_record.tracking import rebuild

        engine = tracker_engine(self._session_for(settings).backend)
        layer = settings[3]
        path = layer.metadata.get("fmscope_source")
        image = path if path and self.reads_on_demand(layer) else np.asarray(layer.data)
        replayed = rebuild(resumed.recorder.journal, tracking_sessions(image, engine))
        if replayed.session is not None and replayed.axis == settings[2]:
            self._session = (settings, replayed.session)
        return replayed

    def session_restore(self, resumed, replayed) -> None:
        """Qt thread, the labels restored: the objects and the undo history of the replayed session."""
        self.state.reset()
        if self._session is not None and self._session[1] is replayed.session:
            self._engine_token = replayed.engine
            self.state.load(
                replayed.objects,
                [
                    TrackEdit(
                        {f: PixelChange(*change) for f, change in step.frames.items()},
                        step.store,
                        step.created,
                        step.session_state,
                        step.objects,
                    )
                    for step in replayed.steps
                ],
            )
        self._after_change(None)

    def reads_on_demand(self, layer=None) -> bool:
        """Whether ``layer`` (default: the chosen image) is read on demand, never whole: a video or cine opened by
        fmscope's reader (:class:`LazyFrames`), or huge frames tracked in a window (:meth:`_windowed`). The session
        panel asks it of its owner: such a layer's session identifies it by its file (:meth:`session_file`), not by
        hashing every decoded frame; a layer without a file (a windowed dask / zarr stack) gets no session."""
        layer = self._image_layer if layer is None else layer
        return layer is not None and (isinstance(layer.data, LazyFrames) or self._windowed(layer))

    def session_file(self, layer) -> str | None:
        """The file a layer read on demand comes from (the session hashes its bytes), or None."""
        path = layer.metadata.get("fmscope_source")
        return str(path) if path and Path(str(path)).is_file() else None

    def record_correction(self, name: str, obj: int, frame: int, other: int, axis: str) -> None:
        """Record a correction of the Corrections box, once painted, as a ``track`` action ``fmscope replay`` re-runs
        (:mod:`fmscope.session_record.tracking`)."""
        params = {"op": CORRECT_OP, "correction": name, "other": int(other), "engine": self._engine_token, "axis": axis}
        self._record(Action(TRACK, int(obj), plane=(int(frame),), params=params))

    def _record(self, action: Action) -> None:
        """Record ``action`` (painted); a tracking action carries the engine's model, weights, backend, precision
        and intensity window, so that work with other weights is refused by the session rather than recorded as
        the session's model's, and replay maps the frames as they were."""
        if self._session is not None and action.kind == TRACK:
            backend = self._session[1].backend
            model = engine_identity(tracker_engine(backend))
            action = replace(
                action,
                model=model.name,
                weights_sha256=model.weights_sha256,
                backend=model.backend,
                precision=model.precision,
                window=tracker_window(backend),
            )
        self.session_panel.record(action)

    # -- engine access -------------------------------------------------------------------------
    def _forget_session(self) -> None:
        """A new image or model: objects become plain labels (never overwritten), undo is cleared."""
        self._session_key = None
        self._generation += 1  # the next prompt makes a fresh engine session
        self._engine_token = uuid.uuid4().hex[:12]
        self.state.reset()
        self._refresh_objects()

    def _settings(self) -> tuple | None:
        """(model, checkpoint, axis, image layer, generation) for the next job, or None with a message why not."""
        if self._image_layer is None:
            self._say("Choose a time-lapse, video or volume: (T, Y, X[, C]) or (Z, Y, X).", error=True)
            return None
        model, checkpoint = self.model_combo.currentText().strip(), self.checkpoint_edit.text().strip()
        if model not in MODELS:
            if not Path(model).expanduser().is_file():
                self._say(
                    f"'{model}' is neither a tracking model ({', '.join(MODELS)}) nor a model file: "
                    "choose one or give the path of a file from 'fmscope train-segmenter'. Nothing was changed.",
                    error=True,
                )
                return None
            model = str(Path(model).expanduser())
        elif models.BY_NAME[model].package is None:  # weights the user must give (not embedded)
            if not checkpoint and not os.environ.get(CHECKPOINT_DIR_ENV):
                self._say(
                    f"{model} needs its checkpoint: give the weights file in 'checkpoint' "
                    f"(fmscope never downloads weights). Nothing was changed.",
                    error=True,
                )
                return None
            if checkpoint and not Path(checkpoint).expanduser().exists():
                self._say(f"Checkpoint not found: {checkpoint}. Nothing was changed.", error=True)
                return None
        key = (model, checkpoint, self.axis_combo.currentText(), self._image_layer, self._generation)
        if self._session_key is not None and self._session_key[:4] != key[:4]:
            had_objects = bool(self.state.objects)
            self._forget_session()  # the old objects stay as plain labels
            if had_objects:
                self._say("A new tracking session (model or axis changed); earlier objects stay as plain labels.")
            key = key[:4] + (self._generation,)
        self._session_key = key
        return key

    def _session_for(self, settings: tuple):
        """The TrackingSession for ``settings``; runs on the worker thread (the model loads there)."""
        from fmscope.imaging.tracking import TrackingSession, open_frames

        model, checkpoint, axis, layer, _ = settings
        if self._session is None or self._session[0] != settings:
            path = layer.metadata.get("fmscope_source")
            if path and isinstance(layer.data, LazyFrames):  # a lazy video layer: this thread's own decoder
                frames = open_frames(path)
            elif self._window is not None:  # huge frames: the window's chunks only
                frames = self._huge_frames(layer, axis).window(*self._window)
            else:
                frames = open_frames(
                    np.asarray(self._full_resolution(layer)), kind="volume" if axis == "z" else "stack"
                )
            self._session = (settings, TrackingSession(frames, model=model, checkpoint=checkpoint or None))
        return self._session[1]

    @property
    def session(self):
        """The current TrackingSession (None before the first prompt); read it only while the worker is idle."""
        return self._session[1] if self._session is not None and self._session[0] == self._session_key else None

    # -- prompts -------------------------------------------------------------------------------
    def _on_box_event(self, event) -> None:
        if getattr(event, "action", "added") != "added" or self._image_layer is None:
            return
        layer = self.viewer.layers[BOXES]
        if not len(layer.data) or not self._on_image_grid(layer):
            return
        vertices = np.asarray(layer.data[-1])
        ys, xs = vertices[:, 1], vertices[:, 2]
        self.prompt(int(round(vertices[0, 0])), box=[xs.min(), ys.min(), xs.max(), ys.max()])

    def _on_click_event(self, event) -> None:
        if getattr(event, "action", "added") != "added" or self._image_layer is None:
            return
        layer = self.viewer.layers[CLICKS]
        if not len(layer.data) or not self._on_image_grid(layer):
            return
        point = np.asarray(layer.data[-1])
        self.prompt(
            int(round(point[0])), points=[[point[2], point[1]]], labels=[0 if self.negative_box.isChecked() else 1]
        )

    def prompt(self, frame: int, box=None, points=None, labels=None) -> None:
        """A box [x0, y0, x1, y1] or clicks (x, y) on ``frame`` for the selected object (a new one when
        none is selected); the frame is painted when the engine answers."""
        settings = self._settings()
        if settings is not None and self._windowed(self._image_layer):
            moved = self._into_window(box, points)
            if moved is None:
                return
            (box, points), settings = moved, self._settings()
        layer = self._labels()
        if settings is None or layer is None:
            return
        if not 0 <= frame < layer.data.shape[0]:
            self._say(f"Frame {frame} is outside the image (0..{layer.data.shape[0] - 1}).", error=True)
            return
        obj = self.state.selected if self.state.selected is not None else self.state.new_id(layer.data)
        self.state.selected = obj
        engine = {"engine": self._engine_token, "axis": settings[2]}

        def run(job: Job):
            session = self._session_for(settings)
            snapshot = session.store.snapshot([frame])
            if box is not None:
                result = session.add_box(frame, obj, box)
            else:
                result = session.add_points(frame, obj, points, labels)
            return snapshot, result

        def paint(answer) -> None:
            snapshot, result = answer
            labels_layer = self._labels()
            if labels_layer is None or self._session_key != settings:
                return
            edit = self.state.begin(labels_layer.data, snapshot)
            if obj not in self.state.objects:
                edit.created = obj
            self.state.objects.setdefault(obj, set()).add(frame)
            self.state.paint(labels_layer.data, frame, result.labels)
            self.state.end(labels_layer.data)
            labels_layer.refresh()
            self._record(
                Action(
                    TRACK,
                    obj,
                    box=None if box is None else tuple(float(v) for v in box),
                    points=() if points is None else tuple(tuple(float(v) for v in p) for p in points),
                    point_labels=() if labels is None else tuple(int(v) for v in labels),
                    plane=(frame,),
                    params={"op": "box" if box is not None else "points", **engine},
                )
            )
            self._after_change(
                f"Object {obj} on frame {frame}: {int((result.labels == obj).sum())} px, "
                f"score {result.scores.get(obj, 0.0):.2f}. Propagate (Shift-P) to track it."
            )

        def failed(error: BaseException) -> None:
            if self.state.selected == obj and obj not in self.state.objects:
                self.state.selected = None
            self.panel.fail(error, "Model failure")

        self.worker.submit(run, on_done=paint, on_error=failed)

    # -- propagation ---------------------------------------------------------------------------
    def propagate(self) -> None:
        """Track every object (new ones from their prompted frame, corrected ones from the corrected
        frame only) in the chosen direction within the frame range, painting frames as they arrive."""
        if self.propagating:
            self._say("A propagation is running; Cancel it first.")
            return
        settings = self._settings()
        if settings is None:
            return
        if not self.state.objects:
            self._say("No objects yet: draw a box on a frame first.", error=True)
            return
        direction = self.direction_combo.currentText()
        first, last = sorted((self.first_spin.value(), self.last_spin.value()))
        self._token += 1
        token = self._token
        worker = self.worker
        self._painted = 0
        self._propagation = {
            "op": "propagate",
            "direction": direction,
            "range": [first, last],
            "engine": self._engine_token,
            "axis": settings[2],
        }

        def run(job: Job) -> None:
            from fmscope.imaging.tracking import FrameResult

            session = self._session_for(settings)
            snapshot = session.store.snapshot(range(first, last + 1))
            for result in session.propagate(direction, (first, last), progress=job.progress):
                if snapshot is not None:  # the engine frames as they were, for undo
                    self.frame_ready.emit(token, snapshot)
                    snapshot = None
                self.frame_ready.emit(token, result)
            if session.frames.kind == "volume":
                # MedSAM2's 3D flow ends by keeping each object's largest 3D component: repaint
                for frame in range(first, last + 1):
                    self.frame_ready.emit(token, FrameResult(frame, session.frame_labels(frame), {}, 1, 1))

        self._set_running(True)
        worker.progress.emit("Propagating ...", 0, 1)
        self._job = worker.submit(
            run,
            key="propagate",
            on_done=lambda _: self._propagated(token, False),
            on_error=lambda error: self._propagated(token, False, error),
            on_cancelled=lambda: self._propagated(token, True),
        )

    def _on_frame(self, token: int, result) -> None:
        """Qt thread: paint one propagated frame (or take the store snapshot sent first)."""
        layer = self._labels()
        if layer is None or token != self._token:
            return
        if isinstance(result, dict):  # sent before the first frame: the propagation's undo step opens
            self.state.begin(layer.data, result)
            return
        self._painted += 1
        if self.state.paint(layer.data, result.frame, result.labels):
            layer.refresh()

    def _propagated(self, token: int, cancelled: bool, error: BaseException | None = None) -> None:
        if token != self._token:
            return
        self._set_running(False)
        layer = self._labels()
        edit = self.state.end(layer.data) if layer is not None else None
        if layer is not None:
            complete = error is None and not cancelled
            if complete or self._painted:  # one that painted nothing changed nothing
                params = {**self._propagation, "frames": self._painted, "complete": complete}
                self._record(Action(TRACK, 0, params=params))
        if error is not None:
            self.panel.fail(error, "Propagation failed")
            self._after_change(None)
            return
        if cancelled and edit is not None and (edit.frames or edit.store):
            self._take_back_last_edit(layer)  # a cancelled job writes nothing (fmscope.jobs), as in Segment
        self._after_change(
            "Propagation cancelled; the labels are as they were before it." if cancelled else "Propagated."
        )
        self.panel.on_progress("", 1, 1)

    def cancel(self) -> None:
        """Stop the propagation after the frame being tracked; the frames it painted are taken back (_propagated)."""
        if self.propagating and self._job is not None:
            self._job.cancel()
            self._say("Cancelling after the current frame ...")

    def _set_running(self, running: bool) -> None:
        self.propagating = running
        self.buttons["propagate"].setEnabled(not running)
        self.buttons["cancel"].setEnabled(running)

    # -- actions -------------------------------------------------------------------------------
    def new_object(self) -> None:
        """The next box or click starts a new object."""
        self.state.selected = None
        self.objects_table.clearSelection()
        for name in (BOXES, CLICKS):
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                with layer.events.data.blocker():
                    layer.data = []
        self._say("New object: draw a box on a frame.")

    def undo(self) -> None:
        """Restore exactly the frames the last prompt or propagation changed (and the engine's labels there)."""
        layer = self._labels()
        if self.propagating:
            self._say("Cancel the propagation before undoing.")
            return
        edit = self._take_back_last_edit(layer) if layer is not None else None
        if edit is None:
            self._say("Nothing to undo.")
            return
        self._after_change(f"Undone: frames {sorted(edit.frames) or 'none'} restored.")

    def _take_back_last_edit(self, layer):
        """Undo the last action on ``layer`` and in the engine; the action taken back, None if none."""
        edit = self.state.undo(layer.data)
        if edit is None:
            return None
        layer.refresh()
        self._record(Action(UNDO, 0))
        if edit.session_state is not None:
            undo_correction(self, edit)
        elif edit.store or edit.created is not None:
            snapshot, created = edit.store, edit.created

            def restore(job: Job) -> None:  # the engine follows: the object created is forgotten
                if self._session is not None:
                    if created is not None:
                        self._session[1].remove_object(created)
                    self._session[1].store.restore(snapshot)

            self.worker.submit(restore, on_error=self._on_error)
        return edit

    def _on_error(self, error: BaseException) -> None:
        self.panel.fail(error, "Model failure")

    def _on_row_selected(self) -> None:
        rows = self.objects_table.selectionModel().selectedRows()
        if rows:
            self.state.selected = int(self.objects_table.item(rows[0].row(), 0).text())
            self._say(f"Object {self.state.selected} selected: a box or click refines it.")

    def _after_change(self, message: str | None) -> None:
        self._refresh_objects()
        self._refresh_tracks()
        if message:
            self._say(message)

    def object_rows(self) -> list[tuple[int, str, str]]:
        """(id, frames spanned 'a..b' or '-', prompted frames) per object, as the table shows them."""
        layer = self._labels()
        rows = []
        for obj in sorted(self.state.objects):
            present = np.nonzero((layer.data == obj).any(axis=(1, 2)))[0] if layer is not None else []
            span = f"{present[0]}..{present[-1]}" if len(present) else "-"
            rows.append((obj, span, ", ".join(str(f) for f in sorted(self.state.objects[obj]))))
        return rows

    def _refresh_objects(self) -> None:
        table, layer = self.objects_table, self._labels()
        rows = self.object_rows()
        table.blockSignals(True)
        table.setRowCount(len(rows))
        for index, (obj, span, prompted) in enumerate(rows):
            colour = QTableWidgetItem("")
            if layer is not None:
                colour.setBackground(QColor.fromRgbF(*np.clip(layer.get_color(obj), 0, 1)))
            for column, item in enumerate(
                (QTableWidgetItem(str(obj)), colour, QTableWidgetItem(span), QTableWidgetItem(prompted))
            ):
                table.setItem(index, column, item)
            if obj == self.state.selected:
                table.selectRow(index)
        table.blockSignals(False)

    def _refresh_tracks(self) -> None:
        """The Tracks layer: each object's centroid on every frame where it has pixels, and the lineage
        (napari's ``graph``: a daughter's track drawn from its parent's last point)."""
        layer = self._labels()
        data = tracks_data(layer.data, self.state.tracked) if layer is not None and self.state.objects else None
        if data is None or not len(data):
            if TRACKS in self.viewer.layers:
                self.viewer.layers.remove(TRACKS)
            return
        session = self.session
        graph = napari_graph(session.lineage.parents, np.unique(data[:, 0]).astype(int)) if session else {}
        if TRACKS in self.viewer.layers:
            tracks = self.viewer.layers[TRACKS]
            tracks.graph = {}  # the old graph may name tracks the new data no longer has
            tracks.data = data
            tracks.graph = graph
        else:
            grid = grid_of(layer, 3)  # a window's labels: placed as they are
            self.viewer.add_tracks(data, graph=graph, name=TRACKS, tail_length=10, **grid)
            self.viewer.layers.selection.active = self.viewer.layers[BOXES]

    # -- export --------------------------------------------------------------------------------
    def export(self, folder: str | os.PathLike | None = None) -> list[Path]:
        """Write the tracked labels to ``folder`` (default: the export field): ``<image>_labels.tif``
        (T, Y, X) uint16 or, with the NIfTI format, ``<image>_labels.nii.gz`` (Z, Y, X) with the
        geometry of the volume the image was read from, ``<image>_objects.csv`` (frame, object,
        area_px, centroid_y, centroid_x) and, for time-lapses, the Cell Tracking Challenge folder
        ``<image>_ctc/`` (res_track.txt + mask###.tif, with the session's parent links).
        Only the tracked objects are written. Returns the paths written."""
        layer = self._labels()
        text = str(folder) if folder is not None else self.export_edit.text().strip()
        if layer is None or self._image_layer is None or not self.state.objects:
            self._say("Nothing to export: track an object first.", error=True)
            return []
        if not text:
            self._say("Give a folder for the exports.", error=True)
            return []
        volume = self._image_layer.metadata.get("fmscope_volume")
        nifti = self.format_combo.currentText() == "NIfTI"
        if nifti and (
            volume is None
            or self.axis_combo.currentText() != "z"
            or tuple(volume.array.shape) != tuple(layer.data.shape)
        ):
            self._say(
                f"NIfTI export needs a (Z, Y, X) volume read from NIfTI / NRRD (its geometry) with axis 0 "
                f"= z; '{self._image_layer.name}' has none. Choose TIFF. Nothing was written.",
                error=True,
            )
            return []
        try:  # the export folder may be new; the folder holding it must exist
            check_outputs([Output("The export folder", text, FOLDER, fills=True)])
        except FmscopeError as error:
            self.panel.fail(error)
            return []
        Path(text).expanduser().mkdir(exist_ok=True)
        labels = np.where(np.isin(layer.data, list(self.state.tracked)), layer.data, 0).astype(np.uint16)
        window = "" if self._window is None else f"_window_y{self._window[0]}_x{self._window[1]}"  # window pixels
        base = Path(text).expanduser() / (self._image_layer.name + window)
        written = [
            base.with_name(base.name + ("_labels.nii.gz" if nifti else "_labels.tif")),
            base.with_name(base.name + "_objects.csv"),
        ]
        try:
            if nifti:
                write_label_volume(labels, volume, written[0])
            else:
                write_label_stack(labels, written[0])
            session = self.session
            parents = session.lineage.parents if session is not None else {}
            write_table(labels, written[1], parents=parents)
            if self.axis_combo.currentText() == "time":
                written.append(base.with_name(base.name + "_ctc"))
                write_ctc(labels, written[2], parents)
        except FmscopeError as error:
            self.panel.fail(error)
            return []
        self._say("Exported " + ", ".join(p.name for p in written) + f" to {base.parent}.")
        return written

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.worker.shutdown()
        self.session_panel.shutdown()
        super().closeEvent(event)
