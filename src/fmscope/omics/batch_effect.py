"""A realistic batch effect on real counts, for testing and benchmarking integration where no real multi-slide
data can be had: the same tissue measured again with other per-gene capture and half the sequencing depth.

Each count is thinned binomially (each molecule kept with probability ``depth * capture[gene]``, clipped to 1):
the kept counts are what a library of lower depth and other capture efficiencies would have sampled from the
same molecules (binomial thinning, the model of e.g. Gerard, "Data-based RNA-seq simulations by binomial
thinning", BMC Bioinformatics 2020). ``capture`` is log-normal per gene (``capture_sigma``: its log's standard
deviation, 0.5 = a gene typically captured 0.6x to 1.65x as well).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp


def thinned_counts(counts, depth: float = 0.5, capture_sigma: float = 0.5, seed: int = 0) -> np.ndarray:
    """(cells, genes) int64 counts thinned from integer ``counts`` (cells, genes; dense or sparse)."""
    rng = np.random.default_rng(seed)
    dense = np.rint(counts.toarray() if sp.issparse(counts) else np.asarray(counts)).astype(np.int64)
    capture = np.exp(rng.normal(0.0, capture_sigma, dense.shape[1]))
    return rng.binomial(dense, np.clip(depth * capture, 0.0, 1.0)[None, :])


def twin_slide(adata: ad.AnnData, depth: float = 0.5, capture_sigma: float = 0.5, seed: int = 0) -> ad.AnnData:
    """A copy of ``adata`` (same cells, positions, obs, uns) whose X holds :func:`thinned_counts` of its X."""
    twin = ad.AnnData(
        X=sp.csr_matrix(thinned_counts(adata.X, depth, capture_sigma, seed), dtype=np.float32),
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=dict(adata.uns),
    )
    for key, value in adata.obsm.items():
        twin.obsm[key] = np.array(value, copy=True)
    return twin
