"""Deconvolution and imputation against a real labelled reference, on held-out real cells."""

import anndata as ad
import numpy as np
import pytest
from cli_runner import run_cli

from fmscope import samples
from fmscope.errors import FmscopeError
from fmscope.omics.deconvolve import deconvolve_nnls
from fmscope.omics.impute import impute_knn
from fmscope.omics.reference import expression

REFERENCE = samples.sample_data_dir() / "pbmc68k_reduced.h5ad"


@pytest.fixture(scope="module")
def halves():
    """The real PBMC reference split in two: one half is the reference, the other makes test data."""
    cells = ad.read_h5ad(REFERENCE)
    order = np.random.default_rng(0).permutation(cells.n_obs)
    return cells[order[:350]].copy(), cells[order[350:]].copy()


def _mixture_spots(cells: ad.AnnData, n_spots: int = 200, per_spot: int = 10):
    matrix, names = expression(cells)
    types = cells.obs["bulk_labels"].astype(str).to_numpy()
    all_types = sorted(set(types))
    rng = np.random.default_rng(1)
    profiles, truth = [], []
    for _ in range(n_spots):
        chosen = rng.choice(len(types), size=per_spot)
        profiles.append(np.expm1(matrix[chosen]).sum(axis=0))
        truth.append([np.mean(types[chosen] == t) for t in all_types])
    spots = ad.AnnData(X=np.array(profiles, dtype=np.float32))
    spots.var_names = names
    return spots, np.array(truth), all_types


def test_nnls_deconvolution_recovers_known_mixtures(halves):
    reference, held_out = halves
    spots, truth, types = _mixture_spots(held_out)
    estimate = deconvolve_nnls(spots, reference, "bulk_labels")[types].to_numpy()
    assert np.allclose(estimate.sum(axis=1), 1)
    correlation = {t: np.corrcoef(truth[:, j], estimate[:, j])[0, 1] for j, t in enumerate(types)}
    print("\nper-type correlation of proportions:", {k: round(v, 2) for k, v in correlation.items()})
    for distinct in ("CD14+ Monocyte", "CD19+ B", "Dendritic"):
        assert correlation[distinct] > 0.6, correlation
    assert np.mean(list(correlation.values())) > 0.4


def test_knn_imputation_beats_shuffled_neighbours(halves):
    reference, held_out = halves
    matrix, names = expression(held_out)
    rng = np.random.default_rng(2)
    hidden = list(np.array(names)[rng.choice(len(names), 20, replace=False)])
    kept = [g for g in names if g not in hidden]
    slide = ad.AnnData(X=np.expm1(matrix[:, [names.index(g) for g in kept]]).astype(np.float32))
    slide.var_names = kept
    imputed = impute_knn(slide, reference, genes=hidden).to_numpy()
    truth = matrix[:, [names.index(g) for g in hidden]]
    shuffled = imputed[rng.permutation(len(imputed))]

    def mean_r(prediction):
        return np.nanmean(
            [
                np.corrcoef(truth[:, j], prediction[:, j])[0, 1]
                for j in range(len(hidden))
                if truth[:, j].std() > 0 and prediction[:, j].std() > 0
            ]
        )

    print(f"\nimputation: mean per-gene r {mean_r(imputed):.3f} (shuffled control {mean_r(shuffled):.3f})")
    assert mean_r(imputed) > 0.15 and mean_r(imputed) > mean_r(shuffled) + 0.1


def test_errors_are_clear(halves):
    reference, _ = halves
    other = ad.AnnData(X=np.ones((5, 3), dtype=np.float32))
    other.var_names = ["XA", "XB", "XC"]
    with pytest.raises(FmscopeError, match="share no gene"):
        impute_knn(other, reference, genes=["CD3E"])
    with pytest.raises(FmscopeError, match="no obs\\['celltype'\\]"):
        deconvolve_nnls(other, reference, "celltype")


_cli = run_cli  # the CLI in this process (tests/cli_runner.py)


@pytest.mark.slow
def test_deconvolve_cli_writes_proportions_and_png(tmp_path, halves):
    reference, held_out = halves
    spots, _, types = _mixture_spots(held_out, n_spots=100)
    spots.obsm["spatial"] = np.c_[np.arange(100) % 10, np.arange(100) // 10].astype(float) * 100.0
    spots.write_h5ad(tmp_path / "spots.h5ad")
    reference.write_h5ad(tmp_path / "reference.h5ad")
    out = tmp_path / "props.h5ad"
    result = _cli(
        "deconvolve",
        tmp_path / "spots.h5ad",
        "--reference",
        tmp_path / "reference.h5ad",
        "--label-key",
        "bulk_labels",
        "--microns-per-unit",
        "1",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    adata = ad.read_h5ad(out)
    written = [name.replace("/", "_") for name in types]  # 'CD4+/CD25 T Reg': '/' is an HDF5 path (legal_keys)
    assert list(adata.obsm["fmscope_proportions"].columns) == written
    renamed = adata.uns["fmscope"]["renamed_keys"]
    assert {key: name for key, name in zip(renamed["key"], renamed["name"])} == {
        key: name for key, name in zip(written, types) if key != name
    }
    assert "cannot hold as keys" in result.stderr
    assert (tmp_path / "props.png").stat().st_size > 5_000


@pytest.mark.slow
def test_deconvolve_cli_refuses_a_reference_of_other_genes(tmp_path):
    # The Visium sample (100 mouse genes) and the PBMC reference's (human) marker genes meet only when case is
    # ignored: another species, refused naming it (fmscope.omics.gene_match).
    out = tmp_path / "props.h5ad"
    result = _cli(
        "deconvolve",
        samples.sample_data_dir() / "visium_mouse_brain",
        "--reference",
        REFERENCE,
        "--label-key",
        "bulk_labels",
        "-o",
        out,
    )
    assert result.returncode == 1 and "only when case is ignored" in result.stderr and "species" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_embedding_deconvolution_against_the_nnls_baseline(halves):
    """Pseudo-spot regression in embedding space vs NNLS on markers, on the same held-out mixtures."""
    from fmscope.omics.deconvolve_embedding import deconvolve_embedding

    reference, held_out = halves
    spots, truth, types = _mixture_spots(held_out)
    scores = {}
    for name, method in (("nnls", deconvolve_nnls), ("embedding", deconvolve_embedding)):
        estimate = method(spots, reference, "bulk_labels")[types].to_numpy()
        assert np.allclose(estimate.sum(axis=1), 1) and (estimate >= 0).all()
        scores[name] = (
            np.nanmean([np.corrcoef(truth[:, j], estimate[:, j])[0, 1] for j in range(len(types))]),
            np.abs(estimate - truth).mean(),
        )
    print("\ndeconvolution, mean per-type r / MAE:", {k: (round(r, 3), round(e, 4)) for k, (r, e) in scores.items()})
    assert scores["embedding"][0] > scores["nnls"][0] and scores["embedding"][1] < scores["nnls"][1]
