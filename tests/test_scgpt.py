"""fmscope's scGPT equals the official implementation on an official-layout checkpoint."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fmscope.errors import FmscopeError
from fmscope.omics.binning import bin_values
from fmscope.omics.models.scgpt import load_scgpt

FIXTURE = Path(__file__).parent / "fixtures" / "scgpt_tiny"


@pytest.fixture(scope="module")
def expected():
    return np.load(FIXTURE / "expected.npz")


def _embed(model, expected) -> np.ndarray:
    with torch.no_grad():
        return model.cell_embedding(torch.as_tensor(expected["gene_ids"]).long(),
                                    torch.as_tensor(expected["values"]).float(),
                                    torch.as_tensor(expected["padding"])).numpy()


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_cell_embeddings_match_official(expected):
    model, vocab, report = load_scgpt(FIXTURE)
    assert vocab["<cls>"] == 1 and not report.missing and not report.unexpected
    cosine = _cosine(_embed(model, expected), expected["cell_emb"])
    assert cosine.min() >= 0.9999, cosine


def test_flash_attn_key_layout_loads_the_same(tmp_path, expected):
    for name in ("args.json", "vocab.json"):
        (tmp_path / name).write_bytes((FIXTURE / name).read_bytes())
    state = torch.load(FIXTURE / "best_model.pt", weights_only=True)
    flash = {k.replace("self_attn.in_proj_weight", "self_attn.Wqkv.weight")
              .replace("self_attn.in_proj_bias", "self_attn.Wqkv.bias"): v for k, v in state.items()}
    torch.save(flash, tmp_path / "best_model.pt")
    model, _, report = load_scgpt(tmp_path)
    assert len(report.renamed) == 4
    assert _cosine(_embed(model, expected), expected["cell_emb"]).min() >= 0.9999


@pytest.mark.parametrize("change, message", [
    ("rename", "mvc_decoder.W.weight_old"),
    ("shape", r"encoder.enc_norm.weight \(16,\) != \(32,\)"),
])
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
