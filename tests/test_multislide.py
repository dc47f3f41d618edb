"""Domains of several sections at once (`fmscope domains A B ...`, `--section-key`): the real Visium slide and a
twin of it with a realistic batch effect, two semi-synthetic sections in one file, refusals before any work."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from cli_runner import run_cli

from fmscope import samples
from fmscope.errors import FmscopeError
from fmscope.metrics import ari
from fmscope.omics import io
from fmscope.omics.batch_effect import twin_slide
from fmscope.omics.domains import spatial_domains
from fmscope.omics.embed import baseline_embedding
from fmscope.omics.integration_metrics import integration_figures
from fmscope.omics.multislide import joint_table
from fmscope.omics.synthetic import semi_synthetic_tissue

VISIUM = samples.sample_data_dir() / "visium_mouse_brain"


def figures(stdout: str) -> dict[str, dict[str, float]]:
    """The printed figures table: {embedding: {figure: value}}."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("embedding "))
    columns = lines[start].split()[1:]
    rows = {}
    for line in lines[start + 1 : start + 4]:
        values = re.findall(r"-?\d+\.\d+|nan", line)
        rows[line[: line.index(values[0])].strip()] = dict(zip(columns, map(float, values)))
    return rows


@pytest.fixture(scope="module")
def visium_twins(tmp_path_factory):
    """The Visium sample's counts (A.h5ad) and a twin: per-gene capture factors, half the depth (B.h5ad)."""
    folder = tmp_path_factory.mktemp("twins")
    slide = io.read_slide(VISIUM)
    a = ad.AnnData(X=slide.adata.X, var=slide.adata.var[[]].copy(), obs=slide.adata.obs[[]].copy())
    a.obsm["spatial"] = np.asarray(slide.adata.obsm["spatial"])
    a.uns["fmscope"] = {"microns_per_unit": 1.0}
    b = twin_slide(a, depth=0.5, capture_sigma=0.5, seed=0)
    a.write_h5ad(folder / "A.h5ad")
    b.write_h5ad(folder / "B.h5ad")
    return folder


@pytest.mark.slow  # ~60 s (~30 s of it umap numba compilation when first): 5,390 spots, 3 embeddings compared
def test_visium_and_its_batch_affected_twin_get_the_same_domains(visium_twins, tmp_path):
    a, b = visium_twins / "A.h5ad", visium_twins / "B.h5ad"
    result = run_cli("domains", a, b, "--n-domains", "8", "-o", tmp_path / "a.zarr", tmp_path / "b.h5ad")
    assert result.returncode == 0, result.stderr
    print("\n" + result.stdout)
    first, second = io.read_slide(tmp_path / "a.zarr").adata, ad.read_h5ad(tmp_path / "b.h5ad")
    twin_ari = ari(first.obs["fmscope_domain"], second.obs["fmscope_domain"])
    print(f"spot vs twin ARI: {twin_ari:.3f}")
    assert twin_ari >= 0.9  # without correction: ~0.65-0.72 (benchmarks/multislide.py)
    assert len(set(first.obs["fmscope_domain"]) | set(second.obs["fmscope_domain"])) == 8  # K domains overall
    table = figures(result.stdout)
    assert table["fmscope"]["knn_mixing"] > table["PCA, no correction"]["knn_mixing"] + 0.3
    assert table["fmscope"]["batch_asw"] > table["PCA, no correction"]["batch_asw"]
    assert (tmp_path / "a.png").stat().st_size > 10_000 and (tmp_path / "b.png").exists()
    assert ad.read_h5ad(b).obs.columns.tolist() == []  # inputs untouched


@pytest.mark.slow  # ~20 s on a quiet machine: 800 cells clustered three ways, each section alone
def test_two_sections_in_one_file_as_good_as_alone(tmp_path):
    sections = [semi_synthetic_tissue(side=20, seed=0), semi_synthetic_tissue(side=20, seed=1)]
    sections[1].obsm["spatial"] = 19 * 20.0 - sections[1].obsm["spatial"]  # same positions, domains elsewhere
    copy = sections[1].copy()
    spatial_domains(copy, baseline_embedding(copy), n_domains=4)
    sections[0].write_h5ad(tmp_path / "a.h5ad")  # section A alone through the one-slide command, --label-key
    out_a = tmp_path / "a_out.h5ad"
    result = run_cli("domains", tmp_path / "a.h5ad", "--n-domains", "4", "--label-key", "true_domain", "-o", out_a)
    printed = float(re.search(r"domains vs obs\['true_domain'\]: NMI [\d.]+, ARI ([\d.]+)", result.stdout)[1])
    alone_a = ad.read_h5ad(out_a).obs
    alone = [
        ari(alone_a["true_domain"], alone_a["fmscope_domain"]),
        ari(copy.obs["true_domain"], copy.obs["fmscope_domain"]),
    ]
    assert abs(printed - alone[0]) < 1e-3
    both = ad.concat(sections, uns_merge="first")
    both.obs["slice"] = ["A"] * 400 + ["B"] * 400  # a name fmscope does not guess: --section-key says it
    both.obs_names = [f"{s}{i}" for i, s in enumerate(both.obs["slice"])]
    both.write_h5ad(tmp_path / "two.h5ad")
    result = run_cli(
        "domains", tmp_path / "two.h5ad", "--section-key", "slice", "--n-domains", "4",
        "--label-key", "true_domain", "-o", tmp_path / "out.h5ad",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    print("\n" + result.stdout)
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    for name, alone_ari in zip("AB", alone):
        part = out[out.obs["slice"] == name]
        together = ari(part.obs["true_domain"], part.obs["fmscope_domain"])
        print(f"section {name}: ARI {alone_ari:.3f} alone, {together:.3f} together")
        assert together >= alone_ari - 0.05
    assert {"nmi", "ari", "asw_label", "avg_bio"} <= set(figures(result.stdout)["fmscope"])


def test_integration_figures_tell_mixed_from_separated_sections():
    rng = np.random.default_rng(0)
    labels = np.repeat(["x", "y"], 100)
    sections = np.tile(np.repeat(["A", "B"], 50), 2)
    biology = np.where(labels == "x", 0.0, 10.0)[:, None] + rng.normal(size=(200, 5))
    mixed = integration_figures(biology, sections, labels, labels)
    apart = integration_figures(biology + np.where(sections == "A", 0, 5.0)[:, None], sections, labels, labels)
    assert mixed["knn_mixing"] > 0.8 > 0.2 > apart["knn_mixing"]
    assert mixed["batch_asw"] > apart["batch_asw"]
    assert mixed["nmi"] == mixed["ari"] == 1.0 and 0.5 < mixed["asw_label"] <= 1


def test_joint_table_keeps_shared_genes_and_refuses_too_few():
    a, b = semi_synthetic_tissue(side=4, seed=0), semi_synthetic_tissue(side=4, seed=1)
    joint, sections = joint_table([a, b[:, 5:]], ["a", "b"])
    assert joint.n_vars == a.n_vars - 5 and sections.tolist() == ["a"] * 16 + ["b"] * 16
    assert np.allclose(joint.X[16:].toarray(), b[:, 5:].X)
    with pytest.raises(FmscopeError, match="share 0 genes"):
        joint_table([a[:, :5], b[:, 5:]], ["a", "b"])


def test_refusals_before_any_work(tmp_path):
    tissue = semi_synthetic_tissue(side=4)
    tissue.write_h5ad(tmp_path / "a.h5ad")
    tissue.write_h5ad(tmp_path / "b.h5ad")
    (tmp_path / "mine.h5ad").write_bytes(b"the user's own file")
    cases = [
        (["a.h5ad", "b.h5ad", "-o", "x.h5ad"], "2 slide\\(s\\) need 2 output\\(s\\)"),
        (["a.h5ad", "b.h5ad", "-o", "x.h5ad", "y.h5ad", "--png", "p.png"], "--png names one picture"),
        (["a.h5ad", "b.h5ad", "-o", "x.h5ad", "mine.h5ad"], "not written by fmscope|did not write"),
        (["a.h5ad", "--section-key", "library_id", "-o", "x.h5ad"], "no obs column 'library_id'"),
    ]
    for arguments, message in cases:
        paths = [str(tmp_path / a) if a.endswith((".h5ad", ".png")) else a for a in arguments]
        result = run_cli("domains", *paths)
        assert result.returncode == 1 and re.search(message, result.stderr), result.stderr
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5ad", "b.h5ad", "mine.h5ad"]
    assert (tmp_path / "mine.h5ad").read_bytes() == b"the user's own file"


@pytest.mark.slow  # ~10 s after umap's numba compilation (paid once per session by any domains test)
def test_scgpt_joint_run_is_corrected_and_says_what_the_checkpoint_batch_parts_do(tmp_path):
    """The tiny scGPT fixture (random weights, genes GENE0..): the joint path runs end to end, Harmony on its
    <cls> embeddings; a checkpoint with a batch token (batch_encoder) and batch norms (dsbn) is told apart."""
    import shutil

    import torch

    from fmscope.omics.multislide import joint_domains

    fixture = Path(__file__).parent / "fixtures" / "scgpt_tiny"
    a, b = semi_synthetic_tissue(side=8, seed=0), semi_synthetic_tissue(side=8, seed=1)
    for section in (a, b):
        section.var_names = [f"GENE{i}" if i < 40 else name for i, name in enumerate(section.var_names)]
    joint, sections = joint_table([a, b], ["a", "b"])
    plain = joint_domains(joint, sections, checkpoint=str(fixture), n_domains=3, compare=False)
    assert joint.obsm["X_fmscope"].shape[0] == 128 and "Harmony" in plain.method
    assert "no batch embedding" in plain.notes[0]
    folder = tmp_path / "with_batch"
    shutil.copytree(fixture, folder)
    state = torch.load(folder / "best_model.pt", weights_only=True)
    state |= {"batch_encoder.embedding.weight": torch.zeros(2, 32), "dsbn.bns.0.weight": torch.ones(32)}
    torch.save(state, folder / "best_model.pt")
    batched = joint_domains(joint, sections, checkpoint=str(folder), n_domains=3, compare=False)
    assert "batch_encoder" in batched.notes[0] and "dsbn" in batched.notes[0]
