"""'Train on my objects': fine-tune the Segment widget's model on the objects labelled so far.

Training runs on the widget's :class:`ModelWorker` thread with progress and Cancel; when it
ends, the run is journaled in the image's session (:mod:`fmscope.session_record.training`), the
widget's model becomes the new fmscope model file (its embeddings are keyed by the new weights'
hash, so nothing computed with the old weights is reused) and the status line shows the held-out
Dice before and after.
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLineEdit, QPushButton, QSpinBox, QWidget

from fmscope.errors import FmscopeError
from fmscope.imaging.intensity import resolve_intensity
from fmscope.napari.layer_choice import refill
from fmscope.napari.worker import Job
from fmscope.training.settings import TrainSettings


class TrainPanel(QWidget):
    """Labels layer, epochs, model file to write; Train / Cancel. ``owner`` is the SegmentWidget."""

    def __init__(self, owner) -> None:
        super().__init__()
        self.owner = owner
        self._job: Job | None = None
        self.last_report = None  # the TrainingReport of the last finished training
        self.labels_combo = QComboBox()
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 500)
        self.epochs_spin.setValue(TrainSettings().epochs)
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("model file to write (default ~/fmscope_models/<image>.pt)")
        self.train_button = QPushButton("Train on my objects")
        self.train_button.clicked.connect(self.train)
        self.cancel_button = QPushButton("Cancel training")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("train on labels", self.labels_combo)
        form.addRow("epochs", self.epochs_spin)
        form.addRow("tuned model file", self.output_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)

    def refresh_layers(self) -> None:
        """Offer every Labels layer (the widget's own first)."""
        names = [layer.name for layer in self.owner.viewer.layers if isinstance(layer, napari.layers.Labels)]
        names.sort(key=lambda name: not name.startswith("fmscope"))
        refill(self.labels_combo, names)

    def _output(self, image_name: str) -> Path:
        text = self.output_edit.text().strip()
        return Path(text).expanduser() if text else Path.home() / "fmscope_models" / f"{image_name}.pt"

    def train(self) -> None:
        """Train on the chosen Labels layer over the current image or stack, on the worker thread."""
        owner = self.owner
        layer_name = self.labels_combo.currentText()
        if owner._image_layer is None or layer_name not in owner.viewer.layers:
            owner.panel.fail(
                FmscopeError("No image or labels to train on.", "Choose an image, label some objects, then train.")
            )
            return
        image = np.asarray(owner._image_layer.data)
        labels = np.asarray(owner.viewer.layers[layer_name].data).copy()
        model, checkpoint, window, _, _ = owner._engine_settings()
        output = self._output(owner._image_layer.name)
        settings = TrainSettings(epochs=self.epochs_spin.value())
        name = owner._image_layer.name
        worker = owner.worker

        def run(job: Job):
            from fmscope.session_record.training import train_action
            from fmscope.training.segmenter import labelled_images, train_segmenter

            started = time.time()
            items = labelled_images(image, labels, name)
            # One intensity mapping for the whole stack, as the widget segments with.
            intensity = resolve_intensity(image, window)
            report = train_segmenter(
                items,
                output,
                model=model,
                checkpoint=checkpoint or None,
                window=intensity,
                settings=settings,
                progress=job.progress,
            )
            return report, train_action(report, [name], started)

        self._set_running(True)
        worker.progress.emit("Training: embedding the labelled images ...", 0, 1)

        def cancelled() -> None:  # e.g. the Cancel beside the widget's progress bar
            if self._job is None or self._job is job:
                self.cancel()

        job = worker.submit(
            run, key="train", on_done=self._on_trained, on_error=self._on_failed, on_cancelled=cancelled
        )
        self._job = job

    def cancel(self) -> None:
        """Stop training after the current step; its last epoch checkpoint stays beside the model file."""
        if self._job is not None:
            self._job.cancel()
            self._job = None
        self._set_running(False)
        self.owner.panel.on_progress("Training cancelled; the model is unchanged.", 1, 1)

    def _set_running(self, running: bool) -> None:
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _on_failed(self, error: BaseException) -> None:
        self._job = None
        self._set_running(False)
        self.owner.panel.fail(error, "Training failed")

    def _on_trained(self, outcome) -> None:
        """The run is journaled in the image's session (a ``train`` action: later prompts with the new model file
        are recorded in the same session), then the widget's model becomes the new file."""
        report, action = outcome
        self._job = None
        self._set_running(False)
        owner = self.owner
        path = str(report.output)
        if owner.model_combo.findText(path) < 0:
            owner.model_combo.addItem(path)
        owner.session.record(action)
        owner.model_combo.setCurrentText(path)
        self.last_report = report
        owner.panel.on_progress(f"Now using {Path(path).name}: {report.summary()}", 1, 1)
