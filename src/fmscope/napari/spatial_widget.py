"""The Spatial widget: open a slide, compute domains, show genes and deconvolution, annotate cell types from a
reference, fine-tune from annotations.

The widget translates between napari layers and :mod:`fmscope.omics` calls. Everything slow
(reading, embedding, clustering, deconvolution, training, saving) runs on the
:class:`ModelWorker` thread on a light copy of the slide's table; results are written into the
slide and drawn on the Qt thread. Layers are in microns (see :mod:`slide_layers`); a failed
step shows a message and changes no layer and no data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import napari
import numpy as np
import pandas as pd
from napari.layers import Layer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from fmscope.errors import FmscopeError
from fmscope.napari.layer_choice import own, refill
from fmscope.napari.slide_layers import (
    categorical_layer,
    continuous_layer,
    slide_layers,
    yx_um,
)
from fmscope.napari.spatial_state import ANNOTATION_KEY, SpatialState, light_table
from fmscope.napari.status_panel import StatusPanel
from fmscope.napari.worker import Job, ModelWorker
from fmscope.omics.domains import DOMAIN_KEY
from fmscope.omics.image_expression_slide import PREDICTED_KEY as IMAGE_EXPRESSION_KEY
from fmscope.omics.io import Slide, read_slide
from fmscope.omics.reference import gene_expression, read_reference

DOMAINS, PREDICTED, UNCERTAINTY = "fmscope domains", "fmscope predicted domains", "fmscope uncertainty"
CELL_TYPES = "fmscope cell types"
BASELINE, SCGPT = "baseline (expression PCA)", "scGPT checkpoint folder"
RESOLUTIONS = (0.2, 0.4, 0.6, 1.0)
IMPUTED_SOURCES = {
    "fmscope_imputed": "imputed",
    "fmscope_imputed_scgpt_spatial": "imputed, scGPT-spatial",
    IMAGE_EXPRESSION_KEY: "from image",
}
ANNOTATION_MAX_SIDE = 4096


def parse_names(text: str) -> dict[int, str]:
    """'1: cortex, 2: white matter' -> {1: 'cortex', 2: 'white matter'}."""
    names = {}
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        key, _, name = part.partition(":")
        if not key.strip().isdigit() or not name.strip():
            raise FmscopeError(f"Cannot read the annotation name '{part}'.", "Write label: name, e.g. 1: cortex.")
        names[int(key)] = name.strip()
    return names


class SpatialWidget(QWidget):
    """Dock widget; created by napari through the npe2 manifest with the viewer."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = ModelWorker()
        self.state = SpatialState()
        self.last_result = None  # FinetuneResult of the last training, for tests and benchmarks
        self._build_ui()
        self.worker.progress.connect(self.panel.on_progress)
        self.viewer.layers.events.inserted.connect(self._refresh_slides)
        self.viewer.layers.events.removed.connect(self._refresh_slides)
        self._refresh_slides()

    # -- UI ------------------------------------------------------------------------------
    def _button(self, text: str, action) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(lambda _checked=False: action())
        return button

    def _build_ui(self) -> None:
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("Visium / Xenium / MERSCOPE folder, .zarr or .h5ad")
        self.units_spin = QDoubleSpinBox()
        self.units_spin.setRange(0, 1e6)
        self.units_spin.setDecimals(4)
        self.units_spin.setSpecialValueText("from the file")
        self.slide_combo = QComboBox()
        self.slide_combo.currentIndexChanged.connect(self._on_slide_chosen)
        open_box = QGroupBox("Slide")
        form = QFormLayout(open_box)
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(self._button("Open", lambda: self.open_slide(self.path_edit.text())))
        form.addRow("path", row)
        form.addRow("µm per unit (.h5ad)", self.units_spin)
        form.addRow("slide", self.slide_combo)

        self.encoder_combo = QComboBox()
        self.encoder_combo.addItems([BASELINE, SCGPT])
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("folder with args.json, vocab.json, best_model.pt")
        self.n_domains_spin = QSpinBox()
        self.n_domains_spin.setRange(0, 50)
        self.n_domains_spin.setSpecialValueText("any")
        self.resolution_combo = QComboBox()
        self.resolution_combo.currentIndexChanged.connect(self._on_resolution_chosen)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        domains_box = QGroupBox("Domains")
        form = QFormLayout(domains_box)
        form.addRow("encoder", self.encoder_combo)
        form.addRow("checkpoint", self.checkpoint_edit)
        form.addRow("domains", self.n_domains_spin)
        form.addRow(self._button("Compute domains", self.compute_domains))
        form.addRow("resolution", self.resolution_combo)
        form.addRow(self.legend)

        self.gene_combo = QComboBox()
        self.gene_combo.setEditable(True)
        self.reference_edit = QLineEdit()
        self.reference_edit.setPlaceholderText("labelled single-cell reference .h5ad")
        self.label_key_edit = QLineEdit()
        self.label_key_edit.setPlaceholderText("obs column with cell types")
        self.type_combo = QComboBox()
        show_box = QGroupBox("Genes and cell types")
        form = QFormLayout(show_box)
        row = QHBoxLayout()
        row.addWidget(self.gene_combo, 1)
        row.addWidget(self._button("Show", lambda: self.show_gene(self.gene_combo.currentText())))
        form.addRow("gene", row)
        form.addRow("reference", self.reference_edit)
        form.addRow("cell types in", self.label_key_edit)
        form.addRow(self._button("Deconvolve spots", self.deconvolve))
        row = QHBoxLayout()
        row.addWidget(self.type_combo, 1)
        row.addWidget(self._button("Show", lambda: self.show_proportion(self.type_combo.currentText())))
        form.addRow("proportion of", row)

        self.cell_type_reference_edit = QLineEdit()
        self.cell_type_reference_edit.setPlaceholderText("labelled single-cell reference .h5ad")
        self.cell_type_reference_edit.editingFinished.connect(self.read_label_columns)
        self.cell_type_key_combo = QComboBox()
        self.cell_type_key_combo.setEditable(True)
        self.cell_type_key_combo.setToolTip("the reference's obs column with cell types")
        self.min_confidence_spin = QDoubleSpinBox()
        self.min_confidence_spin.setRange(0, 1)
        self.min_confidence_spin.setSingleStep(0.05)
        self.min_confidence_spin.setValue(0.5)
        self.min_confidence_spin.setToolTip("cells whose best cell-type probability is below this are 'unknown'")
        self.cell_type_legend = QLabel()
        self.cell_type_legend.setWordWrap(True)
        self.evaluation_label = QLabel()
        self.evaluation_label.setStyleSheet("font-family: monospace")
        annotate_box = QGroupBox("Annotate from a reference")
        form = QFormLayout(annotate_box)
        row = QHBoxLayout()
        row.addWidget(self.cell_type_reference_edit, 1)
        row.addWidget(self._button("Browse ...", self.browse_reference))
        form.addRow("reference", row)
        form.addRow("cell types in", self.cell_type_key_combo)
        form.addRow("min confidence", self.min_confidence_spin)
        form.addRow(self._button("Annotate cell types", self.annotate_cell_types))
        form.addRow(self.cell_type_legend)
        form.addRow(self.evaluation_label)

        self.names_edit = QLineEdit()
        self.names_edit.setPlaceholderText("1: cortex, 2: white matter")
        self.head_edit = QLineEdit(str(Path.home() / "fmscope_heads" / "domain_head.pt"))
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(10, 100_000)
        self.epochs_spin.setValue(300)
        self.tune_layers_spin = QSpinBox()
        self.tune_layers_spin.setRange(0, 12)
        self.tune_layers_spin.setToolTip("scGPT only: fine-tune this many last layers before the head (0: head only)")
        self.resume_box = QCheckBox("resume from the head file")
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        tune_box = QGroupBox("Fine-tune from annotations")
        form = QFormLayout(tune_box)
        form.addRow(self._button("Add annotation layer", self.add_annotation_layer))
        form.addRow("label names", self.names_edit)
        form.addRow("head file", self.head_edit)
        form.addRow("epochs", self.epochs_spin)
        form.addRow("tune scGPT layers", self.tune_layers_spin)
        form.addRow(self.resume_box)
        row = QHBoxLayout()
        row.addWidget(self._button("Train head", self.train_head))
        row.addWidget(self._button("Apply head", self.apply_head))
        form.addRow(row)
        form.addRow(self.result_label)

        self.save_edit = QLineEdit()
        self.save_edit.setPlaceholderText("new .zarr (or .h5ad) for the slide and its results")
        save_box = QGroupBox("Save")
        row = QHBoxLayout(save_box)
        row.addWidget(self.save_edit)
        row.addWidget(self._button("Save", lambda: self.save(self.save_edit.text())))

        from fmscope.napari.image_expression_panel import ImageExpressionPanel

        self.image_expression = ImageExpressionPanel(self)  # "Predict expression from image"
        from fmscope.napari.joint_domains_panel import JointDomainsPanel

        self.joint_domains = JointDomainsPanel(self)  # "Several slides": domains shared across slides / sections
        self.panel = StatusPanel("Open a slide.", on_cancel=self.worker.cancel_all)
        self.status, self.progress = self.panel.status, self.panel.progress
        layout = QVBoxLayout(self)
        boxes = (
            open_box,
            domains_box,
            self.joint_domains,
            show_box,
            annotate_box,
            tune_box,
            self.image_expression,
            save_box,
            self.panel,
        )
        for box in boxes:
            layout.addWidget(box)
        layout.addStretch()

    def _fail(self, error: BaseException) -> None:
        self.panel.fail(error)

    def _run(self, message: str, fn, on_done, key: str | None = None) -> Job:
        self.worker.progress.emit(message, 0, 1)

        def done(result) -> None:
            self.panel.on_progress("", 1, 1)
            on_done(result)

        return self.worker.submit(fn, key=key, on_done=done, on_error=self._fail)

    # -- slides --------------------------------------------------------------------------
    def _refresh_slides(self, event=None) -> None:
        refill(self.slide_combo, self.state.update(self.viewer.layers))
        self.slide_combo.blockSignals(True)
        self.slide_combo.setCurrentText(self.state.name_of(self.state.current) or "")
        self.slide_combo.blockSignals(False)
        self._show_slide()

    @property
    def slide(self) -> Slide | None:
        """The slide the widget works on (chosen in the slide box)."""
        return self.state.current

    def _require_slide(self) -> Slide:
        if self.slide is None:
            raise FmscopeError("No slide is open.", "Open a slide first (path + Open, or drag it onto napari).")
        return self.slide

    def _on_slide_chosen(self, index: int = -1) -> None:
        self.state.choose(self.slide_combo.currentText())
        self._show_slide()

    def _show_slide(self) -> None:
        """Fill the gene and resolution boxes (and the several-slides list) for the current slide."""
        slide = self.slide
        self.joint_domains.refresh()
        self.gene_combo.clear()
        if slide is not None:
            genes = list(map(str, slide.adata.var_names))
            for key, suffix in IMPUTED_SOURCES.items():
                imputed = slide.adata.obsm.get(key)
                if isinstance(imputed, pd.DataFrame):
                    genes += [f"{g} ({suffix})" for g in imputed.columns]
            self.gene_combo.addItems(genes)
            refill(
                self.resolution_combo,
                sorted(c[len(DOMAIN_KEY) + 2 :] for c in slide.adata.obs if c.startswith(DOMAIN_KEY + "_r")),
            )

    def _put_layer(self, layer_tuple: tuple) -> Layer:
        """Add a layer, replacing one of the same name in place (same position in the layer list)."""
        data, meta, layer_type = layer_tuple
        layer = Layer.create(data, meta, layer_type)
        if meta["name"] in self.viewer.layers:
            index = self.viewer.layers.index(meta["name"])
            self.viewer.layers.pop(index)
            self.viewer.layers.insert(index, layer)
        else:
            self.viewer.add_layer(layer)
        return layer

    def open_slide(self, path: str) -> None:
        """Read a slide on the worker thread, then add its layers (tissue image, cells / spots)."""
        if not path:
            self._fail(FmscopeError("No path given.", "Type the slide's path next to Open."))
            return
        units = self.units_spin.value() or None

        def add(slide: Slide) -> None:
            for layer in slide_layers(slide):
                self._put_layer(layer)
            self.viewer.reset_view()
            self.state.current = slide
            self._refresh_slides()
            self.status.setText(
                f"Opened {Path(path).name}: {slide.adata.n_obs} cells / spots x {slide.adata.n_vars} genes."
            )

        self._run(f"Reading {Path(path).name} ...", lambda job: read_slide(path, microns_per_unit=units), add)

    # -- domains -------------------------------------------------------------------------
    def _checkpoint(self) -> str | None:
        if self.encoder_combo.currentText() == BASELINE:
            return None
        folder = self.checkpoint_edit.text().strip()
        if not folder:
            raise FmscopeError("The scGPT encoder needs its checkpoint folder.", "Fill in checkpoint, or use baseline.")
        return folder

    def compute_domains(self) -> None:
        """Embed (chosen encoder) and cluster at several resolutions; show the domains with a legend."""
        try:
            slide, checkpoint = self._require_slide(), self._checkpoint()
        except FmscopeError as error:
            self._fail(error)
            return
        light = light_table(slide.adata)
        n_domains = self.n_domains_spin.value() or None

        def compute(job: Job):
            from fmscope.omics.domains import spatial_domains
            from fmscope.omics.embed import embed_cells

            embedding, method = embed_cells(light, checkpoint, progress=job.progress)
            job.check()
            self.worker.progress.emit("Clustering ...", 0, 1)
            chosen = spatial_domains(light, embedding, resolutions=RESOLUTIONS, n_domains=n_domains)
            return light, chosen, method

        def show(result) -> None:
            light, chosen, method = result
            for column in light.obs.columns:
                slide.adata.obs[column] = light.obs[column].to_numpy()
            for key in ("X_fmscope", "X_fmscope_smoothed"):
                slide.adata.obsm[key] = light.obsm[key]
            slide.adata.uns.setdefault("fmscope", {})["encoder"] = method
            self._show_slide()
            self.resolution_combo.setCurrentText(f"{chosen:g}")
            self._show_domains(slide)
            self.status.setText(f"{slide.adata.obs[DOMAIN_KEY].nunique()} domains at resolution {chosen:g} ({method}).")

        self._run("Embedding cells ...", compute, show, key="domains")

    def _on_resolution_chosen(self, index: int = -1) -> None:
        slide = self.slide
        column = f"{DOMAIN_KEY}_r{self.resolution_combo.currentText()}"
        if slide is not None and column in slide.adata.obs:
            slide.adata.obs[DOMAIN_KEY] = slide.adata.obs[column].to_numpy()
            self._show_domains(slide)

    def _show_domains(self, slide: Slide, column: str = DOMAIN_KEY, name: str = DOMAINS) -> None:
        values = slide.adata.obs[column].astype(str).to_numpy()
        layer, colours = categorical_layer(slide, values, name)
        self._put_layer(layer)
        counts = pd.Series(values).value_counts()
        self.legend.setText(
            " ".join(
                f'<span style="color:{colour}">■</span>&nbsp;{category}&nbsp;({counts[category]})'
                for category, colour in colours.items()
            )
        )

    # -- genes and cell types ------------------------------------------------------------
    def show_gene(self, gene: str) -> None:
        """Colour the cells by a measured gene (log-normalised) or an imputed one."""
        try:
            slide = self._require_slide()
            adata = slide.adata
            source = next((key for key, suffix in IMPUTED_SOURCES.items() if gene.endswith(f" ({suffix})")), None)
            if source is not None:
                values = adata.obsm[source][gene.rsplit(" (", 1)[0]].to_numpy()
            else:
                values = gene_expression(adata, gene)
        except FmscopeError as error:
            self._fail(error)
            return
        self._put_layer(continuous_layer(slide, values, f"fmscope gene {gene}"))
        self.status.setText(f"Showing {gene}.")

    def deconvolve(self) -> None:
        """Cell-type proportions per spot from the reference (pseudo-spots in the chosen encoder's space)."""
        try:
            slide = self._require_slide()
            label_key = self.label_key_edit.text().strip()
            reference = read_reference(self.reference_edit.text().strip(), label_key=label_key or None).adata
            checkpoint = self._checkpoint()
        except FmscopeError as error:
            self._fail(error)
            return
        light = light_table(slide.adata)

        def compute(job: Job):
            from fmscope.omics.deconvolve_embedding import deconvolve_embedding

            return deconvolve_embedding(light, reference, label_key, scgpt_folder=checkpoint)

        def show(proportions: pd.DataFrame) -> None:
            slide.adata.obsm["fmscope_proportions"] = proportions
            self.type_combo.clear()
            self.type_combo.addItems(list(proportions.columns))
            self.show_proportion(str(proportions.columns[0]))

        self._run("Deconvolving spots ...", compute, show, key="deconvolve")

    def show_proportion(self, cell_type: str) -> None:
        slide = self.slide
        proportions = None if slide is None else slide.adata.obsm.get("fmscope_proportions")
        if proportions is None or cell_type not in proportions:
            self._fail(FmscopeError(f"No proportions for '{cell_type}'.", "Run Deconvolve spots first."))
            return
        self._put_layer(
            continuous_layer(
                slide, proportions[cell_type].to_numpy(), f"fmscope proportion {cell_type}", colormap="magma"
            )
        )

    # -- cell types from a reference -----------------------------------------------------
    def browse_reference(self) -> None:
        """Choose the reference .h5ad in a file dialog; its obs columns fill the cell-type column box."""
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Labelled single-cell reference", "", "AnnData (*.h5ad)")
        if path:
            self.cell_type_reference_edit.setText(path)
            self.read_label_columns()

    def read_label_columns(self) -> None:
        """Fill the cell-type column box with the reference's obs columns (read on the worker thread)."""
        path = self.cell_type_reference_edit.text().strip()
        if not path:
            return

        def read(job: Job) -> list[str]:
            from fmscope.omics.reference import obs_columns

            return obs_columns(path)

        def fill(names: list[str]) -> None:
            current = self.cell_type_key_combo.currentText()
            refill(self.cell_type_key_combo, names)
            self.cell_type_key_combo.setCurrentText(current if current in names else names[0] if names else "")
            self.status.setText(f"{Path(path).name}: choose the column with cell types.")

        self._run(f"Reading {Path(path).name} ...", read, fill, key="label_columns")

    def annotate_cell_types(self) -> None:
        """Cell types of the slide's cells from the reference (chosen encoder); a categorical layer with a legend
        and the held-out evaluation beside L1 logistic regression and kNN."""
        try:
            slide, checkpoint = self._require_slide(), self._checkpoint()
            path, label_key = self.cell_type_reference_edit.text().strip(), self.cell_type_key_combo.currentText()
            if not label_key.strip():
                raise FmscopeError("No cell-type column chosen.", "Choose the reference's column with cell types.")
        except FmscopeError as error:
            self._fail(error)
            return
        light, min_confidence = light_table(slide.adata), self.min_confidence_spin.value()

        def compute(job: Job):
            from fmscope.omics.annotate import BaselinePCA, ScGPTEncoder, annotate

            reference = read_reference(path, label_key=label_key).adata
            encoder = ScGPTEncoder(checkpoint) if checkpoint else BaselinePCA()
            labels = reference.obs[label_key].astype(str).str.strip().to_numpy()

            def step(message: str) -> None:
                job.check()
                self.worker.progress.emit(message, 0, 1)

            return annotate(light, reference, labels, encoder, min_confidence=min_confidence, step=step)

        def show(result) -> None:
            from fmscope.omics.annotate import CELL_TYPE_KEY, store_annotation

            store_annotation(slide.adata, result)
            values = slide.adata.obs[CELL_TYPE_KEY].astype(str).to_numpy()
            layer, colours = categorical_layer(slide, values, CELL_TYPES)
            self._put_layer(layer)
            counts = pd.Series(values).value_counts()
            self.cell_type_legend.setText(
                " ".join(
                    f'<span style="color:{colour}">■</span>&nbsp;{category}&nbsp;({counts[category]})'
                    for category, colour in colours.items()
                )
            )
            self.evaluation_label.setText(result.evaluation.table())
            self.status.setText(f"Cell types of {len(values)} cells from {Path(path).name} ({result.encoder}).")

        self._run("Annotating cell types ...", compute, show, key="annotate")

    # -- fine-tuning ---------------------------------------------------------------------
    def add_annotation_layer(self) -> Layer | None:
        """An empty Labels layer over the current slide (microns) to paint regions: label k = a domain.

        The layer belongs to that slide only; when the slide has one already, it is selected, not replaced.
        """
        try:
            slide = self._require_slide()
        except FmscopeError as error:
            self._fail(error)
            return None
        existing = self.state.annotation_layer(slide, self.viewer.layers)
        if existing is not None:
            self.viewer.layers.selection.active = existing
            self.status.setText(f"'{existing.name}' is this slide's annotation layer: paint on it.")
            return existing
        yx = yx_um(slide)
        low, high = yx.min(axis=0), yx.max(axis=0)
        pixel = max(slide.cell_diameter_um / 2, float((high - low).max()) / ANNOTATION_MAX_SIDE)
        shape = tuple(int(v) for v in np.floor((high - low) / pixel) + 1)
        layer = own(
            self.viewer.add_labels(
                np.zeros(shape, dtype=np.uint8),
                name=self.state.annotation_name(slide),
                scale=(pixel, pixel),
                translate=tuple(low),
                units=("um", "um"),
                metadata={ANNOTATION_KEY: slide},
            )
        )
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self.status.setText("Paint regions (label 1, 2, ...), name them (1: cortex, ...), then Train head.")
        return layer

    def cell_annotations(self, slide: Slide) -> np.ndarray:
        """The domain name painted under each cell of ``slide`` on its own annotation layer ('' where unpainted)."""
        layer = self.state.annotation_layer(slide, self.viewer.layers)
        if layer is None:
            name = self.state.name_of(slide) or "this slide"
            raise FmscopeError(
                f"Slide '{name}' has no annotation layer (layers painted for other slides are not used for it).",
                "Choose the slide, click Add annotation layer and paint regions.",
            )
        if (
            not np.allclose(layer.affine.affine_matrix, np.eye(3))
            or layer.rotate is not None
            and not np.allclose(layer.rotate, np.eye(2))
        ):
            raise FmscopeError("The annotation layer is rotated or sheared.", "Add a new annotation layer.")
        data = np.asarray(layer.data)
        index = np.round((yx_um(slide) - np.asarray(layer.translate)) / np.asarray(layer.scale)).astype(int)
        inside = np.all((index >= 0) & (index < data.shape), axis=1)
        codes = np.zeros(len(index), dtype=int)
        codes[inside] = data[index[inside, 0], index[inside, 1]]
        names = parse_names(self.names_edit.text())
        return np.array(["" if code == 0 else names.get(code, f"region {code}") for code in codes], dtype=str)

    def train_head(self) -> None:
        """Train the domain head on the painted cells; show predictions, uncertainty and accuracy."""
        try:
            slide = self._require_slide()
            labels = self.cell_annotations(slide)
            from fmscope.omics.finetune import holdout_split

            checkpoint = self._checkpoint()
            tune_layers = self.tune_layers_spin.value()
            if tune_layers and checkpoint is None:
                raise FmscopeError(
                    "Tuning scGPT layers needs an scGPT checkpoint.",
                    "Give the checkpoint folder, or set 'tune scGPT layers' to 0.",
                )
            holdout_split(labels, 0.3)  # refuses one-class / one-cell annotations before any work
        except FmscopeError as error:
            self._fail(error)
            return
        light = light_table(slide.adata)
        domains = slide.adata.obs[DOMAIN_KEY].astype(str).to_numpy() if DOMAIN_KEY in slide.adata.obs else None
        head_path, epochs, resume = self.head_edit.text().strip(), self.epochs_spin.value(), self.resume_box.isChecked()

        def train(job: Job):
            from fmscope.omics.finetune import finetune_head, slide_encoder

            return finetune_head(
                light,
                labels,
                head_path,
                slide_encoder(light, checkpoint),
                epochs=epochs,
                resume=resume,
                domains=domains,
                progress=job.progress,
                tune_layers=tune_layers,
            )

        def show(result) -> None:
            self.last_result = result
            self._show_predictions(slide, result.classes, result.probabilities)
            self.result_label.setText(result.summary())
            self.status.setText(f"Head saved to {head_path}.")

        self._run("Training the head ...", train, show, key="train")

    def apply_head(self) -> None:
        """Apply the head file to the current slide (e.g. one trained on another slide)."""
        try:
            slide = self._require_slide()
        except FmscopeError as error:
            self._fail(error)
            return
        light, head_path = light_table(slide.adata), self.head_edit.text().strip()
        checkpoint = self.checkpoint_edit.text().strip() or None

        notices: list[str] = []

        def compute(job: Job):
            from fmscope.omics.finetune import apply_head

            return apply_head(head_path, light, checkpoint, notices)

        def show(result) -> None:
            self._show_predictions(slide, *result)
            self.status.setText(" ".join([f"Applied {Path(head_path).name}.", *notices]))

        self._run("Applying the head ...", compute, show, key="apply")

    def _show_predictions(self, slide: Slide, classes: list[str], probabilities: np.ndarray) -> None:
        from fmscope.omics.finetune import PREDICTED_KEY, UNCERTAINTY_KEY, store_predictions

        store_predictions(slide.adata, classes, probabilities)
        self._show_domains(slide, PREDICTED_KEY, PREDICTED)
        self._put_layer(
            continuous_layer(slide, slide.adata.obs[UNCERTAINTY_KEY].to_numpy(), UNCERTAINTY, colormap="magma")
        )

    # -- saving --------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the slide and its results to a new SpatialData .zarr (or .h5ad), atomically."""
        try:
            slide = self._require_slide()
            if not path:
                raise FmscopeError("No output path given.", "Type a new .zarr path next to Save.")
        except FmscopeError as error:
            self._fail(error)
            return
        snapshot = dataclasses.replace(slide, adata=slide.adata.copy())

        def write(job: Job) -> None:
            from fmscope.omics.store import write_result

            return write_result(snapshot, path)

        def saved(notes: list[str]) -> None:  # names written as legal keys are said (fmscope.omics.legal_keys)
            self.status.setText(" ".join([f"Saved {path}.", *notes]))

        self._run(f"Saving {Path(path).name} ...", write, saved)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.worker.shutdown()
        super().closeEvent(event)
