"""Figures of a joint embedding of several sections: biology kept (AvgBIO) and sections mixed.

The definitions follow the scIB benchmark (Luecken et al., Nature Methods 2022) as scGPT reports them
(AvgBIO = mean of NMI, ARI and label ASW), written here with scikit-learn:

- ``nmi`` / ``ari``: of the clusters (fmscope's domains) against the known labels;
- ``asw_label``: (silhouette of the labels in the embedding + 1) / 2;
- ``avg_bio``: mean of the three;
- ``batch_asw``: within each label (each domain when there are no labels), 1 - |silhouette of the
  sections|, averaged over cells then over labels: 1 = sections fully mixed;
- ``knn_mixing``: each cell's share of its 15 nearest neighbours from other sections, divided by the
  share the other sections have of the cells (capped at 1), averaged: 1 = mixed as if at random, 0 = each
  section apart.

Silhouettes and neighbours are computed on a seeded sample of at most ``MAX_CELLS`` cells
(silhouettes cost cells²).
"""

from __future__ import annotations

import numpy as np

from fmscope.metrics import ari, nmi

MAX_CELLS = 5_000
MIXING_NEIGHBOURS = 15
BIO = ("nmi", "ari", "asw_label", "avg_bio")
BATCH = ("batch_asw", "knn_mixing")


def _batch_asw(embedding: np.ndarray, sections: np.ndarray, groups: np.ndarray) -> float:
    from sklearn.metrics import silhouette_samples

    scores = []
    for group in np.unique(groups):
        rows = groups == group
        present = np.unique(sections[rows])
        if len(present) < 2 or rows.sum() <= len(present):
            continue
        scores.append(float(np.mean(1 - np.abs(silhouette_samples(embedding[rows], sections[rows])))))
    return float(np.mean(scores)) if scores else float("nan")


def _knn_mixing(embedding: np.ndarray, sections: np.ndarray) -> float:
    from sklearn.neighbors import NearestNeighbors

    k = min(MIXING_NEIGHBOURS, len(embedding) - 1)
    neighbours = NearestNeighbors(n_neighbors=k).fit(embedding).kneighbors(return_distance=False)
    other = (sections[neighbours] != sections[:, None]).mean(axis=1)
    names, counts = np.unique(sections, return_counts=True)
    share = dict(zip(names, 1 - counts / len(sections)))
    expected = np.array([share[s] for s in sections])
    return float(np.mean(np.minimum(1.0, other / np.maximum(expected, 1e-12))))


def integration_figures(
    embedding: np.ndarray,
    sections: np.ndarray,
    clusters: np.ndarray,
    labels: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """{figure: value} for one embedding (cells, dims) of cells in ``sections`` (cells,) with ``clusters``
    (cells,) (e.g. its domains); the biology figures (``BIO``) only with known ``labels`` (cells,)."""
    from sklearn.metrics import silhouette_score

    embedding = np.asarray(embedding, dtype=np.float32)
    sections, clusters = np.asarray(sections).astype(str), np.asarray(clusters).astype(str)
    sample = np.arange(len(embedding))
    if len(sample) > MAX_CELLS:
        sample = np.sort(np.random.default_rng(seed).choice(len(sample), MAX_CELLS, replace=False))
    figures: dict[str, float] = {}
    if labels is not None:
        labels = np.asarray(labels).astype(str)
        figures["nmi"] = nmi(labels, clusters)
        figures["ari"] = ari(labels, clusters)
        distinct = len(np.unique(labels[sample]))
        silhouette = silhouette_score(embedding[sample], labels[sample]) if 1 < distinct < len(sample) else 0.0
        figures["asw_label"] = (float(silhouette) + 1) / 2
        figures["avg_bio"] = (figures["nmi"] + figures["ari"] + figures["asw_label"]) / 3
    groups = (labels if labels is not None else clusters)[sample]
    figures["batch_asw"] = _batch_asw(embedding[sample], sections[sample], groups)
    figures["knn_mixing"] = _knn_mixing(embedding[sample], sections[sample])
    return figures


def figures_table(rows: dict[str, dict[str, float]]) -> str:
    """The figures of several embeddings side by side, one line per embedding (for printing)."""
    columns = [c for c in (*BIO, *BATCH) if any(c in figures for figures in rows.values())]
    width = max(len(name) for name in rows)
    lines = [f"{'embedding':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
    for name, figures in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{figures.get(c, float('nan')):>10.3f}" for c in columns))
    return "\n".join(lines)
