"""Several sections in one embedding space, with the batch effect between them corrected.

Two corrections, both per section (``sections``: (cells,) labels):

- The baseline encoder (:func:`section_centred_pca`): log1p(counts per 10,000), each gene centred within
  each section (the location part of ComBat: a gene captured twice as well in one section is shifted by
  the same log amount in all its cells), then one PCA of all sections. It assumes the sections hold
  broadly the same tissue (a domain present in one section only shifts that section's means).
- Harmony (:func:`harmony`, harmonypy; Korsunsky et al., Nature Methods 2019) on the embedding, by
  section: soft clusters shared across sections, each section's offset in each cluster removed.

``fmscope domains`` runs both for the baseline (``correction="harmony"``), Harmony on the scGPT
embedding for a checkpoint (:func:`scgpt_batch_note` says what the checkpoint's own batch parts do).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmscope.errors import FmscopeError
from fmscope.omics.embed import MAX_FIT_CELLS, TRANSFORM_CHUNK

CORRECTIONS = ("harmony", "none")
HARMONY_DIMS = 50  # a wider embedding (scGPT: 512) is first reduced to this many principal components


def log_cp10k(block) -> np.ndarray:
    """(cells, genes) float32 dense log1p(counts per 10,000) of a counts block (dense or sparse); a cell without
    counts stays zero (as scanpy's normalize_total + log1p, which the baseline encoder uses, leave it)."""
    dense = np.array(block.toarray() if sp.issparse(block) else block, dtype=np.float32)
    totals = dense.sum(axis=1, keepdims=True)
    np.divide(dense * np.float32(1e4), totals, out=dense, where=totals > 0)
    return np.log1p(dense, out=dense)


def _section_means(adata, sections: np.ndarray) -> dict[str, np.ndarray]:
    """{section: (genes,) mean log1p(CP10k)}, accumulated a chunk of cells at a time."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for start in range(0, adata.n_obs, TRANSFORM_CHUNK):
        block = log_cp10k(adata.X[start : start + TRANSFORM_CHUNK])
        for name in np.unique(sections[start : start + TRANSFORM_CHUNK]):
            rows = sections[start : start + TRANSFORM_CHUNK] == name
            sums[name] = sums.get(name, 0) + block[rows].sum(axis=0, dtype=np.float64)
            counts[name] = counts.get(name, 0) + int(rows.sum())
    return {name: sums[name] / counts[name] for name in sums}


def section_centred_pca(adata, sections: np.ndarray, n_comps: int = 30, centre: bool = True, seed: int = 0):
    """(cells, dims) float32 PCA of log1p(CP10k) with each gene centred within each section (``centre=False``:
    the plain PCA of all sections, no correction). Fitted on at most ``MAX_FIT_CELLS`` cells (seeded sample)."""
    from sklearn.decomposition import PCA

    sections = np.asarray(sections).astype(str)
    means = _section_means(adata, sections) if centre else {}
    fit_rows = np.arange(adata.n_obs)
    if adata.n_obs > MAX_FIT_CELLS:
        fit_rows = np.sort(np.random.default_rng(seed).choice(adata.n_obs, MAX_FIT_CELLS, replace=False))

    def centred(rows: np.ndarray) -> np.ndarray:
        block = log_cp10k(adata.X[rows])
        for name, mean in means.items():
            block[sections[rows] == name] -= mean
        return block

    n_comps = min(n_comps, len(fit_rows) - 1, adata.n_vars - 1)
    pca = PCA(n_comps, random_state=seed, svd_solver="arpack" if n_comps < adata.n_vars - 1 else "full")
    fitted = pca.fit_transform(centred(fit_rows)).astype(np.float32)
    if len(fit_rows) == adata.n_obs:  # fitted on every cell: nothing more to project
        return fitted
    out = np.empty((adata.n_obs, n_comps), dtype=np.float32)
    for start in range(0, adata.n_obs, TRANSFORM_CHUNK):
        rows = np.arange(start, min(start + TRANSFORM_CHUNK, adata.n_obs))
        out[rows] = pca.transform(centred(rows))
    return out


def harmony(embedding: np.ndarray, sections: np.ndarray, seed: int = 0) -> np.ndarray:
    """(cells, dims) float32: Harmony-corrected ``embedding`` (cells, dims) by section (harmonypy defaults,
    seeded). An embedding wider than ``HARMONY_DIMS`` is first reduced to that many principal components."""
    import harmonypy

    sections = np.asarray(sections).astype(str)
    if len(np.unique(sections)) < 2:
        return np.asarray(embedding, dtype=np.float32)
    data = np.asarray(embedding, dtype=np.float64)
    if data.shape[1] > HARMONY_DIMS:
        from sklearn.decomposition import PCA

        data = PCA(HARMONY_DIMS, random_state=seed).fit_transform(data)
    result = harmonypy.run_harmony(
        data, pd.DataFrame({"section": sections}), "section", random_state=seed, verbose=False, ncores=1
    )
    corrected = np.asarray(result.Z_corr)
    return (corrected if corrected.shape[0] == len(data) else corrected.T).astype(np.float32)


def scgpt_batch_note(skipped_weights: list[str]) -> str:
    """What an scGPT checkpoint's batch parts do in a joint embedding (from its load report's lines)."""
    has_batch = any("batch_encoder." in line for line in skipped_weights)
    has_dsbn = any("dsbn." in line for line in skipped_weights)
    if not (has_batch or has_dsbn):
        return (
            "the scGPT checkpoint has no batch embedding (no batch_encoder.* / dsbn.* keys): "
            "its <cls> embeddings are corrected with Harmony by section"
        )
    parts = []
    if has_batch:
        parts.append(
            "its batch embedding (batch_encoder.*) enters only the official expression decoders, not the <cls> "
            "cell embedding"
        )
    if has_dsbn:
        parts.append(
            "its domain-specific batch norms (dsbn.*) are those of the batches it was fine-tuned on, not these "
            "sections, so they are not applied"
        )
    return "the scGPT checkpoint has batch parts: " + "; ".join(parts) + "; the sections are corrected with Harmony"


def check_correction(correction: str) -> None:
    if correction not in CORRECTIONS:
        raise FmscopeError(f"Unknown batch correction '{correction}'.", f"Use one of {', '.join(CORRECTIONS)}.")
