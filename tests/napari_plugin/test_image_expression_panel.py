"""'Predict expression from image' in the Spatial widget, real viewer, real Visium H&E and LiteMedSAM weights:
cancel, train (held-out r shown), predicted genes over the whole tissue, model file re-applied, saving."""

from __future__ import annotations

import numpy as np
import pytest
from napari_helpers import click, wait_idle

from fmscope import samples
from fmscope.napari.image_expression_panel import LAYER_PREFIX
from fmscope.omics.image_expression_slide import PREDICTED_KEY
from fmscope.omics.io import read_slide

pytestmark = pytest.mark.slow
VISIUM = samples.sample_data_dir() / "visium_mouse_brain"


def test_train_show_reapply_and_save(viewer_widget, qtbot, tmp_path):
    """The section of the Spatial omics widget opened from the Plugins menu, driven by its buttons."""
    viewer, widget = viewer_widget
    panel = widget.image_expression
    widget.path_edit.setText(str(VISIUM))
    click(qtbot, widget, "Open")
    wait_idle(qtbot, widget)
    panel.model_edit.setText(str(tmp_path / "brain.pt"))

    click(qtbot, widget, "Train on this slide")
    click(qtbot, panel, "Cancel")  # the panel's own (the widget's status line has one too)
    wait_idle(qtbot, widget)
    assert widget.status.text() == "Cancelled." and panel.grid is None
    assert not (tmp_path / "brain.pt").exists()

    click(qtbot, widget, "Train on this slide")
    wait_idle(qtbot, widget, timeout=900_000)  # ~1 min on an idle 2-core CPU, minutes on a busy one
    assert "held-out r over the 20 most variable genes: image" in panel.result_label.text()
    assert (tmp_path / "brain.pt").is_file()
    gene = panel.gene_combo.itemText(0)
    layer = viewer.layers[f"{LAYER_PREFIX} {gene}"]
    slide = widget.slide
    spots = slide.adata.obsm["spatial"]
    grid_yx = layer.data
    values = layer.features["value"].to_numpy()
    assert len(values) > 1000 and values.max() > values.min()
    distance = np.sqrt(((grid_yx[:, None, ::-1] - spots[None]) ** 2).sum(-1)).min(axis=1)
    assert (distance > 150).sum() > 50  # predicted on tissue where no spot was measured
    assert widget.slide_combo.count() == 1  # the grid is not listed as a slide
    on_spots = slide.adata.obsm[PREDICTED_KEY]
    assert on_spots.shape == (2695, 50)
    assert f"{gene} (from image)" in [widget.gene_combo.itemText(i) for i in range(widget.gene_combo.count())]
    widget.show_gene(f"{gene} (from image)")
    assert np.allclose(viewer.layers[f"fmscope gene {gene} (from image)"].features["value"], on_spots[gene])

    trained = values.copy()
    viewer.layers.remove(layer)
    click(qtbot, widget, "Predict with model file")  # the model file, re-applied to the same tissue
    wait_idle(qtbot, widget)
    assert np.allclose(viewer.layers[f"{LAYER_PREFIX} {gene}"].features["value"], trained, atol=1e-5)

    panel.save_edit.setText(str(tmp_path / "grid.zarr"))
    click(qtbot, widget, "Save grid")
    widget.save_edit.setText(str(tmp_path / "slide.zarr"))
    click(qtbot, widget, "Save")
    wait_idle(qtbot, widget)
    grid = read_slide(tmp_path / "grid.zarr")
    assert grid.adata.n_obs == len(trained) and grid.adata.n_vars == 50
    saved = read_slide(tmp_path / "slide.zarr")
    assert np.allclose(saved.adata.obsm[PREDICTED_KEY][gene].to_numpy(), on_spots[gene].to_numpy())
