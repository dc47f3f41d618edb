"""Spatial domains: neighbour graph from coordinates, embedding smoothing, Leiden clustering.

Each cell's embedding is mixed with the mean of its spatial neighbours, then clustered with
Leiden (igraph) at several resolutions on one UMAP-weighted kNN graph of the smoothed embeddings
(the graph scanpy's ``pp.neighbors`` builds, made once for all resolutions). Labels go to
``obs["fmscope_domain_r<res>"]`` and the chosen one to ``obs["fmscope_domain"]``; nothing else in
the AnnData is changed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import anndata as ad
import numpy as np
import scipy.sparse as sp

from fmscope.errors import FmscopeError
from fmscope.omics.sections import require_sections, within_sections

REFINE_STEPS = 12  # Leiden runs at most, bisecting the resolution towards exactly n_domains

DOMAIN_KEY = "fmscope_domain"
# Exact (brute-force) neighbours cost ~cells^2; NN-descent costs ~cells plus a fixed ~30 s of numba
# compilation per process. On this project's 2-core machine they break even near 130,000 cells.
EXACT_KNN_LIMIT = 150_000


def spatial_mean_operator(
    coords: np.ndarray, n_neighbors: int = 6, sections: np.ndarray | None = None
) -> sp.csr_matrix:
    """(cells, cells) float32 matrix averaging each cell's ``n_neighbors`` nearest other cells.

    ``coords`` is (cells, 2) in any unit; the graph is the directed kNN graph squidpy's
    ``spatial_neighbors_knn`` builds (self excluded), each row normalised to sum 1. With ``sections``
    ((cells,) labels) neighbours are taken within each cell's own section only (squidpy's ``library_key``);
    a cell alone in its section keeps its own value.
    """
    from sklearn.neighbors import NearestNeighbors

    n_cells = len(coords)
    rows, cols, weights = [], [], []
    for _, cells in within_sections(sections, n_cells):
        k = min(n_neighbors, len(cells) - 1)
        if k < 1:
            rows.append(cells), cols.append(cells), weights.append(np.ones(len(cells), dtype=np.float32))
            continue
        neighbours = (
            NearestNeighbors(n_neighbors=k, metric="euclidean").fit(coords[cells]).kneighbors(return_distance=False)
        )
        rows.append(np.repeat(cells, k)), cols.append(cells[neighbours.ravel()])
        weights.append(np.full(neighbours.size, 1.0 / k, dtype=np.float32))
    return sp.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n_cells, n_cells)
    )


def smooth_embedding(
    coords: np.ndarray,
    embedding: np.ndarray,
    n_neighbors: int = 6,
    weight: float = 0.5,
    hops: int = 2,
    sections: np.ndarray | None = None,
) -> np.ndarray:
    """(1 - weight) * own + weight * neighbour mean, repeated ``hops`` times, on a spatial kNN graph.

    ``coords`` (cells, 2), ``embedding`` (cells, dims), ``sections`` (cells,) labels or None (neighbours
    within a section only); returns float32 (cells, dims).
    """
    smoothed = np.array(embedding, dtype=np.float32)
    if weight == 0 or hops == 0:
        return smoothed
    mean = spatial_mean_operator(coords, n_neighbors, sections)
    for _ in range(hops):
        neighbour_mean = mean @ smoothed
        smoothed *= 1 - weight
        neighbour_mean *= weight
        smoothed += neighbour_mean
    return smoothed


def nearest_neighbours(
    embedding: np.ndarray, n_neighbors: int = 15, seed: int = 0, approximate: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances), each (cells, n_neighbors), nearest first; each cell counts as its own first neighbour.

    Exact (sklearn brute force) below ``EXACT_KNN_LIMIT`` cells, NN-descent (pynndescent, the
    approximate search scanpy uses at this size) above; ``approximate`` forces one or the other.
    """
    embedding = np.ascontiguousarray(embedding, dtype=np.float32)
    if approximate is None:
        approximate = len(embedding) >= EXACT_KNN_LIMIT
    if approximate:
        from pynndescent import NNDescent

        return NNDescent(embedding, n_neighbors=n_neighbors, metric="euclidean", random_state=seed).neighbor_graph
    from sklearn.neighbors import NearestNeighbors

    distances, indices = (
        NearestNeighbors(n_neighbors=n_neighbors, metric="euclidean").fit(embedding).kneighbors(embedding)
    )
    # sklearn's expanded formula leaves ~1e-7 of rounding on a cell's distance to itself; UMAP's weights
    # would take that as the nearest neighbour's distance (scanpy zeroes it too on its small-data path)
    distances[indices == np.arange(len(indices))[:, None]] = 0
    return indices, distances


def neighbour_graph(
    embedding: np.ndarray, n_neighbors: int = 15, seed: int = 0, approximate: bool | None = None
) -> sp.csr_matrix:
    """Symmetric (cells, cells) UMAP connectivities (``umap.fuzzy_simplicial_set``) of the kNN graph.

    The same weights scanpy's ``pp.neighbors(method="umap")`` writes to ``obsp["connectivities"]``;
    ``n_neighbors`` counts the cell itself, as in scanpy.
    """
    from umap.umap_ import fuzzy_simplicial_set

    n_neighbors = min(n_neighbors, len(embedding) - 1)
    indices, distances = nearest_neighbours(embedding, n_neighbors, seed, approximate)
    graph, _, _ = fuzzy_simplicial_set(
        sp.coo_matrix((len(embedding), 1)), n_neighbors, None, None, knn_indices=indices, knn_dists=distances
    )
    return sp.csr_matrix(graph, dtype=np.float32)


def _edge_pairs(sources: np.ndarray, targets: np.ndarray, chunk: int = 1 << 18) -> Iterator[tuple[int, int]]:
    """(source, target) Python ints for igraph, a chunk at a time (a list of all pairs would cost ~100 B each)."""
    for start in range(0, len(sources), chunk):
        yield from zip(sources[start : start + chunk].tolist(), targets[start : start + chunk].tolist())


def leiden_labels(graph: sp.spmatrix, resolutions: Sequence[float], seed: int = 0) -> dict[float, np.ndarray]:
    """igraph Leiden (modularity, 2 iterations) of a symmetric weighted graph at each resolution.

    The igraph graph is built once (one edge per cell pair) and reused; each resolution starts
    from the same seeded random state, so its labels do not depend on the other resolutions.
    Returns {resolution: (cells,) int labels}.
    """
    import igraph as ig

    upper = sp.triu(graph, k=1, format="coo")
    network = ig.Graph(n=graph.shape[0], edges=_edge_pairs(upper.row, upper.col), directed=False)
    network.es["weight"] = upper.data.astype(np.float64)
    del upper
    labels = {}
    try:
        for resolution in resolutions:
            ig.set_random_number_generator(random.Random(seed))
            partition = network.community_leiden(
                objective_function="modularity", weights="weight", resolution=resolution, n_iterations=2
            )
            labels[resolution] = np.asarray(partition.membership)
    finally:
        ig.set_random_number_generator(random)
    return labels


def exact_resolution(graph, n_domains: int, tried: dict[float, int], seed: int = 0) -> tuple[float, np.ndarray] | None:
    """(resolution, labels) giving exactly ``n_domains`` Leiden domains on ``graph`` (the cells' kNN graph,
    :func:`neighbour_graph`, the one the ``tried`` resolutions were clustered on), found by bisecting between the
    ``tried`` resolutions ({resolution: domain count}) that bracket it; None when ``REFINE_STEPS`` runs do not find
    it (domain counts are not strictly monotone in the resolution)."""
    below = max((r for r, n in tried.items() if n < n_domains), default=0.0)
    above = min((r for r, n in tried.items() if n > n_domains and r > below), default=None)
    for _ in range(REFINE_STEPS):
        resolution = round(below * 2 if above is None and below else (below + (above or 1.0)) / 2, 4)
        labels = leiden_labels(graph, [resolution], seed)[resolution]
        count = len(np.unique(labels))
        if count == n_domains:
            return resolution, labels
        below, above = (resolution, above) if count < n_domains else (below, resolution)
    return None


def chosen_domains(
    smoothed: np.ndarray, resolutions: Sequence[float], n_domains: int | None, seed: int = 0
) -> tuple[dict[float, np.ndarray], float]:
    """Leiden labels of ``smoothed`` (cells, dims) at each of ``resolutions`` on one kNN graph, and the resolution
    chosen: the first, or with ``n_domains`` the one whose domain count is nearest (ties: the lower), refined
    towards exactly ``n_domains`` on the same graph when none gives it (:func:`exact_resolution`; the refined
    labels are added under their resolution)."""
    graph = neighbour_graph(smoothed, seed=seed)
    labels = leiden_labels(graph, resolutions, seed)
    if n_domains is None:
        return labels, resolutions[0]
    tried = {r: len(np.unique(labels[r])) for r in resolutions}
    chosen = min(resolutions, key=lambda r: (abs(tried[r] - n_domains), r))
    found = exact_resolution(graph, n_domains, tried, seed) if tried[chosen] != n_domains else None
    if found is not None:
        chosen, labels[found[0]] = found
    return labels, chosen


def count_note(n_domains: int | None, found: int, resolution: float) -> list[str]:
    """The note for a user who asked for ``n_domains`` domains when ``found`` were found (at ``resolution``), else
    none."""
    if n_domains is None or found == n_domains:
        return []
    return [
        f"asked for {n_domains} domains: Leiden gives {found} at the nearest resolution ({resolution:g}) and no "
        "resolution between those tried gives exactly that many; try another --n-domains or --resolution"
    ]


def spatial_domains(
    adata: ad.AnnData,
    embedding: np.ndarray,
    resolutions: Sequence[float] = (0.2, 0.4, 0.6, 1.0),
    n_domains: int | None = None,
    smoothing: float = 0.5,
    seed: int = 0,
    sections: np.ndarray | None = None,
) -> float:
    """Write domain labels into ``adata.obs``; returns the resolution chosen for ``obs["fmscope_domain"]``.

    With ``n_domains`` the resolution whose domain count is closest to it is chosen (ties: the lower
    resolution) and, when its count is not ``n_domains``, the resolution is refined towards exactly that many
    (:func:`exact_resolution`; the refined labels get a column of their own); the count can still differ where
    Leiden gives no such partition (callers say so). Without it, the first resolution. Several sections in one
    table (``obs["library_id"]``, ``sample``, a SpatialData region column ...: :mod:`fmscope.omics.sections`) are
    smoothed each over its own neighbours and clustered together (domains shared across sections); overlapping
    sections that cannot be told apart are refused. ``sections`` ((cells,) labels) gives the sections instead
    (several slides in one joint table: :mod:`fmscope.omics.multislide`).
    """
    if len(embedding) != adata.n_obs:
        raise FmscopeError(f"{len(embedding)} embeddings for {adata.n_obs} cells.", "Embed the same cells.")
    if adata.n_obs < 10:
        raise FmscopeError(f"Only {adata.n_obs} cells; spatial domains need at least 10.", "Use a larger slide.")
    coords = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
    if sections is None:
        sections = require_sections(adata, "the slide")
    smoothed = smooth_embedding(coords, embedding, weight=smoothing, sections=sections)
    labels, chosen = chosen_domains(smoothed, resolutions, n_domains, seed)
    for resolution, values in labels.items():
        adata.obs[f"{DOMAIN_KEY}_r{resolution:g}"] = values.astype(str)
    adata.obs[DOMAIN_KEY] = labels[chosen].astype(str)
    adata.obsm["X_fmscope_smoothed"] = smoothed
    return chosen
