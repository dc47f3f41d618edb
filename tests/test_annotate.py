"""`fmscope annotate`: cell types from a real labelled reference (PBMC 68k reduced), beside honest baselines."""

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from cli_runner import run_cli

from fmscope import samples
from fmscope.errors import FmscopeError
from fmscope.omics.annotate import (
    CELL_TYPE_KEY,
    CONFIDENCE_KEY,
    PROBABILITIES_KEY,
    UNKNOWN,
    ScGPTEncoder,
    annotate,
    evaluation_split,
)
from fmscope.omics.io import read_slide
from fmscope.omics.reference import read_reference

DATA = samples.sample_data_dir()
REFERENCE = DATA / "pbmc68k_reduced.h5ad"
XENIUM = DATA / "xenium_breast_outs"
SCGPT_TINY = Path(__file__).parent / "fixtures" / "scgpt_tiny"


@pytest.fixture(scope="module")
def pbmc():
    reference = read_reference(REFERENCE, label_key="bulk_labels").adata
    return reference, reference.obs["bulk_labels"].astype(str).to_numpy()


@pytest.mark.slow
def test_default_is_as_good_as_the_best_baseline_on_pbmc(pbmc):
    """Must hold (issue 30): held-out macro F1 of the default >= max(L1 logistic regression, kNN) - 0.02 on the
    real PBMC reference (bulk_labels, 10 types, no donor column: stratified split), all printed side by side."""
    reference, labels = pbmc
    result = annotate(reference, reference, labels)
    table = result.evaluation.table()
    print("\n" + table)
    default, l1, knn = (s.f1 for s in result.evaluation.scores.values())
    assert default >= max(l1, knn) - 0.02, table
    assert all(name in table for name in ("fmscope", "L1 logistic regression", "kNN", "macro F1", "accuracy"))
    assert result.evaluation.n_test == 209 and "stratified" in result.evaluation.split
    assert np.allclose(result.probabilities.to_numpy().sum(axis=1), 1, atol=1e-6)


def test_batches_are_held_out_whole_and_a_missing_column_is_refused(pbmc):
    reference, labels = pbmc
    train, test, split = evaluation_split(labels, reference.obs, "phase", 0.3)
    phases = reference.obs["phase"].astype(str).to_numpy()
    assert not set(phases[train]) & set(phases[test]) and len(test) >= 0.3 * len(labels) * 0.5
    assert "phase" in split
    with pytest.raises(FmscopeError, match=r"no obs\['donor'\].*\n?.*--batch-key one of: bulk_labels"):
        evaluation_split(labels, reference.obs, "donor", 0.3)


@pytest.mark.slow
def test_cli_annotates_xenium_cells_and_writes_its_columns(tmp_path):
    out = tmp_path / "typed.zarr"
    result = run_cli(
        "annotate", XENIUM, "--reference", REFERENCE, "--label-key", "bulk_labels", "--min-confidence", "0.4", "-o", out
    )
    assert result.returncode == 0, result.stderr
    assert "L1 logistic regression (expression)" in result.stdout and "56 genes" in result.stdout
    table = read_slide(out).adata
    types = table.obs[CELL_TYPE_KEY].astype(str).to_numpy()
    confidence = table.obs[CONFIDENCE_KEY].to_numpy()
    assert table.n_obs == 27 and ((confidence >= 0) & (confidence <= 1)).all()
    assert (types == UNKNOWN).tolist() == (confidence < 0.4).tolist()
    assert np.allclose(np.asarray(table.obsm[PROBABILITIES_KEY]).max(axis=1), confidence, atol=1e-6)
    assert table.uns["fmscope"]["annotation"]["cell_types"][0] == "CD14+ Monocyte"
    assert (tmp_path / "typed.png").is_file()


@pytest.mark.parametrize(
    "slide, extra, message",
    [
        (DATA / "merfish_u2os_merscope", [], "share 5 gene"),
        (XENIUM, ["--min-confidence", "1.5"], "is not a probability"),
        (XENIUM, ["--tune-layers", "1"], "needs --checkpoint"),
    ],
)
def test_bad_requests_are_refused_before_writing(tmp_path, slide, extra, message):
    out = tmp_path / "typed.zarr"
    result = run_cli("annotate", slide, "--reference", REFERENCE, "--label-key", "bulk_labels", "-o", out, *extra)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "typed.png").exists()


def test_a_user_file_at_the_output_is_not_replaced(tmp_path):
    out = tmp_path / "mine.h5ad"
    out.write_bytes(b"my work")
    result = run_cli("annotate", XENIUM, "--reference", REFERENCE, "--label-key", "bulk_labels", "-o", out)
    assert result.returncode == 1 and "not written by fmscope" in result.stderr
    assert out.read_bytes() == b"my work"


def _tokens_as_counts() -> tuple[ad.AnnData, np.ndarray]:
    """The official fixture's cells as a counts matrix whose tokens are the fixture's: each cell's binned
    values sit at evenly spaced quantiles, so counts equal to them bin back to themselves."""
    import json

    expected = np.load(SCGPT_TINY / "expected.npz")
    vocab = json.loads((SCGPT_TINY / "vocab.json").read_text())
    names = sorted((g for g in vocab if not g.startswith("<")), key=vocab.get)
    counts = np.zeros((len(expected["gene_ids"]), len(names)), dtype=np.float32)
    column = {vocab[g]: j for j, g in enumerate(names)}
    for i, (genes, values, padding) in enumerate(zip(expected["gene_ids"], expected["values"], expected["padding"])):
        for gene, value in zip(genes[1:][~padding[1:]], values[1:][~padding[1:]]):
            counts[i, column[int(gene)]] = value
    cells = ad.AnnData(X=counts)
    cells.var_names = names
    return cells, expected["cell_emb"]


def test_scgpt_encoder_of_annotate_matches_the_official_embedding():
    """The annotate encoder, from counts through tokens to <cls>, gives the official scGPT's cell embeddings
    (tests/fixtures/scgpt_tiny, made with scgpt==0.2.4): the same check as the embed command's, to 1e-6."""
    cells, official = _tokens_as_counts()
    embedding = ScGPTEncoder(SCGPT_TINY).transform(cells)
    normalised = official / np.linalg.norm(official, axis=1, keepdims=True)
    assert np.abs(embedding - normalised).max() <= 1e-6


def _renamed(adata: ad.AnnData, n: int) -> ad.AnnData:
    """The tiny checkpoint's vocabulary is GENE0..GENE39 (+ 4 symbols): the first ``n`` genes take those names."""
    out = adata.copy()
    out.var_names = [f"GENE{i}" if i < n else name for i, name in enumerate(map(str, out.var_names))]
    return out


@pytest.mark.slow
def test_annotate_runs_end_to_end_with_tiny_scgpt_and_layer_tuning(tmp_path):
    """Real Visium spots and PBMC cells, genes renamed into the random tiny checkpoint's vocabulary: the whole
    scGPT path (layer tuning on the reference's training cells, embedding, evaluation, writing) runs."""
    visium = read_slide(DATA / "visium_mouse_brain").adata[:100].copy()
    slide = ad.AnnData(X=visium.X, obs=visium.obs[[]])
    slide.var_names = list(map(str, visium.var_names))
    slide = _renamed(slide, 40)
    slide.obsm["spatial"] = np.asarray(visium.obsm["spatial"])
    slide.uns["fmscope"] = {"microns_per_unit": 1.0}
    slide.write_h5ad(tmp_path / "slide.h5ad")
    reference = read_reference(REFERENCE, label_key="bulk_labels").adata[::4]
    _renamed(reference, 40).write_h5ad(tmp_path / "reference.h5ad")
    before = torch.load(SCGPT_TINY / "best_model.pt", weights_only=True)
    out = tmp_path / "typed.h5ad"
    result = run_cli(
        "annotate",
        tmp_path / "slide.h5ad",
        "--reference",
        tmp_path / "reference.h5ad",
        "--label-key",
        "bulk_labels",
        "--checkpoint",
        SCGPT_TINY,
        "--tune-layers",
        "1",
        "--tune-epochs",
        "1",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert "scGPT scgpt_tiny (<cls> embedding, last 1 layer(s) fine-tuned on the reference)" in result.stdout
    written = ad.read_h5ad(out)
    assert written.n_obs == 100 and written.obs[CONFIDENCE_KEY].between(0, 1).all()
    assert "scGPT" in written.uns["fmscope"]["annotation"]["encoder"]
    after = torch.load(SCGPT_TINY / "best_model.pt", weights_only=True)
    assert all(torch.equal(before[key], after[key]) for key in before)  # the checkpoint folder is not changed
