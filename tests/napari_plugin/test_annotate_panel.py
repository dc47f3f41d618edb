"""*Annotate from a reference* in the Spatial omics widget, docked through the plugin menu in a real viewer: the
real Xenium sample's cells typed from the real PBMC reference, drawn as a categorical layer with a legend."""

from __future__ import annotations

import numpy as np
import pytest
from napari_helpers import click, wait_idle

from fmscope import samples
from fmscope.napari.spatial_widget import CELL_TYPES
from fmscope.omics.annotate import CELL_TYPE_KEY, CONFIDENCE_KEY, UNKNOWN

REFERENCE = samples.sample_data_dir() / "pbmc68k_reduced.h5ad"


@pytest.mark.slow
def test_cell_types_from_a_reference_are_drawn_with_a_legend(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("fmscope", "xenium_breast")
    widget.cell_type_reference_edit.setText(str(REFERENCE))
    widget.cell_type_reference_edit.editingFinished.emit()  # the user leaves the path field
    wait_idle(qtbot, widget)
    columns = [widget.cell_type_key_combo.itemText(i) for i in range(widget.cell_type_key_combo.count())]
    assert "bulk_labels" in columns and "louvain" in columns
    widget.cell_type_key_combo.setCurrentText("bulk_labels")
    widget.min_confidence_spin.setValue(0.4)
    click(qtbot, widget, "Annotate cell types")
    wait_idle(qtbot, widget)
    layer = viewer.layers[CELL_TYPES]
    obs = widget.slide.adata.obs
    assert len(layer.data) == 27 and CELL_TYPE_KEY in obs and CONFIDENCE_KEY in obs
    types = obs[CELL_TYPE_KEY].astype(str).to_numpy()
    assert (types == UNKNOWN).tolist() == (obs[CONFIDENCE_KEY].to_numpy() < 0.4).tolist()
    assert list(layer.features["category"]) == list(types)
    colours = layer.metadata["fmscope_categories"]
    assert set(colours) == set(types) and widget.cell_type_legend.text().count("■") == len(colours)
    assert len(np.unique(layer.face_color, axis=0)) == len(colours)
    assert "L1 logistic regression" in widget.evaluation_label.text() and "macro F1" in widget.evaluation_label.text()


def test_a_wrong_label_column_changes_nothing(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("fmscope", "xenium_breast")
    names = [layer.name for layer in viewer.layers]
    widget.cell_type_reference_edit.setText(str(REFERENCE))
    widget.cell_type_key_combo.setCurrentText("no_such_column")
    click(qtbot, widget, "Annotate cell types")
    wait_idle(qtbot, widget)
    assert "no obs['no_such_column']" in widget.status.text()
    assert [layer.name for layer in viewer.layers] == names and CELL_TYPE_KEY not in widget.slide.adata.obs
