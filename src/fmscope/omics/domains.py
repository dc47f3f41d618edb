"""Spatial domains: neighbour graph from coordinates, embedding smoothing, Leiden clustering.

Each cell's embedding is mixed with the mean of its spatial neighbours (squidpy graph),
then clustered with Leiden on a kNN graph of the smoothed embeddings (scanpy) at several
resolutions. Labels go to ``obs["fmscope_domain_r<res>"]`` and the chosen one to
``obs["fmscope_domain"]``; nothing else in the AnnData is changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import scipy.sparse as sp

from fmscope.errors import FmscopeError

DOMAIN_KEY = "fmscope_domain"
SCANPY_EXACT_LIMIT = 4096  # scanpy computes exact neighbours itself below this many cells


def smooth_embedding(coords: np.ndarray, embedding: np.ndarray, n_neighbors: int = 6, weight: float = 0.5,
                     hops: int = 2) -> np.ndarray:
    """(1 - weight) * own + weight * neighbour mean, repeated ``hops`` times, on a spatial kNN graph."""
    import squidpy as sq

    graph_holder = ad.AnnData(X=np.zeros((len(coords), 1), dtype=np.float32), obsm={"spatial": coords})
    sq.gr.spatial_neighbors_knn(graph_holder, n_neighs=n_neighbors)
    adjacency = sp.csr_matrix(graph_holder.obsp["spatial_connectivities"], dtype=np.float32)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    walk = sp.diags(1.0 / np.clip(degree, 1, None)) @ adjacency
    smoothed = embedding.astype(np.float32)
    for _ in range(hops):
        smoothed = (1 - weight) * smoothed + weight * (walk @ smoothed)
    return smoothed


def _exact_knn(n_neighbors: int):
    """sklearn's exact kNN graph, returned as a scipy ``csr_matrix``.

    Above 4,096 cells scanpy 1.11 builds the graph with pynndescent and reads it with
    ``csr_array.getnnz``, which scipy 1.17 removed (the call fails); this transformer keeps
    scanpy on a path that works, with exact neighbours.
    """
    from sklearn.neighbors import KNeighborsTransformer

    class ExactKNN(KNeighborsTransformer):
        def fit_transform(self, X, y=None):
            return sp.csr_matrix(super().fit_transform(X))

        def transform(self, X):
            return sp.csr_matrix(super().transform(X))

    return ExactKNN(n_neighbors=n_neighbors, mode="distance")


def cluster(embedding: np.ndarray, resolutions: Sequence[float], n_neighbors: int = 15,
            seed: int = 0) -> dict[float, np.ndarray]:
    """Leiden labels of ``embedding`` at each resolution."""
    import scanpy as sc

    work = ad.AnnData(X=np.zeros((len(embedding), 1), dtype=np.float32), obsm={"X_use": embedding})
    n_neighbors = min(n_neighbors, len(embedding) - 1)
    transformer = _exact_knn(n_neighbors) if len(embedding) >= SCANPY_EXACT_LIMIT else None
    sc.pp.neighbors(work, use_rep="X_use", n_neighbors=n_neighbors, random_state=seed, transformer=transformer)
    labels = {}
    for resolution in resolutions:
        sc.tl.leiden(work, resolution=resolution, key_added="leiden", random_state=seed, flavor="igraph",
                     n_iterations=2, directed=False)
        labels[resolution] = work.obs["leiden"].astype(int).to_numpy()
    return labels


def spatial_domains(adata: ad.AnnData, embedding: np.ndarray, resolutions: Sequence[float] = (0.2, 0.4, 0.6, 1.0),
                    n_domains: int | None = None, smoothing: float = 0.5, seed: int = 0) -> float:
    """Write domain labels into ``adata.obs``; returns the resolution chosen for ``obs["fmscope_domain"]``.

    With ``n_domains`` the resolution whose domain count is closest to it is chosen (ties: the lower
    resolution); otherwise the first resolution.
    """
    if len(embedding) != adata.n_obs:
        raise FmscopeError(f"{len(embedding)} embeddings for {adata.n_obs} cells.", "Embed the same cells.")
    if adata.n_obs < 10:
        raise FmscopeError(f"Only {adata.n_obs} cells; spatial domains need at least 10.", "Use a larger slide.")
    coords = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
    smoothed = smooth_embedding(coords, embedding, weight=smoothing)
    labels = cluster(smoothed, resolutions, seed=seed)
    if n_domains is not None:
        chosen = min(resolutions, key=lambda r: (abs(len(np.unique(labels[r])) - n_domains), r))
    else:
        chosen = resolutions[0]
    for resolution, values in labels.items():
        adata.obs[f"{DOMAIN_KEY}_r{resolution:g}"] = values.astype(str)
    adata.obs[DOMAIN_KEY] = labels[chosen].astype(str)
    adata.obsm["X_fmscope_smoothed"] = smoothed
    return chosen
