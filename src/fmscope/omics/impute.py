"""Impute unmeasured genes from a single-cell reference by nearest neighbours.

Both datasets are log-normalised and projected onto the reference's principal components
over the genes they share; each slide cell takes the mean reference expression of its
``k`` nearest reference cells for the genes the panel did not measure (design after the
kNN imputation baselines of spatial-omics benchmarks, e.g. Tangram's and SpaGE's papers).
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from fmscope.errors import FmscopeError
from fmscope.omics.reference import columns, expression, shared_genes

IMPUTED_KEY = "fmscope_imputed"


def impute_knn(slide: ad.AnnData, reference: ad.AnnData, genes: Sequence[str] | None = None, k: int = 15,
               n_comps: int = 30, seed: int = 0) -> pd.DataFrame:
    """(cells x genes) imputed log-normalised expression; default genes: all the reference has and the slide lacks."""
    reference_matrix, reference_names = expression(reference)
    slide_matrix, slide_names = expression(slide, use_raw=False)
    shared = shared_genes(slide_names, reference_names)
    measured = {g.lower() for g in slide_names}
    wanted = list(genes) if genes is not None else [g for g in reference_names if g.lower() not in measured]
    unknown = [g for g in wanted if g.lower() not in {n.lower() for n in reference_names}]
    if unknown:
        raise FmscopeError(f"The reference lacks {', '.join(unknown[:5])}.", "Ask only for genes the reference has.")
    if not wanted:
        raise FmscopeError("Nothing to impute: the slide measures every reference gene.", "Name genes with --genes.")
    pca = PCA(n_components=min(n_comps, len(shared) - 1, reference.n_obs - 1), random_state=seed)
    reference_space = pca.fit_transform(reference_matrix[:, columns(reference_names, shared)])
    slide_space = pca.transform(slide_matrix[:, columns(slide_names, shared)])
    _, neighbours = NearestNeighbors(n_neighbors=min(k, reference.n_obs)).fit(reference_space).kneighbors(slide_space)
    values = reference_matrix[:, columns(reference_names, wanted)][neighbours].mean(axis=1)
    return pd.DataFrame(values, index=slide.obs_names, columns=wanted)
