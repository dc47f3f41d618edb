"""Cell-type proportions per spot from a labelled single-cell reference.

Transparent method: each cell type's mean profile over its marker genes (the genes most
specific to it in the reference), then non-negative least squares of each spot's profile on
those means, normalised to proportions (design after the classic NNLS deconvolution used as a
baseline in spatial-omics benchmarks). Works on log-normalised expression; no checkpoint.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy.optimize import nnls

from fmscope.omics.gene_match import columns, shared_genes
from fmscope.omics.reference import expression, labelled

PROPORTIONS_KEY = "fmscope_proportions"


def marker_profiles(reference: ad.AnnData, label_key: str, n_markers: int = 25) -> tuple[pd.DataFrame, list[str]]:
    """(types x genes) mean expression over the union of each type's top markers, and those genes."""
    reference, labels, _ = labelled(reference, label_key)
    types = sorted(set(labels))
    matrix, names = expression(reference)
    means = np.stack([matrix[labels == t].mean(axis=0) for t in types])
    specificity = means - (means.sum(axis=0, keepdims=True) - means) / (len(types) - 1)
    markers = sorted({int(g) for row in specificity for g in np.argsort(-row)[:n_markers]})
    return pd.DataFrame(np.expm1(means[:, markers]), index=types, columns=[names[g] for g in markers]), [
        names[g] for g in markers
    ]


def deconvolve_nnls(spots: ad.AnnData, reference: ad.AnnData, label_key: str, n_markers: int = 25) -> pd.DataFrame:
    """(spots x types) proportions summing to 1 (0 for spots with no marker signal)."""
    profiles, markers = marker_profiles(reference, label_key, n_markers)
    spot_matrix, spot_names = expression(spots, use_raw=False)
    genes = shared_genes(markers, spot_names, "the reference", "the slide")
    design = profiles[[g for g in profiles.columns if g in set(genes)]].to_numpy().T  # genes x types
    observed = np.expm1(spot_matrix[:, columns(spot_names, genes)])
    proportions = np.zeros((spots.n_obs, len(profiles)))
    for i, spot in enumerate(observed):
        weights, _ = nnls(design, spot)
        total = weights.sum()
        proportions[i] = weights / total if total > 0 else 0
    return pd.DataFrame(proportions, index=spots.obs_names, columns=profiles.index)
