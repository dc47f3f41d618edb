"""Spatial domains at scale: each stage gives what the libraries it replaced in fmscope gave.

squidpy's spatial graph, scanpy's neighbours and scanpy's Leiden are run here as references on
the same synthetic ring slide (fmscope.omics.synthetic).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from fmscope.metrics import ari
from fmscope.omics.domains import (
    leiden_labels,
    nearest_neighbours,
    neighbour_graph,
    smooth_embedding,
    spatial_mean_operator,
)
from fmscope.omics.embed import baseline_embedding
from fmscope.omics.synthetic import large_synthetic_slide


@pytest.fixture(scope="module")
def ring_slide():
    """3,000 cells: below scanpy's 4,096-cell limit, where scanpy computes exact neighbours itself."""
    slide = large_synthetic_slide(3_000)
    coords = np.asarray(slide.obsm["spatial"], dtype=float)[:, :2]
    return slide, coords, baseline_embedding(slide)


def test_spatial_mean_is_squidpys_knn_graph_row_normalised(ring_slide):
    import squidpy as sq

    slide, coords, embedding = ring_slide
    holder = ad.AnnData(X=np.zeros((slide.n_obs, 1), dtype=np.float32), obsm={"spatial": coords})
    sq.gr.spatial_neighbors_knn(holder, n_neighs=6)
    adjacency = sp.csr_matrix(holder.obsp["spatial_connectivities"], dtype=np.float32)
    expected = sp.diags(1.0 / np.asarray(adjacency.sum(axis=1)).ravel()) @ adjacency
    mean = spatial_mean_operator(coords, 6)
    assert mean.dtype == np.float32 and abs(mean - expected).max() < 1e-6
    smoothed = smooth_embedding(coords, embedding)
    reference = embedding.astype(np.float32)
    for _ in range(2):
        reference = 0.5 * reference + 0.5 * (expected @ reference)
    assert smoothed.dtype == np.float32 and np.abs(smoothed - reference).max() < 1e-5
    assert np.array_equal(smooth_embedding(coords, embedding, weight=0.0), embedding.astype(np.float32))


def test_neighbour_graph_is_scanpys_connectivities(ring_slide):
    import scanpy as sc

    _, coords, embedding = ring_slide
    smoothed = smooth_embedding(coords, embedding)
    work = ad.AnnData(X=np.zeros((len(smoothed), 1), dtype=np.float32), obsm={"X_use": smoothed})
    sc.pp.neighbors(work, use_rep="X_use", n_neighbors=15, random_state=0)
    graph = neighbour_graph(smoothed)
    assert graph.dtype == np.float32 and graph.diagonal().sum() == 0 and abs(graph - graph.T).max() == 0
    assert graph.nnz == work.obsp["connectivities"].nnz
    assert abs(graph - work.obsp["connectivities"]).max() < 1e-5


def test_leiden_agrees_with_scanpy_as_its_own_seeds_do(ring_slide):
    """One edge per pair and Python's seeded RNG change Leiden's random path, not its domains: fmscope's
    labels are as close to scanpy's (seed 0) as scanpy's own seed 1 is."""
    import scanpy as sc

    slide, coords, embedding = ring_slide
    graph = neighbour_graph(smooth_embedding(coords, embedding))
    work = ad.AnnData(X=np.zeros((slide.n_obs, 1), dtype=np.float32))
    scanpy_labels = []
    for seed in (0, 1):
        sc.tl.leiden(
            work, resolution=0.2, adjacency=graph, random_state=seed, flavor="igraph", n_iterations=2, directed=False
        )
        scanpy_labels.append(work.obs["leiden"].astype(int).to_numpy())
    both = leiden_labels(graph, (0.2, 1.0))
    alone = leiden_labels(graph, (0.2,))
    assert np.array_equal(both[0.2], alone[0.2])
    assert ari(scanpy_labels[0], both[0.2]) >= ari(scanpy_labels[0], scanpy_labels[1]) - 0.01
    assert ari(slide.obs["true_domain"], both[0.2]) >= 0.9
    assert len(np.unique(both[1.0])) > len(np.unique(both[0.2]))


@pytest.mark.slow
def test_nn_descent_neighbours_give_the_exact_graphs_domains():
    """The path above EXACT_KNN_LIMIT cells (NN-descent), forced on a smaller slide: nearly the exact
    neighbours, and the same domains."""
    slide = large_synthetic_slide(20_000)
    coords = np.asarray(slide.obsm["spatial"], dtype=float)[:, :2]
    smoothed = smooth_embedding(coords, baseline_embedding(slide))
    exact, _ = nearest_neighbours(smoothed, approximate=False)
    approximate, distances = nearest_neighbours(smoothed, approximate=True)
    assert approximate.shape == exact.shape == (20_000, 15) and np.all(np.diff(distances, axis=1) >= 0)
    assert np.array_equal(approximate[:, 0], np.arange(20_000))
    recall = np.mean([len(np.intersect1d(a, b)) for a, b in zip(approximate, exact)]) / 15
    labels_exact = leiden_labels(neighbour_graph(smoothed, approximate=False), (0.2,))[0.2]
    labels_approximate = leiden_labels(neighbour_graph(smoothed, approximate=True), (0.2,))[0.2]
    print(f"\nNN-descent recall {recall:.3f}, ARI vs exact-kNN domains {ari(labels_exact, labels_approximate):.4f}")
    assert recall >= 0.95
    assert ari(labels_exact, labels_approximate) >= 0.99
