"""Kinds of omics input that gave a wrong answer without a word (new-user cases NUB3-NUB6, NUB10, NUB11), each
checked where the one reader of that input reads it: annotations with blank / 'Unassigned' cells, barcode-keyed
joins on a table whose ids repeat, genes written in two case conventions (another species), coordinates of more
than two axes, references of two or three cell types, Visium positions whose barcodes differ from the counts'.
Real AnnData objects and the real Visium sample; Hypothesis generates the variants of each kind.
"""

import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmscope import samples
from fmscope.errors import FmscopeError
from fmscope.omics import io
from fmscope.omics.cell_ids import require_unique
from fmscope.omics.deconvolve import deconvolve_nnls
from fmscope.omics.deconvolve_embedding import deconvolve_embedding
from fmscope.omics.finetune import annotation_from_column, annotation_from_csv
from fmscope.omics.gene_match import require_genes, shared_genes
from fmscope.omics.impute import impute_knn
from fmscope.omics.missing_labels import MISSING_LABELS
from fmscope.omics.multislide import joint_table
from fmscope.omics.vocab import coverage_note, match_genes

VISIUM = samples.sample_data_dir() / "visium_mouse_brain"
FEW = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
HUMAN = ["CD3E", "CD19", "GFAP", "OLIG2", "SNAP25", "MBP", "PLP1", "AQP4", "SLC17A7", "GAD1", "PVALB", "SST"] + [
    f"ZNF{i}" for i in range(100, 136)
]


def _slide(n: int = 60, genes: list[str] | None = None, seed: int = 0, prefix: str = "cell") -> ad.AnnData:
    """A small slide of counts: the left half expresses the first third of the genes, the right half the second."""
    genes = genes or [f"GENE{j}" for j in range(30)]
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1000, (n, 2))
    lam = np.full((n, len(genes)), 2.0)
    third = len(genes) // 3
    lam[xy[:, 0] < 500, :third] += 8
    lam[xy[:, 0] >= 500, third : 2 * third] += 8
    adata = ad.AnnData(X=sp.csr_matrix(rng.poisson(lam).astype(np.float32)))
    adata.obs_names = [f"{prefix}{i:04d}" for i in range(n)]
    adata.var_names = genes
    adata.obsm["spatial"] = xy
    adata.uns["fmscope"] = {"microns_per_unit": 1.0}
    return adata


def _reference(types: int, genes: list[str], n: int = 120, seed: int = 0) -> ad.AnnData:
    """Counts of ``n`` cells of ``types`` cell types, each with its own block of marker genes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % types
    block = len(genes) // types
    lam = np.ones((n, len(genes)))
    for t in range(types):
        lam[labels == t, t * block : (t + 1) * block] += 10
    reference = ad.AnnData(X=sp.csr_matrix(rng.poisson(lam).astype(np.float32)))
    reference.var_names = genes
    reference.obs_names = [f"c{i}" for i in range(n)]
    reference.obs["ct"] = np.array([f"type{t}" for t in range(types)])[labels]
    return reference


# --- NUB3: blank / 'Unassigned' annotations ---------------------------------------------------------------------


@FEW
@given(
    word=st.sampled_from(sorted(MISSING_LABELS)).map(lambda w: w.upper() if len(w) > 3 else w),
    blank_in_csv=st.booleans(),
    padded=st.booleans(),
)
def test_blank_and_unassigned_annotations_are_not_a_class(tmp_path, word, blank_in_csv, padded):
    """Invariant: whatever word marks the cells nobody annotated (blank, 'Unassigned', 'UNKNOWN', 'nan' ...), in an
    obs column or a CSV listing every cell, they are not annotated ('') and the two classes stay the only ones."""
    slide = _slide()
    x = slide.obsm["spatial"][:, 0]
    unset = ("" if blank_in_csv else word).center(len(word) + 2 if padded else 0)
    truth = np.where(x < 200, "left", np.where(x > 800, "right", ""))
    slide.obs["region"] = pd.Series(
        [unset or None if t == "" else t for t in truth], index=slide.obs_names, dtype=object
    )
    notices: list[str] = []
    from_column = annotation_from_column(slide, "region", notices)
    path = tmp_path / "ann.csv"
    pd.DataFrame({"Barcode": slide.obs_names, "Region": np.where(truth == "", unset, truth)}).to_csv(path, index=False)
    from_csv = annotation_from_csv(slide, path, notices)
    for labels in (from_column, from_csv):
        assert list(labels) == list(truth)
    if word.strip() and not blank_in_csv:
        assert any("not annotated" in line for line in notices)


# --- NUB4: barcode-keyed joins on repeated ids ------------------------------------------------------------------


def test_an_annotation_csv_naming_barcodes_both_sections_repeat_is_refused(tmp_path):
    """Two sections concatenated without index_unique repeat Visium barcodes: a CSV keyed by barcode would label
    both sections' spots; refused naming the repeated ids. With unique ids, exactly the CSV's rows are used."""
    a, b = _slide(40, seed=1, prefix="BC"), _slide(40, seed=2, prefix="BC")
    rows = [f"{cell},left" for cell in a.obs_names[:10]] + [f"{cell},right" for cell in a.obs_names[-10:]]
    path = tmp_path / "ann.csv"
    path.write_text("Barcode,Region\n" + "\n".join(rows) + "\n")
    repeated = ad.concat({"A": a, "B": b}, label="library_id")
    with pytest.raises(FmscopeError, match=r"name several cells.*library_id") as refused:
        annotation_from_csv(repeated, path)
    assert "index_unique" in refused.value.fix
    unique = ad.concat({"A": a, "B": b}, label="library_id", index_unique=None)
    unique.obs_names = [f"{name}-{section}" for name, section in zip(unique.obs_names, unique.obs["library_id"])]
    path.write_text("Barcode,Region\n" + "\n".join(r.replace(",", "-A,", 1) for r in rows) + "\n")
    labels = annotation_from_csv(unique, path)
    assert (labels != "").sum() == len(rows) and (labels[40:] == "").all()
    require_unique(repeated, ["not-a-cell"], "a table")  # ids not on the slide do not join: nothing to refuse


# --- NUB5: genes matched by exact symbol ------------------------------------------------------------------------


@FEW
@given(
    convention=st.sampled_from([str.capitalize, str.lower, lambda g: g[0] + g[1:].lower()]),
    converted=st.floats(0, 1),
)
def test_genes_that_match_only_by_case_are_never_matched_silently(convention, converted):
    """Invariant: genes are shared only when written alike; when more genes would match only by case than
    exactly (human symbols on a mouse slide), the match is refused naming the case / species; otherwise the
    case-only ones are simply not shared."""
    n_case = int(round(converted * len(HUMAN)))
    slide_genes = [convention(g) for g in HUMAN[:n_case]] + HUMAN[n_case:]
    by_case = sum(convention(g) != g for g in HUMAN[:n_case])
    exact = len(HUMAN) - by_case
    if by_case > exact:
        with pytest.raises(FmscopeError, match="only when case is ignored.*species"):
            shared_genes(slide_genes, HUMAN)
    else:
        assert shared_genes(slide_genes, HUMAN) == [g for g in slide_genes if g in HUMAN]


def test_a_human_reference_on_a_mouse_slide_is_refused_by_every_analysis():
    """NUB5: deconvolution (both methods), imputation, joint domains and the genes asked for refuse the case-only
    match, naming it; scGPT's vocabulary (human) says how many mouse symbols it took as their human orthologs'."""
    reference = _reference(3, HUMAN)
    mouse = _slide(genes=[g[0] + g[1:].lower() for g in HUMAN])
    for run in (
        lambda: deconvolve_nnls(mouse, reference, "ct"),
        lambda: deconvolve_embedding(mouse, reference, "ct", n_pseudo=60),
        lambda: impute_knn(mouse, reference),
    ):
        with pytest.raises(FmscopeError, match="only when case is ignored"):
            run()
    with pytest.raises(FmscopeError, match="only when case is ignored"):  # joint domains of a human and a mouse slide
        joint_table([_slide(genes=HUMAN), mouse], ["human.h5ad", "mouse.h5ad"])
    with pytest.raises(FmscopeError, match=r"share no gene \(the slide names genes by Ensembl id"):
        shared_genes([f"ENSMUSG{i:011d}" for i in range(5)], HUMAN)
    with pytest.raises(FmscopeError, match="'Gfap' is written 'GFAP' there"):
        require_genes(["Gfap"], HUMAN, "The reference lacks", "Ask for genes the reference has.")
    note = coverage_note(match_genes(list(mouse.var_names), {g: i for i, g in enumerate(HUMAN)}, warn=False))
    assert note is not None and f"{len(HUMAN)} of {len(HUMAN)} genes matched the vocabulary only by case" in note


# --- NUB6: coordinates of more than two axes --------------------------------------------------------------------


@FEW
@given(axes=st.integers(3, 4), varying=st.booleans(), nan=st.booleans())
def test_a_third_coordinate_is_dropped_only_when_flat(tmp_path, axes, varying, nan):
    """Invariant: obsm['spatial'] of 3+ columns is read as x, y only when every column after y is one value (or
    NaN throughout), with a notice; a varying one (3D cells) is refused naming it."""
    slide = _slide(30)
    xy = slide.obsm["spatial"]
    extra = np.zeros((len(xy), axes - 2)) + (np.nan if nan else 0.0)
    if varying:
        extra[: len(xy) // 2, 0] = 200.0
    slide.obsm["spatial"] = np.c_[xy, extra]
    path = tmp_path / f"z{axes}{varying}{nan}.h5ad"
    slide.write_h5ad(path)
    if varying:
        with pytest.raises(FmscopeError, match=r"z \(column 3\) varies.*3D") as refused:
            io.read_slide(path)
        assert "obs['section']" in refused.value.fix
    else:
        read = io.read_slide(path)
        assert read.adata.obsm["spatial"].shape == (30, 2)
        assert np.allclose(read.adata.obsm["spatial"], xy)
        assert any("x, y used" in line for line in read.notices)


# --- NUB10: references of two or three cell types ---------------------------------------------------------------


@pytest.mark.parametrize("types", [2, 3])
def test_a_reference_of_two_or_three_cell_types_is_deconvolved(types):
    """Pseudo-spots draw at most as many types as the reference has; each spot's dominant type is its marker's."""
    genes = [f"GENE{j}" for j in range(30)]
    reference = _reference(types, genes)
    spots = ad.AnnData(X=reference.X[:: types * 4].copy())  # single cells of each type as spots
    spots.var_names = genes
    proportions = deconvolve_embedding(spots, reference, "ct", n_pseudo=200)
    assert proportions.shape == (spots.n_obs, types)
    assert np.allclose(proportions.sum(axis=1), 1)
    truth = reference.obs["ct"].to_numpy()[:: types * 4]
    assert (proportions.idxmax(axis=1).to_numpy() == truth).mean() > 0.9


# --- NUB11: Visium barcodes that differ between positions and counts --------------------------------------------


@pytest.mark.parametrize(
    "rewrite, said",
    [
        (lambda b: b.removesuffix("-1"), "same spots once a '-1' suffix"),
        (lambda b: f"S1_{b}", "same spots once a '-1' suffix or a sample prefix"),
        (lambda b: b[::-1], "different samples"),
    ],
)
def test_visium_positions_whose_barcodes_differ_from_the_counts_are_refused_naming_both(tmp_path, rewrite, said):
    """No barcode of the positions file in the counts matrix: refused naming both files and an example of each."""
    folder = tmp_path / "vis"
    shutil.copytree(VISIUM, folder)
    positions = folder / "spatial" / "tissue_positions_list.csv"
    table = pd.read_csv(positions, header=None, dtype=str)
    table[0] = table[0].map(rewrite)
    table.to_csv(positions, header=False, index=False)
    with pytest.raises(FmscopeError, match="No barcode of spatial/tissue_positions_list.csv is in") as refused:
        io.read_slide(folder)
    assert said in str(refused.value) and "filtered_feature_bc_matrix.h5" in str(refused.value)


def test_visium_counts_barcodes_without_a_position_are_said(tmp_path):
    """Some barcodes of the counts without a position (a trimmed positions file): left out, with a notice."""
    folder = tmp_path / "vis"
    shutil.copytree(VISIUM, folder)
    positions = folder / "spatial" / "tissue_positions_list.csv"
    full = io.read_slide(VISIUM)
    table = pd.read_csv(positions, header=None, dtype=str)
    table = table[table[0] != full.adata.obs_names[0]]
    table.to_csv(positions, header=False, index=False)
    slide = io.read_slide(folder)
    assert slide.adata.n_obs == full.adata.n_obs - 1
    assert any("1 of the" in line and "have no position" in line for line in slide.notices)


def _store(path, xy: np.ndarray, obs_xyz: np.ndarray | None = None, repeat_ids: bool = False) -> None:
    """A SpatialData store: circles at ``xy`` (microns system) and a table annotating them by 'instance'; the table
    has no obsm['spatial'] (its cells come from the circles), or, with ``obs_xyz``, obs columns x, y, z."""
    import geopandas as gpd
    import spatialdata
    from shapely.geometry import Point
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import Identity

    ids = np.arange(len(xy)) // (2 if repeat_ids else 1)
    frame = gpd.GeoDataFrame({"radius": np.full(len(xy), 5.0)}, geometry=[Point(p) for p in xy], index=ids)
    shapes = ShapesModel.parse(frame, transformations={"microns": Identity()})
    obs = pd.DataFrame(
        {"region": pd.Categorical(["cells"] * len(xy)), "instance": np.arange(len(xy))},
        index=[f"c{i}" for i in range(len(xy))],
    )
    if obs_xyz is not None:
        obs[["x", "y", "z"]] = obs_xyz
    table = ad.AnnData(
        X=sp.csr_matrix(np.random.default_rng(0).poisson(2.0, (len(xy), 12)).astype(np.float32)), obs=obs
    )
    table = TableModel.parse(table, region="cells", region_key="region", instance_key="instance")
    spatialdata.SpatialData(shapes={"cells": shapes}, tables={"table": table}).write(path)


def test_a_store_table_with_a_varying_z_column_or_repeated_element_ids_is_refused(tmp_path):
    """The same rules in the store reader: obs x, y, z with z varying is refused as 3D; a table matched by instance
    id to an element whose ids repeat is refused naming them (an id would name two cells)."""
    xy = np.random.default_rng(1).uniform(0, 500, (20, 2))
    _store(tmp_path / "z.zarr", xy, obs_xyz=np.c_[xy, np.repeat([0.0, 50.0], 10)])
    with pytest.raises(FmscopeError, match=r"z \(column 3\) varies"):
        io.read_slide(tmp_path / "z.zarr")
    _store(tmp_path / "repeated.zarr", xy, repeat_ids=True)
    with pytest.raises(FmscopeError, match="repeats 10 instance id"):
        io.read_slide(tmp_path / "repeated.zarr")


def test_visium_positions_naming_a_barcode_twice_are_refused(tmp_path):
    """A positions file listing a barcode twice (two samples' files merged): which position is the spot's cannot be
    told; refused naming the barcode."""
    folder = tmp_path / "vis"
    shutil.copytree(VISIUM, folder)
    positions = folder / "spatial" / "tissue_positions_list.csv"
    lines = positions.read_text().splitlines()
    positions.write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(FmscopeError, match=f"more than once \\(e.g. {lines[0].split(',')[0]}\\)"):
        io.read_slide(folder)


def test_a_head_trained_on_labels_with_unassigned_cells_has_only_the_annotated_classes(tmp_path):
    """The engine applies the same rule to labels given directly (Python API, napari): 'Unassigned' / NaN cells are
    not a class of the head."""
    from fmscope.omics.finetune import finetune_head, slide_encoder

    slide = _slide(80)
    x = slide.obsm["spatial"][:, 0]
    labels = np.where(x < 300, "left", np.where(x > 700, "right", np.where(x < 500, "Unassigned", None)))
    result = finetune_head(slide, labels, tmp_path / "head.pt", slide_encoder(slide), epochs=5)
    assert result.classes == ["left", "right"]
