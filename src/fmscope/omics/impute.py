"""Impute unmeasured genes: from a single-cell reference by nearest neighbours, or with the
neighbour imputation head of an scGPT-spatial checkpoint.

Reference kNN: both datasets are log-normalised and projected onto the reference's principal components
over the genes they share; each slide cell takes the mean reference expression of its
``k`` nearest reference cells for the genes the panel did not measure (design after the
kNN imputation baselines of spatial-omics benchmarks, e.g. Tangram's and SpaGE's papers).
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from fmscope.errors import FmscopeError
from fmscope.omics.gene_match import columns, require_genes, shared_genes
from fmscope.omics.reference import expression
from fmscope.omics.sections import require_sections, within_sections
from fmscope.progress import Progress

IMPUTED_KEY = "fmscope_imputed"
SPATIAL_IMPUTED_KEY = "fmscope_imputed_scgpt_spatial"


def impute_knn(
    slide: ad.AnnData,
    reference: ad.AnnData,
    genes: Sequence[str] | None = None,
    k: int = 15,
    n_comps: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """(cells x genes) imputed log-normalised expression; default genes: all the reference has and the slide lacks."""
    reference_matrix, reference_names = expression(reference)
    slide_matrix, slide_names = expression(slide, use_raw=False)
    shared = shared_genes(slide_names, reference_names)
    measured = set(slide_names)
    wanted = list(genes) if genes is not None else [g for g in reference_names if g not in measured]
    require_genes(wanted, reference_names, "The reference lacks", "Ask only for genes the reference has.")
    if not wanted:
        raise FmscopeError("Nothing to impute: the slide measures every reference gene.", "Name genes with --genes.")
    pca = PCA(n_components=min(n_comps, len(shared) - 1, reference.n_obs - 1), random_state=seed)
    reference_space = pca.fit_transform(reference_matrix[:, columns(reference_names, shared)])
    slide_space = pca.transform(slide_matrix[:, columns(slide_names, shared)])
    _, neighbours = NearestNeighbors(n_neighbors=min(k, reference.n_obs)).fit(reference_space).kneighbors(slide_space)
    values = reference_matrix[:, columns(reference_names, wanted)][neighbours].mean(axis=1)
    return pd.DataFrame(values, index=slide.obs_names, columns=wanted)


def spatial_neighbours(coords: np.ndarray, k: int, sections: np.ndarray | None = None) -> np.ndarray:
    """(cells, k) indices of each cell's ``k`` nearest other cells (the cell itself excluded), within its own
    section when ``sections`` ((cells,) labels) is given."""
    coords = np.asarray(coords, dtype=float)[:, :2]
    out = np.empty((len(coords), k), dtype=np.int64)
    for name, cells in within_sections(sections, len(coords)):
        if len(cells) <= k:
            where = f" in section {name}" if name else ""
            raise FmscopeError(
                f"{len(cells)} cells{where} cannot have {k} neighbours each.", "Use more cells or a smaller k."
            )
        _, nearest = cKDTree(coords[cells]).query(coords[cells], k=k + 1)
        own = nearest == np.arange(len(cells))[:, None]
        own[~own.any(axis=1), -1] = True  # a cell sharing its position with k others: drop the farthest instead
        out[cells] = cells[nearest[~own].reshape(len(cells), k)]
    return out


def impute_from_cls(
    model, cls_outputs: np.ndarray, neighbours: np.ndarray, gene_ids: np.ndarray, batch_size: int = 32
) -> np.ndarray:
    """scGPT-spatial's imputation head on the mean <cls> output (not normalised) of each cell's
    ``neighbours`` (cells, k); ``gene_ids``: (G,) for every cell or (cells, G). -> (cells, G) values."""
    import torch

    device = next(model.parameters()).device
    ids = torch.as_tensor(np.broadcast_to(gene_ids, (len(cls_outputs), np.shape(gene_ids)[-1])), device=device)
    out = np.zeros(ids.shape, dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(cls_outputs), batch_size):
            mean = torch.as_tensor(cls_outputs[neighbours[start : start + batch_size]].mean(axis=1), device=device)
            values = model.impute_genes(mean, ids[start : start + len(mean)])
            out[start : start + len(mean)] = values.float().cpu().numpy()
    return out


def impute_scgpt_spatial(
    adata: ad.AnnData,
    model,
    vocab: dict[str, int],
    genes: Sequence[str],
    k: int | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """(cells x genes) values predicted by scGPT-spatial's imputation head (the model's binned value
    scale, 0-50) from the mean <cls> output of each cell's ``k`` nearest spatial neighbours."""
    from fmscope.omics.embed import scgpt_embedding
    from fmscope.omics.vocab import match_genes

    if not model.config.imputation_head:
        raise FmscopeError(
            "This checkpoint has no neighbour imputation head (impute_mvc_decoder).",
            "Use an scGPT-spatial checkpoint, or --reference for kNN imputation.",
        )
    if not genes:
        raise FmscopeError("No genes to impute were named.", "Name them with --genes.")
    match = match_genes(list(genes), vocab, warn=False)
    unknown = [g for g, i in zip(genes, match.ids) if i < 0]
    if unknown:
        raise FmscopeError(f"The model's vocabulary lacks {', '.join(unknown[:5])}.", "Ask for genes the model knows.")
    neighbours = spatial_neighbours(
        adata.obsm["spatial"], k or model.config.imputation_k, require_sections(adata, "the slide")
    )
    cls_outputs = scgpt_embedding(adata, model, vocab, batch_size=batch_size, progress=progress, normalise=False)
    values = impute_from_cls(model, cls_outputs, neighbours, match.ids, batch_size)
    return pd.DataFrame(values, index=adata.obs_names, columns=list(genes))
