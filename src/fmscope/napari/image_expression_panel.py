"""The Spatial widget's "Predict expression from image" section (BLEEP-style, frozen LiteMedSAM TinyViT).

*Train on this slide* fits the model on the open slide's spots (worker thread, progress,
*Cancel*), writes the model file, shows the blocked hold-out r next to the baselines, and
predicts every model gene on a grid over the whole tissue (including tissue without spots)
and on the slide's own spots (``obsm["fmscope_image_expression"]``, saved with the slide by
*Save*). *Predict with model file* applies a model trained elsewhere. *Save grid* writes the
grid predictions as a new SpatialData ``.zarr`` of points, like ``fmscope image-expression predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
)

from fmscope.errors import FmscopeError
from fmscope.napari.slide_layers import continuous_layer
from fmscope.omics.image_expression_slide import DEFAULT_PATCH_UM, PREDICTED_KEY
from fmscope.omics.io import Slide
from fmscope.outputs import HEAD_SUFFIXES, Output, check_outputs

if TYPE_CHECKING:
    from fmscope.napari.spatial_widget import SpatialWidget

LAYER_PREFIX = "fmscope from image"


class ImageExpressionPanel(QGroupBox):
    """Train / apply an image-to-expression model on the widget's current slide; show predicted genes."""

    def __init__(self, owner: SpatialWidget) -> None:
        super().__init__("Predict expression from image")
        self.owner = owner
        self.encoder = None  # PatchEncoder, made on the worker thread; keeps its tile cache between runs
        self.grid: Slide | None = None  # predicted points over the tissue
        self.report = None  # HoldoutReport of the last training
        self._job = None
        self.model_edit = QLineEdit(str(Path.home() / "fmscope_models" / "image_expression.pt"))
        self.patch_spin = _spin(20, 760, DEFAULT_PATCH_UM)
        self.grid_spin = _spin(10, 5000, 100.0)
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.gene_combo = QComboBox()
        self.save_edit = QLineEdit()
        self.save_edit.setPlaceholderText("new .zarr of the predicted grid")
        form = QFormLayout(self)
        form.addRow("model file", self.model_edit)
        form.addRow("patch (µm)", self.patch_spin)
        form.addRow("grid step (µm)", self.grid_spin)
        row = QHBoxLayout()
        for text, action in (
            ("Train on this slide", self.train),
            ("Predict with model file", self.predict),
            ("Cancel", self.cancel),
        ):
            button = QPushButton(text)
            button.clicked.connect(lambda _checked=False, act=action: act())
            row.addWidget(button)
        form.addRow(row)
        form.addRow(self.result_label)
        row = QHBoxLayout()
        row.addWidget(self.gene_combo, 1)
        show = QPushButton("Show")
        show.clicked.connect(lambda _checked=False: self.show_gene(self.gene_combo.currentText()))
        row.addWidget(show)
        form.addRow("predicted gene", row)
        row = QHBoxLayout()
        row.addWidget(self.save_edit)
        save = QPushButton("Save grid")
        save.clicked.connect(lambda _checked=False: self.save_grid(self.save_edit.text()))
        row.addWidget(save)
        form.addRow(row)

    # -- work on the model thread ---------------------------------------------------------
    def _encoder(self, scale: float):
        from fmscope.omics.image_patches import PatchEncoder

        if self.encoder is None or self.encoder.encoder_um_per_px != scale:
            self.encoder = PatchEncoder(scale)
        return self.encoder

    def _predict_all(self, job, model, slide: Slide, grid_um: float, model_path: str):
        """(grid Slide, spot predictions) for ``slide``: grid over its tissue, and its own spots."""
        from fmscope.omics.image_expression_slide import predict_on_tissue, prediction_slide, slide_tissue
        from fmscope.omics.image_patches import tissue_grid

        progress = job.progress
        encoder = self._encoder(model.encoder_um_per_px)
        tissue = slide_tissue(slide, model.encoder_um_per_px)
        centres = tissue_grid(tissue, grid_um)
        grid = prediction_slide(
            tissue,
            centres,
            predict_on_tissue(model, tissue, centres, encoder, progress=progress),
            grid_um,
            model_path,
            slide.source,
        )
        spots = predict_on_tissue(model, tissue, slide.adata.obsm["spatial"], encoder, progress=progress)
        spots.index = slide.adata.obs_names.copy()
        return grid, spots

    def train(self) -> None:
        """Train on the current slide's spots; then predict on the tissue grid and the spots."""
        from fmscope.napari.spatial_state import light_table
        from fmscope.omics.image_expression import check_spot_count

        try:
            slide = self.owner._require_slide()
            check_spot_count(slide.adata.n_obs)
            model_path = self._model_path()
        except FmscopeError as error:
            self.owner._fail(error)
            return
        light = Slide(
            light_table(slide.adata),
            slide.image,
            slide.image_microns_per_pixel,
            slide.spot_diameter_um,
            slide.source,
            slide.image_levels,
        )
        patch_um, grid_um = self.patch_spin.value(), self.grid_spin.value()

        def compute(job):
            from fmscope.omics.image_expression_slide import DEFAULT_ENCODER_UM_PER_PX, train_on_slide

            result = train_on_slide(
                light, self._encoder(DEFAULT_ENCODER_UM_PER_PX), patch_um=patch_um, progress=job.progress
            )
            result.model.save(model_path)
            return result.report, *self._predict_all(job, result.model, light, grid_um, model_path)

        def show(output) -> None:
            self.report = output[0]
            self._show(slide, *output[1:])
            self.result_label.setText(self.report.summary())
            self.owner.status.setText(f"Model saved to {model_path}.")

        self._job = self.owner._run("Training expression from image ...", compute, show, key="image_expression")

    def predict(self) -> None:
        """Apply the model file to the current slide's tissue."""
        try:
            slide = self.owner._require_slide()
            model_path = self._model_path(must_exist=True)
        except FmscopeError as error:
            self.owner._fail(error)
            return
        grid_um = self.grid_spin.value()

        def compute(job):
            from fmscope.omics.image_expression import load_model_file

            return self._predict_all(job, load_model_file(model_path), slide, grid_um, model_path)

        def show(output) -> None:
            self._show(slide, *output)
            self.owner.status.setText(f"Predicted {output[1].shape[1]} genes with {Path(model_path).name}.")

        self._job = self.owner._run("Predicting expression from image ...", compute, show, key="image_expression")

    def cancel(self) -> None:
        if self._job is not None and not self._job.cancelled:
            self._job.cancel()
            self.owner.panel.on_progress("", 1, 1)
            self.owner.status.setText("Cancelled.")

    def _model_path(self, must_exist: bool = False) -> str:
        path = self.model_edit.text().strip()
        if not path:
            raise FmscopeError("No model file given.", "Type a path for the model (.pt).")
        if must_exist and not Path(path).is_file():
            raise FmscopeError(f"No such model file: {path}", "Train on a slide first, or give an existing model.")
        if not must_exist:  # refused before training, not after it
            check_outputs([Output("The model file", path, HEAD_SUFFIXES)])
        return path

    # -- results on the Qt thread --------------------------------------------------------
    def _show(self, slide: Slide, grid: Slide, spots: pd.DataFrame) -> None:
        self.grid = grid
        slide.adata.obsm[PREDICTED_KEY] = spots
        self.owner._on_slide_chosen()
        genes = list(map(str, grid.adata.var_names))
        self.gene_combo.clear()
        self.gene_combo.addItems(genes)
        self.show_gene(genes[0])

    def show_gene(self, gene: str) -> None:
        """The gene predicted on the tissue grid as a colour map (a Points layer in microns)."""
        if self.grid is None or gene not in self.grid.adata.var_names:
            self.owner._fail(FmscopeError(f"No prediction for '{gene}'.", "Train or predict first."))
            return
        values = np.asarray(self.grid.adata[:, gene].X).ravel()
        data, meta, kind = continuous_layer(self.grid, values, f"{LAYER_PREFIX} {gene}", colormap="inferno")
        meta["metadata"] = {"fmscope_image_expression_grid": True}  # not a slide of its own
        meta["opacity"] = 0.8
        self.owner._put_layer((data, meta, kind))
        self.owner.status.setText(f"Showing {gene} predicted from the image at {len(values)} points.")

    def save_grid(self, path: str) -> None:
        """Write the predicted grid to a new SpatialData .zarr (or .h5ad), atomically."""
        if self.grid is None or not path:
            self.owner._fail(FmscopeError("Nothing to save, or no path.", "Train or predict, then type a new .zarr."))
            return
        grid = self.grid

        def write(job) -> None:
            from fmscope.omics.store import write_result

            return write_result(grid, path)

        def saved(notes: list[str]) -> None:  # names written as legal keys are said (fmscope.omics.legal_keys)
            self.owner.status.setText(" ".join([f"Saved {path}.", *notes]))

        self.owner._run(f"Saving {Path(path).name} ...", write, saved)


def _spin(low: float, high: float, value: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(0)
    spin.setValue(value)
    return spin
