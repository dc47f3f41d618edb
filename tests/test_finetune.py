"""The small local trainer on the semi-synthetic tissue: accuracy vs unsupervised domains,
atomic checkpoints, exact resume, applying the head to another slide, bad annotations."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from cli_runner import run_cli

from fmscope.errors import Cancelled, FmscopeError
from fmscope.omics.domains import spatial_domains
from fmscope.omics.embed import baseline_embedding
from fmscope.omics.finetune import apply_head, finetune_head, read_head, slide_encoder
from fmscope.omics.synthetic import annotate_blocks, semi_synthetic_tissue
from fmscope.progress import Progress

run = run_cli  # the CLI in this process (tests/cli_runner.py)


@pytest.fixture(scope="module")
def tissue():
    tissue = semi_synthetic_tissue(purity=0.6)
    spatial_domains(tissue, baseline_embedding(tissue), n_domains=4)
    return tissue


def test_head_beats_unsupervised_domains(tissue, tmp_path):
    labels = annotate_blocks(tissue)
    truth = tissue.obs["true_domain"].to_numpy()
    result = finetune_head(
        tissue, labels, tmp_path / "head.pt", slide_encoder(tissue), domains=tissue.obs["fmscope_domain"].to_numpy()
    )
    whole_slide = np.mean(result.predicted == truth)
    print(f"\n{result.summary()}; whole-slide accuracy {whole_slide:.3f}")
    assert result.holdout_accuracy > result.domains_holdout_accuracy
    assert whole_slide > 0.9
    assert set(result.classes) == set(truth)
    assert np.all((result.uncertainty >= 0) & (result.uncertainty < 1))


def test_resume_continues_exactly(tissue, tmp_path):
    labels = annotate_blocks(tissue)
    encoder = slide_encoder(tissue)
    straight = finetune_head(tissue, labels, tmp_path / "straight.pt", encoder, epochs=120, save_every=40)

    def stop_at_100(done, _total, _message):
        if done == 100:
            stop.cancel()

    stop = Progress(stop_at_100)
    with pytest.raises(Cancelled):
        finetune_head(tissue, labels, tmp_path / "resumed.pt", encoder, epochs=120, save_every=40, progress=stop)
    assert read_head(tmp_path / "resumed.pt")["epoch"] == 80  # the last checkpoint written before the stop
    resumed = finetune_head(tissue, labels, tmp_path / "resumed.pt", encoder, epochs=120, save_every=40, resume=True)
    assert np.allclose(straight.probabilities, resumed.probabilities, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_head_applies_to_another_slide(tissue, tmp_path):
    finetune_head(tissue, annotate_blocks(tissue), tmp_path / "head.pt", slide_encoder(tissue))
    other = semi_synthetic_tissue(purity=0.6, seed=7)
    classes, probabilities = apply_head(tmp_path / "head.pt", other)
    accuracy = np.mean(np.asarray(classes)[probabilities.argmax(axis=1)] == other.obs["true_domain"].to_numpy())
    print(f"\nhead applied to a new tissue: accuracy {accuracy:.3f}")
    assert accuracy > 0.85


def _two_halves(n: int = 300, genes: int = 60, seed: int = 0) -> ad.AnnData:
    """A slide (counts, microns) whose right half expresses GENE0-19 and left half GENE20-39 (two known regions)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1000, (n, 2))
    right = xy[:, 0] > 500
    lam = np.full((n, genes), 2.0)
    lam[right, :20] += 8
    lam[~right, 20:40] += 8
    adata = ad.AnnData(X=sp.csr_matrix(rng.poisson(lam).astype(np.float32)))
    adata.obs_names = [f"cell{i:04d}" for i in range(n)]
    adata.var_names = [f"GENE{j}" for j in range(genes)]
    adata.obsm["spatial"] = xy
    adata.obs["truth"] = np.where(right, "right", "left")
    return adata


@pytest.mark.slow  # ~7 s: the head trained 100 epochs (fewer leave it too fragile to judge the fit)
def test_a_head_on_a_slide_lacking_some_of_its_genes_fits_them_says_so_or_refuses(tmp_path):
    """NUD2: a baseline head applied to a slide of the same panel lacking 10 of its 60 genes (5 right markers of
    20) no longer takes them as 0 (which labels every cell 'left': the zero-filled control below), but fits the
    embedding from the genes present, naming the absent ones; lacking 20 (all right markers) is refused."""
    import scipy.sparse as sp

    from fmscope.omics.head_genes import MIN_CARRIED

    train = _two_halves()
    x = train.obsm["spatial"][:, 0]
    labels = np.where(x < 300, "left", np.where(x > 700, "right", ""))
    finetune_head(train, labels, tmp_path / "head.pt", slide_encoder(train), epochs=100)
    other = _two_halves(seed=5)

    def accuracy(adata: ad.AnnData, notices: list[str]) -> float:
        classes, probabilities = apply_head(tmp_path / "head.pt", adata, notices=notices)
        return float(np.mean(np.asarray(classes)[probabilities.argmax(axis=1)] == other.obs["truth"].to_numpy()))

    notices: list[str] = []
    lacking = accuracy(other[:, 10:].copy(), notices)
    zero_filled = other.copy()
    zero_filled.X = sp.csr_matrix(zero_filled.X.multiply(np.r_[np.zeros(10), np.ones(50)][None, :]))
    print(f"\nall genes {accuracy(other, [])}, 10 absent {lacking}, zero-filled {accuracy(zero_filled, [])}")
    assert lacking > 0.85 > accuracy(zero_filled, []) + 0.2
    assert len(notices) == 1 and "lacks 10 of the 60 genes" in notices[0] and "GENE0" in notices[0]
    with pytest.raises(FmscopeError, match=rf"lacks 20 of the 60 genes.*at least {MIN_CARRIED:.0%}"):
        apply_head(tmp_path / "head.pt", other[:, 20:].copy())


SCGPT_TINY = Path(__file__).parent / "fixtures" / "scgpt_tiny"
SCGPT_TINY = Path(__file__).parent / "fixtures" / "scgpt_tiny"


def _in_tiny_vocabulary(adata: ad.AnnData) -> ad.AnnData:
    """The tiny checkpoint's vocabulary is GENE0..GENE39 (+ 4 symbols): the first 40 genes take those names (fewer
    matched genes are refused as too low a vocabulary coverage, fmscope.omics.vocab.require_coverage)."""
    out = adata.copy()
    out.var_names = [f"GENE{i}" if i < 40 else str(name) for i, name in enumerate(out.var_names)]
    return out


def test_scgpt_last_layer_tuning_is_saved_resumed_and_applied(tissue, tmp_path):
    """Tuning scGPT's last layer changes that layer only; the head file carries it, so applying the
    head (here and on another slide) uses the tuned model; resuming does not tune again."""
    import torch

    from fmscope.omics.models.scgpt import load_scgpt

    tissue = _in_tiny_vocabulary(tissue)
    labels = annotate_blocks(tissue)
    result = finetune_head(
        tissue,
        labels,
        tmp_path / "head.pt",
        slide_encoder(tissue, SCGPT_TINY),
        epochs=100,
        tune_layers=1,
        tune_epochs=5,
    )
    tuned = read_head(tmp_path / "head.pt")["encoder"]["tuned_layers"]
    original = load_scgpt(SCGPT_TINY)[0].state_dict()
    assert tuned and all(key.startswith("transformer_encoder.layers.1.") for key in tuned)  # the last of 2
    assert max(float((tuned[key] - original[key]).abs().max()) for key in tuned) > 1e-4
    head_only = finetune_head(tissue, labels, tmp_path / "head_only.pt", slide_encoder(tissue, SCGPT_TINY), epochs=100)
    assert not np.allclose(result.probabilities, head_only.probabilities, atol=1e-3)  # the embedding changed
    print(
        f"\nrandom tiny scGPT, held-out accuracy: head only {head_only.holdout_accuracy:.3f}, "
        f"last layer tuned {result.holdout_accuracy:.3f}"
    )
    classes, probabilities = apply_head(tmp_path / "head.pt", tissue)
    assert classes == result.classes and np.allclose(probabilities, result.probabilities, atol=1e-5)
    other = _in_tiny_vocabulary(semi_synthetic_tissue(purity=0.6, seed=7))
    assert apply_head(tmp_path / "head.pt", other)[1].shape == (other.n_obs, 4)
    notices: list[str] = []  # the head keeps its training genes: those the slide lacks are said
    apply_head(tmp_path / "head.pt", other[:, 5:].copy(), notices=notices)
    assert len(notices) == 1 and f"lacks 5 of the {tissue.n_vars} genes" in notices[0]
    resumed = finetune_head(
        tissue,
        labels,
        tmp_path / "head.pt",
        slide_encoder(tissue, SCGPT_TINY),
        epochs=150,
        resume=True,
        tune_layers=1,
        tune_epochs=5,
    )
    again = read_head(tmp_path / "head.pt")
    assert again["epoch"] == 150 and resumed.epochs == 150
    assert all(torch.equal(again["encoder"]["tuned_layers"][key], tuned[key]) for key in tuned)


@pytest.mark.parametrize(
    "checkpoint, layers, message",
    [(None, 1, "needs an scGPT model"), (SCGPT_TINY, 3, "Cannot tune 3 layers of a 2-layer")],
)
def test_layer_tuning_refuses_what_it_cannot_do(tissue, tmp_path, checkpoint, layers, message):
    with pytest.raises(FmscopeError, match=message):
        finetune_head(
            tissue, annotate_blocks(tissue), tmp_path / "head.pt", slide_encoder(tissue, checkpoint), tune_layers=layers
        )
    assert not (tmp_path / "head.pt").exists()


@pytest.mark.parametrize("labels, message", [("one_class", "at least two"), ("one_cell", "at least 2 cells")])
def test_bad_annotations_are_refused(tissue, tmp_path, labels, message):
    annotation = np.full(tissue.n_obs, "", dtype=object)
    annotation[:30] = "cortex"
    if labels == "one_cell":
        annotation[40] = "white matter"
    with pytest.raises(FmscopeError, match=message):
        finetune_head(tissue, annotation.astype(str), tmp_path / "head.pt", slide_encoder(tissue))
    assert not (tmp_path / "head.pt").exists()


@pytest.mark.slow
def test_finetune_and_classify_cli(tissue, tmp_path):
    slide = tissue.copy()
    slide.obs["annotation"] = annotate_blocks(slide)
    slide.write_h5ad(tmp_path / "tissue.h5ad")
    result = run(
        "finetune",
        tmp_path / "tissue.h5ad",
        "--annotations",
        "annotation",
        "--head",
        tmp_path / "head.pt",
        "-o",
        tmp_path / "tuned.zarr",
    )
    assert result.returncode == 0, result.stderr
    assert "held-out accuracy" in result.stdout and "unsupervised domains" in result.stdout
    assert (tmp_path / "tuned.png").stat().st_size > 10_000
    from fmscope.omics import io

    tuned = io.read_slide(tmp_path / "tuned.zarr")
    assert np.mean(tuned.adata.obs["fmscope_predicted_domain"].to_numpy() == slide.obs["true_domain"].to_numpy()) > 0.9
    other = semi_synthetic_tissue(purity=0.6, seed=3)
    other.write_h5ad(tmp_path / "other.h5ad")
    result = run("classify", tmp_path / "other.h5ad", "--head", tmp_path / "head.pt", "-o", tmp_path / "other.h5ad")
    assert result.returncode == 1 and "never writes over" in result.stderr
    result = run(
        "classify", tmp_path / "other.h5ad", "--head", tmp_path / "head.pt", "-o", tmp_path / "classified.h5ad"
    )
    assert result.returncode == 0, result.stderr
    assert "fmscope_uncertainty" in ad.read_h5ad(tmp_path / "classified.h5ad").obs
    _in_tiny_vocabulary(slide).write_h5ad(tmp_path / "tissue_tiny.h5ad")
    result = run(
        "finetune",
        tmp_path / "tissue_tiny.h5ad",
        "--annotations",
        "annotation",
        "--head",
        tmp_path / "scgpt_head.pt",
        "--checkpoint",
        SCGPT_TINY,
        "--tune-layers",
        "1",
        "--tune-epochs",
        "3",
        "-o",
        tmp_path / "scgpt_tuned.h5ad",
    )
    assert result.returncode == 0, result.stderr
    assert read_head(tmp_path / "scgpt_head.pt")["encoder"]["tuned_layers"]


@pytest.mark.parametrize("separator, bom", [(",", False), (";", True), ("\t", False)])
def test_annotation_csv_dialects_read_the_same(tmp_path, separator, bom):
    """An annotation table saved by a spreadsheet (comma, European semicolon, tab; a UTF-8 BOM) gives the same
    per-cell labels; cells not on the slide are ignored, a table naming none of them is refused."""
    from fmscope.omics.finetune import annotation_from_csv

    adata = ad.AnnData(np.zeros((4, 1)), obs=pd.DataFrame(index=["c0", "c1", "c2", "c3"]))
    text = (
        separator.join(["cell", "domain"])
        + "\n"
        + "\n".join(separator.join(row) for row in [("c0", "cortex"), ("c2", "white matter"), ("elsewhere", "x")])
        + "\n"
    )
    path = tmp_path / "annotation.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    assert list(annotation_from_csv(adata, path)) == ["cortex", "", "white matter", ""]
    notices: list[str] = []  # NUD5: without a header row (write.table col.names = FALSE) the first line is a cell
    path.write_bytes(("\ufeff" if bom else "").encode() + text.split("\n", 1)[1].encode())
    assert list(annotation_from_csv(adata, path, notices)) == ["cortex", "", "white matter", ""]
    assert any("no header row" in line for line in notices)
    (tmp_path / "none.csv").write_text("cell,domain\nz1,a\nz2,b\n")
    with pytest.raises(FmscopeError, match="None of the cells"):
        annotation_from_csv(adata, tmp_path / "none.csv")
