"""The Spatial widget's "Several slides" section: domains shared across slides, or across the sections of one.

The open slides are listed with a tick box each; *Joint domains* embeds the ticked slides together
(:mod:`fmscope.omics.multislide`: genes centred per section, Harmony, neighbours within each slide,
one Leiden run), or, with one slide ticked, its sections as the *section column* tells them apart
(e.g. ``library_id`` in a concatenated ``.h5ad``). The encoder and domain count are the Domains
box's. Each slide gets its domains (``obs["fmscope_domain"]``, saved with it by *Save*) and a layer
``fmscope domains (<slide>)``; the integration figures (fmscope vs PCA without correction vs
Harmony) are shown below. The work runs on the widget's worker thread on light copies of the tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QListWidget, QListWidgetItem, QPushButton

from fmscope.errors import FmscopeError
from fmscope.napari.layer_choice import refill
from fmscope.napari.spatial_state import light_table
from fmscope.omics.domains import DOMAIN_KEY

if TYPE_CHECKING:
    from fmscope.napari.spatial_widget import SpatialWidget

FOUND = "(found: library_id, sample, ...)"
LAYER = "fmscope domains"


class JointDomainsPanel(QGroupBox):
    """Tick slides (or pick one slide's section column), compute domains shared across them."""

    def __init__(self, owner: SpatialWidget) -> None:
        super().__init__("Several slides")
        self.owner = owner
        self.result = None  # JointDomains of the last run, for tests and benchmarks
        self.slide_list = QListWidget()
        self.slide_list.setMaximumHeight(90)
        self.section_combo = QComboBox()
        self.section_combo.setToolTip("with one slide ticked: the obs column naming each cell's section")
        self.figures_label = QLabel()
        self.figures_label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.figures_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        button = QPushButton("Joint domains")
        button.clicked.connect(lambda _checked=False: self.compute())
        form = QFormLayout(self)
        form.addRow("slides", self.slide_list)
        form.addRow("section column", self.section_combo)
        form.addRow(button)
        form.addRow(self.figures_label)

    def refresh(self) -> None:
        """List the open slides (ticks kept by name) and the current slide's obs columns."""
        ticked = set(self.ticked_names())
        self.slide_list.clear()
        for name in self.owner.state.slides:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in ticked else Qt.CheckState.Unchecked)
            self.slide_list.addItem(item)
        slide = self.owner.slide
        columns = [] if slide is None else [str(c) for c in slide.adata.obs.columns if not str(c).startswith("fmscope")]
        refill(self.section_combo, [FOUND, *columns])

    def ticked_names(self) -> list[str]:
        items = (self.slide_list.item(i) for i in range(self.slide_list.count()))
        return [item.text() for item in items if item.checkState() == Qt.CheckState.Checked]

    def tick(self, names: list[str]) -> None:
        """Tick exactly the slides shown as ``names``."""
        for i in range(self.slide_list.count()):
            item = self.slide_list.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names else Qt.CheckState.Unchecked)

    def _chosen(self):
        """(slides, their names, section column or None), refused when there is nothing to join."""
        names = self.ticked_names() or ([self.owner.state.name_of(self.owner.slide)] if self.owner.slide else [])
        if not names:
            raise FmscopeError("No slide is open.", "Open two slides (or one holding several sections).")
        key = None if self.section_combo.currentText() in ("", FOUND) else self.section_combo.currentText()
        return [self.owner.state.slides[name] for name in names], names, key

    def compute(self) -> None:
        """Joint domains of the ticked slides (one ticked: of its sections); layers and figures when done."""
        try:
            slides, names, key = self._chosen()
            checkpoint = self.owner._checkpoint()
        except FmscopeError as error:
            self.owner._fail(error)
            return
        lights = [light_table(slide.adata) for slide in slides]
        if key is not None and len(slides) == 1:
            lights[0].obs[key] = slides[0].adata.obs[key].to_numpy()
        n_domains = self.owner.n_domains_spin.value() or None

        def compute(job):
            from fmscope.omics.multislide import joint_domains, joint_table, section_labels, spread

            if len(lights) == 1:
                joint, sections = lights[0], section_labels(lights[0], key, names[0])
                if sections is None or len(set(sections)) < 2:
                    raise FmscopeError(
                        f"{names[0]} holds one section only.",
                        "Tick several slides, or choose the column that names each cell's section.",
                    )
            else:
                joint, sections = joint_table(lights, names)
            job.check()
            result = joint_domains(joint, sections, checkpoint=checkpoint, n_domains=n_domains, progress=job.progress)
            if len(lights) > 1:
                spread(joint, lights)
            return result

        def show(result) -> None:
            from fmscope.omics.integration_metrics import figures_table

            self.result = result
            for slide, name, light in zip(slides, names, lights):
                for column in light.obs.columns:
                    if str(column).startswith(DOMAIN_KEY):
                        slide.adata.obs[column] = light.obs[column].to_numpy()
                for key_ in ("X_fmscope", "X_fmscope_smoothed"):
                    slide.adata.obsm[key_] = light.obsm[key_]
                slide.adata.uns.setdefault("fmscope", {})["encoder"] = result.method
                self.owner._show_domains(slide, DOMAIN_KEY, f"{LAYER} ({name})")
            self.owner._show_slide()
            self.figures_label.setText(figures_table(result.figures))
            total = len({d for slide in slides for d in slide.adata.obs[DOMAIN_KEY].astype(str)})
            self.owner.status.setText(f"{total} domains shared by {', '.join(names)} ({result.method}).")

        self.owner._run("Embedding the slides together ...", compute, show, key="joint domains")
