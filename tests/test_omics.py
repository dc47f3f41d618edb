"""Spatial omics engine end to end: real Visium slide, semi-synthetic tissue, scGPT path, errors."""

import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from cli_runner import run_cli

from fmscope import samples
from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.metrics import ari, nmi
from fmscope.omics import io
from fmscope.omics.domains import DOMAIN_KEY, count_note, spatial_domains
from fmscope.omics.embed import baseline_embedding, scgpt_embedding, tokenize
from fmscope.omics.models.scgpt import load_scgpt
from fmscope.omics.synthetic import semi_synthetic_tissue
from fmscope.omics.vocab import match_genes

VISIUM = samples.sample_data_dir() / "visium_mouse_brain"
SCGPT_FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "scgpt_tiny")


run = run_cli  # the CLI in this process (tests/cli_runner.py)


@pytest.fixture(scope="module")
def tissue():
    return semi_synthetic_tissue()


def test_semi_synthetic_domains_reach_ari(tissue):
    embedding = baseline_embedding(tissue)
    spatial_domains(tissue, embedding, n_domains=4)
    smoothed_ari = ari(tissue.obs["true_domain"], tissue.obs["fmscope_domain"])
    smoothed_nmi = nmi(tissue.obs["true_domain"], tissue.obs["fmscope_domain"])
    spatial_domains(tissue, embedding, n_domains=4, smoothing=0.0)
    plain_ari = ari(tissue.obs["true_domain"], tissue.obs["fmscope_domain"])
    print(f"\nsemi-synthetic ARI: spatially smoothed {smoothed_ari:.3f}, expression only {plain_ari:.3f}")
    assert smoothed_ari >= 0.9 and smoothed_nmi >= 0.9  # README: ARI 0.98 (NMI 0.97) vs 0.41 without smoothing
    assert smoothed_ari > plain_ari + 0.3


def test_n_domains_gives_that_many_domains_on_the_real_visium_slide():
    """--n-domains N gives N domains (it gave 3 for 4 and 6 for 5 when only the four default resolutions were tried):
    the resolution is refined between the two tried that bracket N; measured 2-9 all exact on this slide. Where no
    resolution gives N the CLI says so (count_note)."""
    slide = io.read_slide(VISIUM)
    embedding = baseline_embedding(slide.adata)
    for wanted in (2, 4, 5, 7):
        resolution = spatial_domains(slide.adata, embedding, n_domains=wanted)
        assert slide.adata.obs[DOMAIN_KEY].nunique() == wanted
        assert slide.adata.obs[f"{DOMAIN_KEY}_r{resolution:g}"].equals(slide.adata.obs[DOMAIN_KEY])
    assert count_note(4, 4, 0.2) == [] and count_note(None, 3, 0.2) == []
    assert "asked for 4 domains: Leiden gives 3" in count_note(4, 3, 0.2)[0]


def test_visium_reads_in_microns_with_image():
    slide = io.read_slide(VISIUM)
    assert slide.adata.n_obs == 2695 and slide.image is not None
    xy = slide.adata.obsm["spatial"]
    rows = slide.adata.obs["array_row"].to_numpy()
    cols = slide.adata.obs["array_col"].to_numpy()
    same_row = np.nonzero((rows == rows[0]) & (np.abs(cols - cols[0]) == 2))[0]
    assert len(same_row)
    pitch = np.linalg.norm(xy[same_row[0]] - xy[0])
    assert 95 < pitch < 105, pitch  # Visium spots are 100 um apart centre to centre


@pytest.mark.slow
def test_domains_cli_on_visium_follows_tissue(tmp_path):
    out = tmp_path / "domains.h5ad"
    result = run("domains", VISIUM, "--n-domains", "8", "-o", out)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "domains.png").stat().st_size > 10_000
    adata = ad.read_h5ad(out)
    labels = adata.obs["fmscope_domain"].to_numpy()
    assert 4 <= len(np.unique(labels)) <= 12
    # domains are spatially coherent: most spots share the domain of their nearest neighbour
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(adata.obsm["spatial"]).query(adata.obsm["spatial"], k=2)
    agreement = (labels[nearest[:, 0]] == labels[nearest[:, 1]]).mean()
    assert agreement > 0.8, agreement


def test_scgpt_embedding_streams_and_normalises(tissue):
    model, vocab, _ = load_scgpt(SCGPT_FIXTURE)
    small = tissue[:50].copy()
    small.var_names = [f"GENE{i % 40}" if i < 40 else name for i, name in enumerate(small.var_names)]
    embedding = scgpt_embedding(small, model, vocab, batch_size=16)
    assert embedding.shape == (50, 32)
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1, atol=1e-5)
    again = scgpt_embedding(small, model, vocab, batch_size=7)
    assert np.allclose(embedding, again, atol=1e-5)  # batching does not change results


def test_tokenize_keeps_most_expressed_when_truncating():
    counts = np.array([[0, 5, 1, 9, 3]], dtype=float)
    genes, values, padding = tokenize(
        counts, np.array([10, 11, 12, 13, 14]), cls_id=1, pad_id=0, pad_value=-2, n_bins=51, max_length=3
    )
    assert genes.tolist() == [[1, 11, 13]] and values[0, 0] == -2 and not padding.any()


def test_vocabulary_matching_report():
    match = match_genes(["ACTB", "Gapdh", "Cd3e", "NOPE"], {"<pad>": 0, "ACTB": 1, "GAPDH": 2, "CD3E": 3})
    assert match.ids.tolist() == [1, 2, 3, -1]
    assert "3/4 panel genes" in match.report() and "NOPE" in match.report()
    renamed = match_genes(
        ["SEPTIN7", "March1", "Xist"], {"SEPT7": 5, "MARCHF1": 6, "XIST_ALIAS": 7}, aliases={"Xist": "XIST_ALIAS"}
    )
    assert renamed.ids.tolist() == [5, 6, 7] and "3 by alias" in renamed.report()
    with pytest.warns(UserWarning, match="Low vocabulary coverage"):
        match_genes(["A", "B", "C"], {"A": 1})


def test_no_matching_genes_is_a_clear_error(tissue):
    model, vocab, _ = load_scgpt(SCGPT_FIXTURE)
    with pytest.raises(FmscopeError, match="No gene of the slide"):
        scgpt_embedding(tissue[:20].copy(), model, {"<pad>": 0, "<cls>": 1, "XYZ": 2}, batch_size=8)


@pytest.mark.parametrize(
    "problem, message",
    [
        ("no_coords", "no coordinates"),
        ("nan", "NaN"),
        ("missing", "No such file"),
        ("garbage", "Cannot read"),
        ("no_units", "have no units"),
        ("not_a_slide", "not a slide"),
    ],
)
def test_bad_slides_fail_without_partial_output(tmp_path, problem, message):
    path = tmp_path / "slide.h5ad"
    if problem in ("no_coords", "nan", "no_units"):
        adata = ad.AnnData(X=np.ones((20, 5), dtype=np.float32))
        if problem in ("nan", "no_units"):
            adata.obsm["spatial"] = np.random.default_rng(0).random((20, 2))
        if problem == "nan":
            adata.X[3, 2] = np.nan
        adata.write_h5ad(path)
    elif problem == "not_a_slide":
        path = tmp_path / "folder"
        path.mkdir()
        (path / "notes.txt").write_text("hello")
    elif problem == "garbage":
        path.write_bytes(b"not an h5ad")
    out = tmp_path / "out.h5ad"
    result = run("domains", path, "-o", out)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not out.with_suffix(".png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_xenium_crop_counts_transcripts_per_cell():
    """bento's Xenium breast crop has transcripts and cell boundaries but no table: fmscope builds it."""
    slide = io.read_slide(samples.sample_data_dir() / "xenium_breast_crop.zarr")
    adata = slide.adata
    assert adata.shape == (27, 541)
    assert 0 < adata.X.sum() <= 11_773  # transcripts inside a cell boundary, out of all transcripts
    import spatialdata

    shapes = spatialdata.read_zarr(samples.sample_data_dir() / "xenium_breast_crop.zarr").shapes["cell_boundaries"]
    for cell, (x, y) in zip(adata.obs_names[:5], adata.obsm["spatial"][:5]):
        polygon = shapes.geometry.loc[int(cell) if shapes.index.dtype.kind == "i" else cell]
        assert polygon.bounds[0] <= x <= polygon.bounds[2] and polygon.bounds[1] <= y <= polygon.bounds[3]


def test_embed_cli_writes_zarr_and_png(tmp_path):
    result = run("embed", samples.sample_data_dir() / "xenium_breast_crop.zarr", "-o", tmp_path / "embedded.zarr")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "embedded.png").stat().st_size > 5_000
    assert io.read_slide(tmp_path / "embedded.zarr").adata.obsm["X_fmscope"].shape[0] == 27


def test_domains_cli_on_xenium_crop(tmp_path):
    """--n-domains picks the resolution whose domain count is closest (ties: the lower), and says so."""
    out = tmp_path / "xenium.h5ad"
    result = run(
        "domains",
        samples.sample_data_dir() / "xenium_breast_crop.zarr",
        "--n-domains",
        "3",
        "--resolution",
        "0.2",
        "1.0",
        "2.0",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    obs = ad.read_h5ad(out).obs
    counts = {r: obs[f"fmscope_domain_r{r:g}"].nunique() for r in (0.2, 1.0, 2.0)}
    chosen = min(counts, key=lambda r: (abs(counts[r] - 3), r))
    assert obs["fmscope_domain"].tolist() == obs[f"fmscope_domain_r{chosen:g}"].tolist()
    assert counts[2.0] > counts[0.2]  # finer resolution, more domains
    assert f"{counts[chosen]} domains at resolution {chosen:g} over 27 cells" in result.stdout


def test_results_go_back_into_spatialdata_and_reopen(tmp_path):
    from fmscope.omics.store import write_result

    slide = io.read_slide(VISIUM)
    slide.adata.obs["fmscope_domain"] = (np.arange(slide.adata.n_obs) % 4).astype(str)
    write_result(slide, tmp_path / "visium.zarr")
    again = io.read_slide(tmp_path / "visium.zarr")
    assert np.array_equal(again.adata.obs["fmscope_domain"].to_numpy(), slide.adata.obs["fmscope_domain"].to_numpy())
    assert np.allclose(again.adata.obsm["spatial"], slide.adata.obsm["spatial"])
    assert again.spot_diameter_um == 55.0
    assert abs(again.image_microns_per_pixel - slide.image_microns_per_pixel) < 1e-9
    assert np.array_equal(np.asarray(again.image), slide.image)

    xenium = io.read_slide(samples.sample_data_dir() / "xenium_breast_crop.zarr")
    xenium.adata.obs["fmscope_domain"] = "1"
    write_result(xenium, tmp_path / "xenium.zarr")
    import spatialdata

    written = spatialdata.read_zarr(tmp_path / "xenium.zarr")
    assert {"cell_boundaries", "cell_circles", "nucleus_boundaries"} <= set(written.shapes)  # the user's elements
    assert "transcripts" in written.points and "fmscope_table" in written.tables
    assert io.read_slide(tmp_path / "xenium.zarr").adata.obs["fmscope_domain"].tolist() == ["1"] * 27
    with pytest.raises(FmscopeError, match="never writes over"):
        write_result(io.read_slide(tmp_path / "xenium.zarr"), tmp_path / "xenium.zarr")


def test_xenium_folder_reads_through_spatialdata_io(tmp_path):
    """The Xenium crop in the XOA 1.0 output layout (sample_data/xenium_breast_outs) -> domains -> zarr;
    the user's folder is left as it was."""
    import hashlib

    import pandas as pd

    folder = samples.sample_data_dir() / "xenium_breast_outs"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    slide = io.read_slide(folder)
    assert slide.adata.shape == (27, 313) and slide.sdata is not None  # genes only: 228 control features dropped
    cells = pd.read_parquet(folder / "cells.parquet").set_index("cell_id")
    assert np.allclose(
        slide.adata.obsm["spatial"],
        cells.loc[slide.adata.obs_names.astype(int), ["x_centroid", "y_centroid"]].to_numpy(),
    )
    transcripts = pd.read_parquet(folder / "transcripts.parquet")
    counted = transcripts[(transcripts["cell_id"] >= 0) & (transcripts["qv"] >= 20)]
    expected = pd.crosstab(counted["cell_id"].astype(str), counted["feature_name"])
    genes = [g for g in slide.adata.var_names if g in expected.columns]
    assert np.array_equal(slide.adata[expected.index, genes].X.toarray(), expected[genes].to_numpy())
    boundaries = slide.sdata.shapes["cell_boundaries"]
    outline = dict(zip(boundaries.index.astype(str), boundaries.geometry))  # XOA 1.0: integer cell ids
    assert all(
        outline[cell].contains(__import__("shapely").Point(x, y))
        for cell, (x, y) in zip(slide.adata.obs_names, slide.adata.obsm["spatial"])
    )
    result = run("domains", folder, "-o", tmp_path / "xenium.zarr")
    assert result.returncode == 0, result.stderr
    again = io.read_slide(tmp_path / "xenium.zarr")
    assert "fmscope_domain" in again.adata.obs and "transcripts" in again.sdata.points
    assert {"cell_boundaries", "nucleus_boundaries"} <= set(again.sdata.shapes)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()} == before


def test_merscope_folder_reads_through_spatialdata_io(tmp_path):
    """Real MERFISH cells in the MERSCOPE layout (sample_data/merfish_u2os_merscope) -> domains -> zarr."""
    folder = samples.sample_data_dir() / "merfish_u2os_merscope"
    slide = io.read_slide(folder)
    assert slide.adata.shape == (15, 135) and slide.sdata is not None
    metadata = __import__("pandas").read_csv(folder / "cell_metadata.csv", index_col=0)
    assert np.allclose(slide.adata.obsm["spatial"], metadata[["center_x", "center_y"]].to_numpy())
    result = run("domains", folder, "-o", tmp_path / "merscope.zarr")
    assert result.returncode == 0, result.stderr
    again = io.read_slide(tmp_path / "merscope.zarr")
    assert "fmscope_domain" in again.adata.obs and len(again.sdata.points) == 1  # transcripts kept


@pytest.mark.slow
def test_domains_on_a_slide_of_20000_cells():
    """Above 4,096 cells scanpy's own kNN path fails with scipy 1.17; fmscope's must not, and must find the rings."""
    from fmscope.omics.synthetic import large_synthetic_slide

    slide = large_synthetic_slide(20_000)
    spatial_domains(slide, baseline_embedding(slide), n_domains=6)
    score = ari(slide.obs["true_domain"], slide.obs["fmscope_domain"])
    print(f"\n20,000-cell ring slide: ARI {score:.3f}")
    assert score > 0.8


def _slide_of_genes(path, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    slide = ad.AnnData(X=rng.poisson(2.0, (60, len(names))).astype(np.float32), var=pd.DataFrame(index=names))
    slide.obsm["spatial"] = np.c_[np.arange(60) % 10, np.arange(60) // 10] * 20.0
    slide.uns["fmscope"] = {"microns_per_unit": 1.0}
    slide.write_h5ad(path)


def test_low_vocabulary_coverage_is_refused_or_said_on_its_own_line_before_the_bar(tmp_path, capsys):
    """NU16 (scGPT#117, #90): 3 of 44 genes in the vocabulary is refused naming the coverage, nothing written;
    30 of 44 (68 %) is embedded, the coverage said as an fmscope note before the progress bar starts."""
    _slide_of_genes(tmp_path / "few.h5ad", [f"GENE{i}" if i < 3 else f"X{i}" for i in range(44)])
    _slide_of_genes(tmp_path / "most.h5ad", [f"GENE{i}" if i < 30 else f"X{i}" for i in range(44)])
    assert (
        main(["embed", str(tmp_path / "few.h5ad"), "--checkpoint", SCGPT_FIXTURE, "-o", str(tmp_path / "f.h5ad")]) == 1
    )
    err = capsys.readouterr().err
    assert "vocabulary coverage 7%" in err and "3/44 panel genes" in err and not (tmp_path / "f.h5ad").exists()
    assert (
        main(["embed", str(tmp_path / "most.h5ad"), "--checkpoint", SCGPT_FIXTURE, "-o", str(tmp_path / "m.h5ad")]) == 0
    )
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    said = [k for k, line in enumerate(lines) if line.startswith("fmscope: note: Vocabulary coverage 68%: 30/44")]
    bar = [k for k, line in enumerate(lines) if "embedding cells" in line]
    assert said and (not bar or said[0] < bar[0]), lines
