"""The Segment widget: draw a box, click to refine, propagate through stacks and volumes.

The widget only translates between napari layers and engine calls; every model call runs
on the :class:`ModelWorker` thread and results are painted on the Qt thread through
:class:`SegmentState` (exact undo, never overwrites other labels).

Huge images (a plane of more than ``EAGER_MAX_PIXELS`` pixels, typically a multiscale, dask or zarr layer) are
never read whole: the engine gets a lazy view of the layer's full-resolution data
(:func:`fmscope.imaging.lazy_image.from_array`), each prompt reads its zoom crop only, the labels layer is a
:class:`~fmscope.imaging.label_pyramid.LabelPyramid` (multiscale, chunks stored only where labelled) painted in the
crop only, and prefetch embeds no whole image: it prepares the zoom crops around the view's centre.

Keys (in the viewer): ``n`` new object, ``a`` accept, ``u`` undo, ``c`` clear the current
object, ``t`` toggle positive / negative clicks, ``p`` propagate the current object.
"""

from __future__ import annotations

import time

import napari
import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from fmscope import models
from fmscope.backends import BACKENDS  # auto: $FMSCOPE_BACKEND, else OpenVINO on CPU, torch on GPU
from fmscope.imaging import lazy_image
from fmscope.imaging.intensity import WINDOW_PRESETS, resolve_intensity
from fmscope.imaging.label_pyramid import LabelPyramid
from fmscope.imaging.prompts import box_from_mask
from fmscope.napari.image_panel import ImagePanel, grid_of
from fmscope.napari.session_panel import SessionPanel, current_object
from fmscope.napari.state import CurrentObject, PixelChange, SegmentState
from fmscope.napari.status_panel import StatusPanel
from fmscope.napari.train_panel import TrainPanel
from fmscope.napari.video_reader import LazyFrames
from fmscope.napari.worker import Job, ModelWorker
from fmscope.session_record import Action, ModelIdentity
from fmscope.session_record.history import undo_history

MODELS = models.names(models.SEGMENT)
BOXES, CLICKS, LABELS = "fmscope boxes", "fmscope clicks", "fmscope labels"
LABELS_OF = "fmscope_labels_of"  # the labels layer's metadata key: the name of the image layer they label
# After a small-object prompt, zoom crops within this many crop sides of it are embedded in the
# background (on every slice shown), nearest first: for objects from 40 px long, centred crops on a grid
# of step side/4 at five sides (50-65 crops); for nuclei, the lattice crops within twice this (about 11),
# so the next box of a similar size nearby is a decode (fmscope.imaging.roi.neighbours / stand_in).
PREPARE_RADIUS = 0.5


class SegmentWidget(ImagePanel, QWidget):
    """Dock widget; created by napari through the npe2 manifest with the viewer."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = ModelWorker()
        self.state = SegmentState()
        self._kept_states: dict[str, SegmentState] = {}  # image name -> its undo state, while another is chosen
        self._segmenters: dict[tuple[str, str, str], object] = {}  # (model, checkpoint, backend) -> Segmenter
        self._zoom_hint: np.ndarray | None = None  # the last small-object box: its crops are prepared
        self.prepare_radius = PREPARE_RADIUS
        self._intensities: dict[tuple, object] = {}
        self._image_layer = None
        self._lazy_views: dict[tuple[int, int], lazy_image.LazyImage] = {}  # (id(layer), id(data)) -> lazy view
        self._label_pyramid: LabelPyramid | None = None  # the labels of a huge image (None: a numpy labels layer)
        self._negative = False
        self.last_latency_ms: float | None = None  # Shapes event -> painted label, for benchmarks
        self._build_ui()
        self.worker.progress.connect(self.panel.on_progress)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._on_slice_changed)
        self.viewer.scene.camera.events.center.connect(self._on_view_moved)
        for key, action in (
            ("n", self.new_object),
            ("a", self.accept),
            ("u", self.undo),
            ("c", self.clear_object),
            ("t", self.toggle_polarity),
            ("p", self.propagate),
        ):
            self.viewer.bind_key(key, lambda _viewer, action=action: action(), overwrite=True)
        self._refresh_layers()

    # -- UI ------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.image_combo = QComboBox()
        self.image_combo.currentIndexChanged.connect(self._on_image_chosen)
        self.model_combo = QComboBox()
        self.model_combo.addItems(MODELS)
        self.model_combo.setEditable(True)  # or the path of an fmscope model file
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("weights file (MedSAM / SAM only)")
        self.window_combo = QComboBox()
        self.window_combo.addItems(["auto", *WINDOW_PRESETS])
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(BACKENDS)
        self.backend_combo.setToolTip(
            "image encoder runtime: auto = $FMSCOPE_BACKEND, else OpenVINO on CPU, torch on GPU"
        )
        self.negative_box = QCheckBox("negative clicks (t)")
        self.negative_box.toggled.connect(self._set_negative)
        self.first_spin, self.last_spin = QSpinBox(), QSpinBox()
        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("model", self.model_combo)
        form.addRow("checkpoint", self.checkpoint_edit)
        form.addRow("window", self.window_combo)
        form.addRow("runtime", self.backend_combo)
        form.addRow("", self.negative_box)
        span = QHBoxLayout()
        span.addWidget(self.first_spin)
        span.addWidget(self.last_spin)
        form.addRow("propagate slices", span)
        buttons = QHBoxLayout()
        for text, action in (
            ("New (n)", self.new_object),
            ("Accept (a)", self.accept),
            ("Undo (u)", self.undo),
            ("Clear (c)", self.clear_object),
            ("Propagate (p)", self.propagate),
        ):
            button = QPushButton(text)
            button.clicked.connect(action)
            buttons.addWidget(button)
        self.panel = StatusPanel("Draw a box on the image.", on_cancel=self.worker.cancel_all)
        self.status, self.progress = self.panel.status, self.panel.progress
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        self.session = SessionPanel(self)
        layout.addWidget(self.session)
        layout.addWidget(self.panel)
        self.train_panel = TrainPanel(self)
        layout.addWidget(self.train_panel)
        layout.addStretch()

    # -- layers (fmscope.napari.image_panel) -------------------------------------------------
    def _layers_refreshed(self) -> None:
        self.train_panel.refresh_layers()

    def _layer_removed(self, layer) -> None:
        self._intensities = {key: value for key, value in self._intensities.items() if key[0] != id(layer)}
        self._lazy_views = {key: value for key, value in self._lazy_views.items() if key[0] != id(layer)}

    def _image_removed(self) -> None:
        self.worker.cancel_all()
        self.state.current = None
        self.session.image_removed()

    def _shape_problem(self, shape: tuple[int, ...]) -> str | None:
        if len(shape) == 3 and shape[1] * shape[2] > lazy_image.EAGER_MAX_PIXELS:
            return (
                f"fmscope segments planes of more than {lazy_image.EAGER_MAX_PIXELS} pixels as 2D images only. "
                "Open one plane of the stack as its own layer."
            )
        if len(shape) in (2, 3):
            return None
        return "fmscope segments 2D images and (z, y, x) stacks. Split channels / time points first."

    @staticmethod
    def _full_resolution(layer):
        """The layer's data at full resolution: level 0 of a multiscale layer, else the data itself (any array)."""
        return layer.data[0] if layer.multiscale else layer.data

    def is_huge(self, layer=None) -> bool:
        """Whether ``layer`` (default: the chosen image) is a 2D image above ``EAGER_MAX_PIXELS`` pixels, read
        crop by crop and labelled in a :class:`LabelPyramid`."""
        layer = self._image_layer if layer is None else layer
        if layer is None:
            return False
        shape = self._spatial_shape(layer)
        return len(shape) == 2 and shape[0] * shape[1] > lazy_image.EAGER_MAX_PIXELS

    def reads_on_demand(self, layer=None) -> bool:
        """The session panel's question: a huge image is read crop by crop (:meth:`is_huge`), a video or cine
        layer (fmscope's lazy reader) frame by frame; neither is ever read whole, so neither is hashed for a
        session (:meth:`session_file`: none is recorded)."""
        layer = self._image_layer if layer is None else layer
        return self.is_huge(layer) or (layer is not None and isinstance(layer.data, LazyFrames))

    def session_file(self, layer) -> None:
        """A huge image or a video layer gets no session (a huge image's labels are a pyramid, never snapshot whole;
        the Segment panel's replay reads pictures, not video frames): no file identifies it."""
        return None

    def _image_set(self, layer, shape: tuple[int, ...]) -> None:
        if len(shape) == 3:
            for spin in (self.first_spin, self.last_spin):
                spin.setRange(0, shape[0] - 1)
            self.last_spin.setValue(shape[0] - 1)
        window = layer.metadata.get("fmscope_window")
        if window in WINDOW_PRESETS:
            self.window_combo.setCurrentText(window)
        self._ensure_prompt_layers()
        self._prefetch()
        self.session.image_set(layer)

    def _labels_for(self, image) -> None:
        """Give ``image`` its own labels: the labels layer of the image chosen before is kept in the viewer, renamed
        ``fmscope labels (<its image>)`` with its undo state, never removed nor re-used for another image; the
        chosen image's own kept layer (if any) becomes ``fmscope labels`` again, with its state."""
        layers = self.viewer.layers
        current = layers[LABELS] if LABELS in layers else None
        owner = None if current is None else current.metadata.get(LABELS_OF)
        if current is not None and owner is not None and owner != image.name:
            current.events.paint.disconnect(self.session.on_paint)  # its strokes are not this image's session's
            current.name = f"{LABELS} ({owner})"
            self._kept_states[owner] = self.state
            self.state = SegmentState()
        kept = f"{LABELS} ({image.name})"
        if LABELS not in layers and kept in layers and layers[kept].metadata.get(LABELS_OF) == image.name:
            layers[kept].name = LABELS
            self.state = self._kept_states.pop(image.name, SegmentState())

    def _ensure_prompt_layers(self) -> None:
        image = self._image_layer
        self._labels_for(image)
        shape = self._spatial_shape(image)
        keep = grid_of(image, len(shape))
        huge = self.is_huge(image)
        fits = (
            LABELS in self.viewer.layers
            and self.viewer.layers[LABELS].data.shape == shape
            and (not huge or self.viewer.layers[LABELS].multiscale == (self._label_pyramid is not None))
        )
        if not fits:
            if LABELS in self.viewer.layers:
                self.viewer.layers.remove(LABELS)
            if huge:  # never a dense array: a multiscale layer over the pyramid's levels
                self._label_pyramid = LabelPyramid(shape)
                self.viewer.add_labels(self._label_pyramid.levels, name=LABELS, multiscale=True, **keep)
            else:
                self._label_pyramid = None
                self.viewer.add_labels(np.zeros(shape, dtype=np.uint16), name=LABELS, **keep)
            self.viewer.layers[LABELS].metadata[LABELS_OF] = image.name
        self.viewer.layers[LABELS].events.paint.connect(self.session.on_paint)  # a hand stroke: recorded
        if BOXES not in self.viewer.layers or self.viewer.layers[BOXES].ndim != len(shape):
            if BOXES in self.viewer.layers:
                self.viewer.layers.remove(BOXES)
            boxes = self.viewer.add_shapes(
                name=BOXES, ndim=len(shape), edge_color="yellow", face_color="transparent", edge_width=2, **keep
            )
            boxes.events.data.connect(self._on_box_event)
        if CLICKS not in self.viewer.layers or self.viewer.layers[CLICKS].ndim != len(shape):
            if CLICKS in self.viewer.layers:
                self.viewer.layers.remove(CLICKS)
            clicks = self.viewer.add_points(name=CLICKS, ndim=len(shape), size=6, face_color="lime", **keep)
            clicks.events.data.connect(self._on_click_event)
        self.viewer.layers.selection.active = self.viewer.layers[BOXES]
        self.viewer.layers[BOXES].mode = "add_rectangle"

    # -- the recorded session (fmscope.napari.session_panel) ------------------------------
    def session_model(self, settings: tuple) -> ModelIdentity:
        """Worker thread: the identity of the model ``settings`` name (loaded)."""
        return ModelIdentity.of(self._engine(settings)[0])

    def session_rebuild(self, resumed, settings: tuple) -> list:
        """Worker thread: the resumed session's undo history."""
        return undo_history(resumed.recorder.journal)

    def session_restore(self, resumed, history: list) -> None:
        """Qt thread, the labels restored: the current object (its last prompt: clicks go on refining it) and the
        undo history."""
        self.state = SegmentState()
        self.state.current = current_object(resumed.actions)
        self.state.load_history(
            [{key: PixelChange(*change) for key, change in step.planes.items()} for step in history]
        )

    def labels_layer(self):
        """The fmscope labels layer, or None."""
        return self.viewer.layers[LABELS] if LABELS in self.viewer.layers else None

    def labels_data(self) -> np.ndarray | LabelPyramid:
        """The fmscope labels: the layer's array itself, or for a huge image the :class:`LabelPyramid` behind the
        layer's levels."""
        if self._label_pyramid is not None and self.viewer.layers[LABELS].multiscale:
            return self._label_pyramid
        return self.viewer.layers[LABELS].data

    # -- engine access ---------------------------------------------------------------------
    def _engine_settings(self) -> tuple:
        """What the next job needs from the UI, read on the Qt thread: (model, checkpoint, window, layer, backend)."""
        choice, backend = self.window_combo.currentText(), self.backend_combo.currentText()
        return (
            self.model_combo.currentText(),
            self.checkpoint_edit.text().strip(),
            None if choice == "auto" else choice,
            self._image_layer,
            None if backend == "auto" else backend,
        )

    def _engine(self, settings: tuple) -> tuple:
        """(Segmenter, intensity) for ``settings``; runs on the worker thread, both cached."""
        from fmscope.imaging.predictor import Segmenter  # torch loads on the worker, not when the widget opens

        model, checkpoint, window, layer, backend = settings
        if (model, checkpoint, backend) not in self._segmenters:
            self._segmenters[(model, checkpoint, backend)] = Segmenter(
                model, checkpoint=checkpoint or None, backend=backend
            )
        key = (id(layer), id(layer.data), window)  # entries of removed layers are dropped in _on_layer_removed
        if key not in self._intensities:  # one mapping per image so all slices are comparable
            if self.is_huge(layer):  # a fixed sample of its tiles (LazyImage.intensity), or the preset
                lazy = self._lazy_view(layer)
                intensity = lazy.intensity() if window is None else resolve_intensity(np.zeros(1, np.uint8), window)
            else:
                intensity = resolve_intensity(self._intensity_sample(layer, window), window)
            self._intensities[key] = intensity
        return self._segmenters[(model, checkpoint, backend)], self._intensities[key]

    @staticmethod
    def _intensity_sample(layer, window) -> np.ndarray:
        """The pixels the automatic window is computed from: the whole image or stack, except for a video or cine
        layer (fmscope's lazy reader), whose frames are never all decoded: none for uint8 frames or a preset window
        (neither needs pixels), else the evenly spaced frames the tracker samples of the same file
        (:func:`fmscope.imaging.tracking.preprocess.sampled_frames`)."""
        data = layer.data[0] if layer.multiscale else layer.data
        if not isinstance(data, LazyFrames):
            return np.asarray(data)
        if window is not None or data.dtype == np.uint8:
            return np.zeros(1, data.dtype)
        from fmscope.imaging.tracking.preprocess import sampled_frames  # the tracking package imports torch

        return np.stack([data.frame(int(index)) for index in sampled_frames(len(data))])

    def _lazy_view(self, layer) -> lazy_image.LazyImage:
        """The lazy view of a huge layer's full-resolution data (one per layer data: its identity is computed once),
        with a multiscale layer's other levels for large prompts (read from the coarsest level they need)."""
        key = (id(layer), id(layer.data))
        if key not in self._lazy_views:
            coarser = tuple(layer.data[1:]) if layer.multiscale else ()
            self._lazy_views[key] = lazy_image.from_array(
                self._full_resolution(layer), f"napari layer '{layer.name}'", coarser=coarser
            )
        return self._lazy_views[key]

    def _slice_array(self, z: int | None) -> np.ndarray | lazy_image.LazyImage:
        """The plane to segment: an array, or the lazy view of a huge image (never read whole)."""
        if self.is_huge():
            return self._lazy_view(self._image_layer)
        data = self._full_resolution(self._image_layer)
        return np.asarray(data if z is None else data[z])

    def _current_z(self) -> int | None:
        if self._image_layer is None or len(self._spatial_shape(self._image_layer)) == 2:
            return None
        world = self.viewer.dims.point[-3]
        return int(
            np.clip(round(self._image_layer.world_to_data([world, 0, 0])[0]), 0, self._image_layer.data.shape[0] - 1)
        )

    # -- events --------------------------------------------------------------------------
    def _on_slice_changed(self, event=None) -> None:
        if self._image_layer in self.viewer.layers:  # not while it is being removed (dims may be 2D already)
            self._prefetch()

    def _on_view_moved(self, event=None) -> None:
        """Panning a huge image: prepare the zoom crops around the new view centre (the last job of that key wins)."""
        if self.is_huge() and self._zoom_hint is not None:
            self._prepare_zoom_crops(self._slice_array(None), self._engine_settings(), self._view_hint())

    def _view_hint(self) -> np.ndarray | None:
        """A box of the last small-object box's size centred on the view's centre (image pixels), or None."""
        if self._zoom_hint is None:
            return None
        centre = self._image_layer.world_to_data(self.viewer.scene.camera.center[-2:])[-2:]  # (y, x)
        height, width = self._spatial_shape(self._image_layer)
        half = (self._zoom_hint[2:] - self._zoom_hint[:2]) / 2
        x, y = np.clip(centre[1], half[0], width - 1 - half[0]), np.clip(centre[0], half[1], height - 1 - half[1])
        return np.array([x - half[0], y - half[1], x + half[0], y + half[1]])

    def _prefetch(self) -> None:
        """Embed the displayed slice ahead of the first prompt; changing slice cancels stale prefetches. A huge
        image gets no whole-image embedding: its window and identity are computed from a sample of tiles, then the
        zoom crops around the view's centre are prepared (once a small-object box gave their size)."""
        if self._image_layer is None:
            return
        z = self._current_z()
        image = self._slice_array(z)
        settings = self._engine_settings()
        if isinstance(image, lazy_image.LazyImage):
            self.worker.progress.emit("Sampling the image's tiles ...", 0, 1)

            def sample(job: Job) -> None:
                segmenter, intensity = self._engine(settings)
                segmenter.set_image(image, window=intensity)
                self.worker.progress.emit(
                    "Ready: draw a box (huge image: read crop by crop; no session is recorded).", 1, 1
                )

            def sampled(_result) -> None:  # then the crops around the view (a later foreground job cancels them)
                if self._image_layer is not None and self._slice_array(None) is image:
                    self._prepare_zoom_crops(image, settings, self._view_hint())

            self.worker.submit(sample, key="prefetch", on_done=sampled, on_error=self._on_error)
            return
        self.worker.progress.emit("Computing the image embedding ...", 0, 1)

        def embed(job: Job) -> None:
            segmenter, intensity = self._engine(settings)
            segmenter.set_image(image, window=intensity)
            job.check()
            segmenter.embed()
            self.worker.progress.emit("Ready: draw a box.", 1, 1)

        self.worker.submit(embed, key="prefetch", on_error=self._on_error)
        self._prepare_zoom_crops(image, settings)

    def _prepare_zoom_crops(self, image, settings: tuple, hint: np.ndarray | None = None) -> None:
        """In the background, embed the zoom crops around ``hint`` (default: the last small-object box) on
        ``image`` (nearest first), so that small boxes nearby are decodes; any other model job cancels it."""
        hint = self._zoom_hint if hint is None else hint
        radius = self.prepare_radius
        if hint is None:
            return

        def prepare(job: Job) -> None:
            segmenter, intensity = self._engine(settings)
            segmenter.set_image(image, window=intensity)
            segmenter.prepare(segmenter.zoom_crops_near(hint, radius), check=job.check)

        self.worker.submit(prepare, key="prepare", background=True, on_error=self._on_error)

    def _on_box_event(self, event) -> None:
        if getattr(event, "action", "added") != "added" or self._image_layer is None:
            return
        layer = self.viewer.layers[BOXES]
        if not len(layer.data) or not self._on_image_grid(layer):
            return
        started = time.perf_counter()
        vertices = np.asarray(layer.data[-1])
        z = None if vertices.shape[1] == 2 else int(round(vertices[0, 0]))
        if z is not None and np.ptp(np.round(vertices[:, 0])) > 0:  # drawn in a coronal / sagittal view
            self._say(
                f"This box spans slices {int(round(vertices[:, 0].min()))}..{int(round(vertices[:, 0].max()))}: it "
                "was drawn in a view that is not an axial (z) slice, and the panel reads boxes on z slices only. "
                "Nothing was changed. Fix: show z on the slider again (napari's transpose / roll dimension buttons, "
                "the canvas showing y and x), then draw the box.",
                error=True,
            )
            return
        ys, xs = vertices[:, -2], vertices[:, -1]
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        labels = self.labels_data()
        self.accept(clear_prompts=False)
        self.state.current = CurrentObject(self.state.next_label(labels), z, box)
        self._run_prompt(started)

    def _on_click_event(self, event) -> None:
        if getattr(event, "action", "added") != "added" or self._image_layer is None:
            return
        layer = self.viewer.layers[CLICKS]
        current = self.state.current
        if not self._on_image_grid(layer):
            return
        if current is None or not len(layer.data):
            self._say("Draw a box first; clicks refine the current object.")
            return
        point = np.asarray(layer.data[-1])
        if current.z is not None and int(round(point[0])) != current.z:
            self._say("Clicks refine the object on its own slice; go back to that slice or draw a new box.")
            return
        current.points.append((float(point[-1]), float(point[-2])))
        current.polarities.append(0 if self._negative else 1)
        self._run_prompt(time.perf_counter())

    def _run_prompt(self, started: float) -> None:
        current = self.state.current
        image = self._slice_array(current.z)
        settings = self._engine_settings()
        box, points, polarities = current.box.copy(), list(current.points), list(current.polarities)
        wall_started = time.time() - (time.perf_counter() - started)

        def predict(job: Job):
            segmenter, intensity = self._engine(settings)
            segmenter.set_image(image, window=intensity)
            job.check()
            result = segmenter.predict(box=box, points=points or None, labels=polarities or None)
            kind = "refine" if points else "box"
            plane = () if current.z is None else (current.z,)
            return result, Action.of_prompt(
                kind, current.label, segmenter, result, box, points, polarities, plane, wall_started
            )

        def paint(outcome) -> None:
            result, action = outcome
            if self.state.current is not current or LABELS not in self.viewer.layers:
                return
            layer = self.viewer.layers[LABELS]
            region = result.crop if self.is_huge() else None  # a huge image's mask covers its crop only
            if self.state.paint(self.labels_data(), current.z, current.label, result.mask, region):
                layer.refresh()
            self.session.record(action)
            self.last_latency_ms = (time.perf_counter() - started) * 1000
            self._say(f"Object {current.label}: {int(result.mask.sum())} px, score {result.score:.2f}.")
            if result.crop is not None:
                self._zoom_hint = box
            self._prepare_zoom_crops(image, settings)

        self.worker.submit(predict, key="prompt", on_done=paint, on_error=self._on_error)

    def _on_error(self, error: BaseException) -> None:
        self.panel.fail(error, "Model failure")

    # -- actions -------------------------------------------------------------------------
    def _clear_prompts(self) -> None:
        for name in (BOXES, CLICKS):
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                with layer.events.data.blocker():
                    layer.data = []

    def accept(self, clear_prompts: bool = True) -> None:
        """Keep the current object as it is; the next box starts a new one."""
        self.state.current = None
        if clear_prompts:
            self._clear_prompts()

    def new_object(self) -> None:
        """Finish the current object and wait for the next box."""
        self.accept()
        self._say("New object: draw a box.")

    def undo(self) -> None:
        """Restore the labels exactly as before the last model result, clear or propagation."""
        if LABELS in self.viewer.layers and self.state.undo(self.labels_data()):
            self.viewer.layers[LABELS].refresh()
            self.session.record(Action("undo", 0))
            self._say("Undone.")
        else:
            self._say("Nothing to undo.")

    def clear_object(self) -> None:
        """Remove the current object's label everywhere."""
        current = self.state.current
        if current is None or LABELS not in self.viewer.layers:
            return
        if self.state.erase(self.labels_data(), current.label):
            self.viewer.layers[LABELS].refresh()
            self.session.record(Action("erase", current.label, plane=() if current.z is None else (current.z,)))
        self.accept()

    def toggle_polarity(self) -> None:
        self.negative_box.setChecked(not self.negative_box.isChecked())

    def _set_negative(self, negative: bool) -> None:
        self._negative = negative
        if CLICKS in self.viewer.layers:
            self.viewer.layers[CLICKS].current_face_color = "red" if negative else "lime"

    def propagate(self) -> None:
        """Run the engine's volume propagation for the current object, both ways, within the slice range.

        The object as it is on its key slice (clicks and hand painting included) is kept there and
        propagated from; only the other slices are painted.
        """
        current = self.state.current
        if current is None or current.z is None:
            self._say("Propagation needs a current object on a stack or volume.", error=True)
            return
        labels = self.viewer.layers[LABELS].data
        key_mask = labels[current.z] == current.label
        kept = {current.label: key_mask} if key_mask.any() else {}
        box = box_from_mask(key_mask) if kept else current.box
        volume = np.asarray(self._image_layer.data)
        first, last = sorted((self.first_spin.value(), self.last_spin.value()))
        first, last = min(first, current.z), max(last, current.z)
        settings = self._engine_settings()

        def run(job: Job):
            from fmscope.imaging.volume import segment_volume

            segmenter, intensity = self._engine(settings)
            started = time.time()
            result = segment_volume(
                volume,
                current.z,
                {current.label: box},
                segmenter=segmenter,
                window=intensity,
                slice_range=(first, last),
                progress=job.progress,
                key_masks=kept,
            )
            return result, Action.of_propagation(
                current.label, segmenter, intensity, box, current.z, (first, last), started
            )

        state = self.state

        def paint(outcome) -> None:
            result, action = outcome
            if self.state is not state or LABELS not in self.viewer.layers:  # another image chosen meanwhile
                return
            layer = self.viewer.layers[LABELS]
            masks = {z: result[z] == current.label for z in range(first, last + 1) if not (kept and z == current.z)}
            if self.state.paint_slices(layer.data, current.label, masks):
                layer.refresh()
            self.session.record(action)
            found = [z for z in range(first, last + 1) if (layer.data[z] == current.label).any()]
            self._say(f"Object {current.label} on slices {found[0]}..{found[-1]}." if found else "Nothing found.")

        self.worker.submit(
            run,
            key="propagate",
            on_done=paint,
            on_error=self._on_error,
            on_cancelled=lambda: self.panel.cancelled("Cancelled; the labels are as they were."),
        )

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.worker.shutdown()
        self.session.shutdown()
        super().closeEvent(event)
