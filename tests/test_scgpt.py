"""fmscope's scGPT equals the official implementation on an official-layout checkpoint."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fmscope.errors import FmscopeError
from fmscope.omics.binning import bin_values
from fmscope.omics.impute import impute_from_cls, spatial_neighbours
from fmscope.omics.models.scgpt import load_scgpt

FIXTURE = Path(__file__).parent / "fixtures" / "scgpt_tiny"


@pytest.fixture(scope="module")
def expected():
    return np.load(FIXTURE / "expected.npz")


def _embed(model, expected) -> np.ndarray:
    with torch.no_grad():
        return model.cell_embedding(
            torch.as_tensor(expected["gene_ids"]).long(),
            torch.as_tensor(expected["values"]).float(),
            torch.as_tensor(expected["padding"]),
        ).numpy()


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_cell_embeddings_match_official(expected):
    model, vocab, report = load_scgpt(FIXTURE)
    assert vocab["<cls>"] == 1 and not report.missing and not report.unexpected
    embedding = _embed(model, expected)
    assert np.abs(embedding - expected["cell_emb"]).max() <= 1e-6  # README: 4.8e-7 measured
    cosine = _cosine(embedding, expected["cell_emb"])
    assert cosine.min() >= 0.9999, cosine


def test_cell_embeddings_on_openvino_equal_torchs(expected):
    """The transformer on OpenVINO (dynamic batch and length) within fp32 rounding of the official embeddings,
    for a padded batch and for a batch without padding (the traced masked branch must hold there too)."""
    from fmscope.backends.scgpt_encoder import OpenVINOCellEmbedding

    model, _, _ = load_scgpt(FIXTURE)
    runtime = OpenVINOCellEmbedding(model)
    genes, values = torch.as_tensor(expected["gene_ids"]), torch.as_tensor(expected["values"]).float()
    padding = torch.as_tensor(expected["padding"])
    padded = runtime(genes, values, padding).numpy()
    assert padded.shape == (6, 32) and np.abs(padded - expected["cell_emb"]).max() <= 1e-5
    unpadded = (~padding[3]).nonzero().flatten()  # cell 3: 6 genes, then padding
    short = genes[3:4, unpadded], values[3:4, unpadded], torch.zeros(1, len(unpadded), dtype=torch.bool)
    with torch.no_grad():
        reference = model.cell_embedding(*short).numpy()
    assert np.abs(runtime(*short).numpy() - reference).max() <= 1e-5
    fast = OpenVINOCellEmbedding(model, "fast")(genes, values, padding).numpy()  # bf16 on this CPU
    assert _cosine(fast, expected["cell_emb"]).min() >= 0.999


def test_fast_scgpt_on_torch_is_refused_by_name():
    from fmscope.omics.embed import scgpt_embedding

    model, vocab, _ = load_scgpt(FIXTURE)
    with pytest.raises(FmscopeError, match="Precision 'fast' for scGPT is OpenVINO's"):
        scgpt_embedding(None, model, vocab, backend="torch", precision="fast")


def test_skipped_parts_are_listed_and_explained(tmp_path, expected):
    """Keys of parts fmscope does not build (generation flag, batch encoder, DAB, DSBN) load, and the
    report lists every one of them with why; the cell embeddings do not change."""
    for name in ("args.json", "vocab.json"):
        (tmp_path / name).write_bytes((FIXTURE / name).read_bytes())
    state = torch.load(FIXTURE / "best_model.pt", weights_only=True)
    extra = {
        "flag_encoder.weight": torch.zeros(2, 32),
        "batch_encoder.embedding.weight": torch.zeros(3, 32),
        "batch_encoder.enc_norm.weight": torch.ones(32),
        "grad_reverse_discriminator._decoder.0.weight": torch.zeros(32, 32),
        "dsbn.bns.0.weight": torch.ones(32),
        "dsbn.bns.1.weight": torch.ones(32),
    }
    torch.save({**state, **extra}, tmp_path / "best_model.pt")
    model, _, report = load_scgpt(tmp_path)
    assert sorted(report.ignored) == sorted(extra)
    assert (
        "6 skipped: flag_encoder.* (1), batch_encoder.* (2), grad_reverse_discriminator.* (1), dsbn.* (2)"
        in report.summary()
    )
    lines = report.explanations()
    assert len(lines) == 4 and all(any(key in line for line in lines) for key in extra)
    assert any("dsbn.*" in line and "differ from the official ones" in line for line in lines)
    assert np.abs(_embed(model, expected) - expected["cell_emb"]).max() <= 1e-6


def test_flash_attn_key_layout_loads_the_same(tmp_path, expected):
    for name in ("args.json", "vocab.json"):
        (tmp_path / name).write_bytes((FIXTURE / name).read_bytes())
    state = torch.load(FIXTURE / "best_model.pt", weights_only=True)
    flash = {
        k.replace("self_attn.in_proj_weight", "self_attn.Wqkv.weight").replace(
            "self_attn.in_proj_bias", "self_attn.Wqkv.bias"
        ): v
        for k, v in state.items()
    }
    torch.save(flash, tmp_path / "best_model.pt")
    model, _, report = load_scgpt(tmp_path)
    assert len(report.renamed) == 4
    assert _cosine(_embed(model, expected), expected["cell_emb"]).min() >= 0.9999


@pytest.mark.parametrize(
    "change, message",
    [
        ("rename", "mvc_decoder.W.weight_old"),
        ("shape", r"encoder.enc_norm.weight \(16,\) != \(32,\)"),
    ],
)
def test_renamed_key_or_wrong_shape_fails_loudly(tmp_path, change, message):
    for name in ("args.json", "vocab.json"):
        (tmp_path / name).write_bytes((FIXTURE / name).read_bytes())
    state = torch.load(FIXTURE / "best_model.pt", weights_only=True)
    if change == "rename":
        state["mvc_decoder.W.weight_old"] = state.pop("mvc_decoder.W.weight")
    else:
        state["encoder.enc_norm.weight"] = torch.ones(16)
    torch.save(state, tmp_path / "best_model.pt")
    with pytest.raises(FmscopeError, match=message):
        load_scgpt(tmp_path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FmscopeError, match="best_model.pt"):
        load_scgpt(tmp_path)


def test_binning_matches_official_without_ties_and_is_deterministic(expected):
    assert np.array_equal(bin_values(expected["binning_row"], 51), expected["binning_out"])
    counts = np.array([0, 1, 1, 1, 2, 2, 5, 0, 9, 1], dtype=float)  # many ties: official would be random
    assert np.array_equal(bin_values(counts, 51), bin_values(counts.copy(), 51))
    assert bin_values(counts, 51)[0] == 0 and bin_values(counts, 51).max() <= 50


SPATIAL = Path(__file__).parent / "fixtures" / "scgpt_spatial_tiny"


@pytest.fixture(scope="module")
def spatial():
    model, vocab, report = load_scgpt(SPATIAL)
    return model, vocab, report, np.load(SPATIAL / "expected.npz")


def test_scgpt_spatial_heads_match_official(spatial):
    model, vocab, report, expected = spatial
    assert model.config.expression_decoder == "moe" and model.config.imputation_head
    assert report.ignored == ["flag_encoder.weight"] and not report.missing
    genes, values, padding = (torch.as_tensor(expected[k]) for k in ("gene_ids", "values", "padding"))
    keep = ~expected["padding"]
    with torch.no_grad():
        outputs = model.encode(genes, values.float(), padding)
        cls = outputs[:, 0]
        assert _cosine(cls.numpy(), expected["cell_emb"]).min() >= 0.9999
        assert np.abs(cls.numpy() - expected["cell_emb"]).max() <= 1e-6  # README: to 1e-6
        assert np.abs(model.expression(outputs).numpy()[keep] - expected["mlm_output"][keep]).max() <= 1e-6
        assert (
            np.abs(model.mvc_decoder(cls, model.encoder(genes)).numpy()[keep] - expected["mvc_output"][keep]).max()
            <= 1e-6
        )
    neighbours = spatial_neighbours(expected["coordinates"], int(expected["knn_k"]))
    imputed = impute_from_cls(model, cls.numpy(), neighbours, expected["gene_ids"])
    assert np.abs(imputed[keep] - expected["impute_pred"][keep]).max() <= 1e-6


def test_scgpt_spatial_embeddings_of_a_slide_match_official(spatial):
    """Slide-mean and gene-mean scaling (all_dict_mean_std.csv), binning, <cls>: the official pipeline's output."""
    import anndata as ad

    from fmscope.omics.embed import scgpt_embedding

    model, vocab, _, expected = spatial
    assert len(model.gene_means) == 27
    slide = ad.AnnData(X=expected["slide_counts"])
    slide.var_names = list(expected["slide_genes"])
    cosine = _cosine(scgpt_embedding(slide, model, vocab, batch_size=5), expected["slide_cell_emb"])
    assert cosine.min() >= 0.99999, cosine  # README: cosine 0.99999


def test_scgpt_spatial_imputation_cli(tmp_path, spatial):
    import anndata as ad
    from cli_runner import run_cli

    _, _, _, expected = spatial
    slide = ad.AnnData(X=expected["slide_counts"])
    slide.var_names = list(expected["slide_genes"])
    slide.obsm["spatial"] = np.random.default_rng(0).uniform(0, 500, (slide.n_obs, 2))
    slide.uns["fmscope"] = {"microns_per_unit": 1.0}
    slide.write_h5ad(tmp_path / "slide.h5ad")
    result = run_cli(
        "impute",
        tmp_path / "slide.h5ad",
        "--checkpoint",
        SPATIAL,
        "--genes",
        "GENE30",
        "GENE31",
        "-o",
        tmp_path / "imputed.h5ad",
    )
    assert result.returncode == 0, result.stderr
    imputed = ad.read_h5ad(tmp_path / "imputed.h5ad").obsm["fmscope_imputed_scgpt_spatial"]
    assert list(imputed.columns) == ["GENE30", "GENE31"] and np.isfinite(imputed.to_numpy()).all()
    result = run_cli(
        "impute", tmp_path / "slide.h5ad", "--checkpoint", FIXTURE, "--genes", "GENE30", "-o", tmp_path / "no.h5ad"
    )
    assert result.returncode == 1 and "no neighbour imputation head" in result.stderr
