"""The Spatial omics widget's *Several slides* section in a real viewer, docked through the plugin menu: two slide
layers -> domains shared across them; one file holding two sections -> its section column chosen."""

from __future__ import annotations

import anndata as ad
import pandas as pd
import pytest
from napari_helpers import click, wait_idle

from fmscope.metrics import ari
from fmscope.omics.synthetic import semi_synthetic_tissue

pytestmark = pytest.mark.slow  # ~10 s each after the first domain computation of the session (numba)


def sections(tmp_path):
    """Two semi-synthetic sections (real PBMC profiles, four quadrant domains); the second turned by 180 degrees."""
    a, b = semi_synthetic_tissue(side=16, seed=0), semi_synthetic_tissue(side=16, seed=1)
    b.obsm["spatial"] = 15 * 20.0 - b.obsm["spatial"]
    return a, b


def open_slide(qtbot, widget, path) -> None:
    widget.path_edit.setText(str(path))
    click(qtbot, widget, "Open")
    wait_idle(qtbot, widget)


def test_two_slide_layers_get_domains_shared_across_them(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    a, b = sections(tmp_path)
    a.write_h5ad(tmp_path / "left.h5ad")
    b.write_h5ad(tmp_path / "right.h5ad")
    open_slide(qtbot, widget, tmp_path / "left.h5ad")
    open_slide(qtbot, widget, tmp_path / "right.h5ad")
    panel = widget.joint_domains
    assert panel.slide_list.count() == 2
    assert sorted(widget.state.slides) == ["left", "right"]
    panel.tick(["left", "right"])
    widget.n_domains_spin.setValue(4)
    click(qtbot, widget, "Joint domains")
    wait_idle(qtbot, widget)
    left, right = (widget.state.slides[name].adata for name in ("left", "right"))
    for table, truth in ((left, a), (right, b)):
        assert ari(truth.obs["true_domain"], table.obs["fmscope_domain"]) > 0.85
    # the same domain name means the same tissue in both slides: each true domain's commonest name agrees
    majority = [
        pd.crosstab(truth.obs["true_domain"].to_numpy(), table.obs["fmscope_domain"].to_numpy()).idxmax(axis=1)
        for table, truth in ((left, a), (right, b))
    ]
    assert majority[0].to_dict() == majority[1].to_dict() and majority[0].nunique() == 4
    assert {"fmscope domains (left)", "fmscope domains (right)"} <= {layer.name for layer in viewer.layers}
    assert "knn_mixing" in panel.figures_label.text() and "PCA, no correction" in panel.figures_label.text()


def test_one_file_with_two_sections_takes_the_chosen_column(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    a, b = sections(tmp_path)
    both = ad.concat([a, b], uns_merge="first")
    both.obs["slice"] = ["A"] * a.n_obs + ["B"] * b.n_obs  # not a name fmscope guesses
    both.obs_names = [f"{s}{i}" for i, s in enumerate(both.obs["slice"])]
    both.write_h5ad(tmp_path / "two.h5ad")
    open_slide(qtbot, widget, tmp_path / "two.h5ad")
    panel = widget.joint_domains
    panel.section_combo.setCurrentText("slice")
    widget.n_domains_spin.setValue(4)
    click(qtbot, widget, "Joint domains")
    wait_idle(qtbot, widget)
    table = widget.slide.adata
    for name in "AB":
        part = table[table.obs["slice"] == name]
        assert ari(part.obs["true_domain"], part.obs["fmscope_domain"]) > 0.85
    assert "fmscope domains (two)" in viewer.layers
