"""Cell-type proportions per spot by regression in an encoder's embedding space (pseudo-spots).

Pseudo-spots are made from the labelled reference (5-15 cells each: half drawn at random, half
from 1-4 cell types with Dirichlet weights, at most as many as the reference has: two or three types
work), so their proportions are known. Pseudo-spots and
real spots are embedded by the same encoder (the baseline PCA fitted on the pseudo-spots, or an
scGPT checkpoint), and each real spot takes the distance-weighted mean proportions of its
nearest pseudo-spots. Design after pseudo-spot training in Scaden / CellDART, with a
foundation-model embedding as the feature space; compared with NNLS on markers in
tests/test_omics_reference.py.
"""

from __future__ import annotations

import os

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from fmscope.errors import FmscopeError
from fmscope.omics.gene_match import columns, shared_genes
from fmscope.omics.reference import expression, labelled

MIN_SHARED_GENES = 10


def pseudo_spots(
    reference: ad.AnnData, label_key: str, n_spots: int = 3000, seed: int = 0
) -> tuple[ad.AnnData, np.ndarray, list[str]]:
    """(pseudo-spot profiles (counts per 10,000 summed over cells), true proportions, cell types)."""
    reference, labels, _ = labelled(reference, label_key)
    matrix, names = expression(reference)
    profiles = np.expm1(matrix)
    types = sorted(set(labels))
    members = [np.nonzero(labels == t)[0] for t in types]
    rng = np.random.default_rng(seed)
    spots, truth = [], []
    for i in range(n_spots):
        size = int(rng.integers(5, 16))
        if i % 2 == 0:
            chosen = rng.choice(len(labels), size=size)
        else:
            present = rng.choice(len(types), size=int(rng.integers(1, min(5, len(types) + 1))), replace=False)
            weights = rng.dirichlet(np.ones(len(present)))
            picks = rng.choice(present, size=size, p=weights)
            chosen = np.array([rng.choice(members[t]) for t in picks])
        spots.append(profiles[chosen].sum(axis=0))
        truth.append([np.mean(labels[chosen] == t) for t in types])
    pseudo = ad.AnnData(X=np.asarray(spots, dtype=np.float32))
    pseudo.var_names = names
    return pseudo, np.asarray(truth), types


def deconvolve_embedding(
    spots: ad.AnnData,
    reference: ad.AnnData,
    label_key: str,
    scgpt_folder: str | os.PathLike | None = None,
    n_pseudo: int = 3000,
    k: int = 25,
    seed: int = 0,
) -> pd.DataFrame:
    """(spots x types) proportions summing to 1, from the nearest pseudo-spots in embedding space."""
    pseudo, truth, types = pseudo_spots(reference, label_key, n_pseudo, seed)
    spot_matrix, spot_names = expression(spots, use_raw=False)
    genes = shared_genes(list(pseudo.var_names), spot_names, "the reference", "the slide")
    if len(genes) < MIN_SHARED_GENES:
        raise FmscopeError(
            f"The slide and the reference share only {len(genes)} gene(s) "
            f"({', '.join(genes[:5])}); an embedding needs at least {MIN_SHARED_GENES}.",
            "Use a reference of the same species and gene naming as the slide.",
        )
    pseudo = pseudo[:, columns(list(pseudo.var_names), genes)].copy()
    observed = ad.AnnData(X=np.expm1(spot_matrix[:, columns(spot_names, genes)]).astype(np.float32))
    observed.var_names = pseudo.var_names
    if scgpt_folder is None:
        from fmscope.omics.embed import BaselineEncoder

        encoder = BaselineEncoder.fit(pseudo, seed=seed)
        pseudo_space, spot_space = encoder.transform(pseudo), encoder.transform(observed)
    else:
        from fmscope.omics.embed import scgpt_embedding
        from fmscope.omics.models.scgpt import load_scgpt

        model, vocab, _ = load_scgpt(scgpt_folder)
        pseudo_space, spot_space = scgpt_embedding(pseudo, model, vocab), scgpt_embedding(observed, model, vocab)
    search = NearestNeighbors(n_neighbors=min(k, len(pseudo_space))).fit(pseudo_space)
    distances, nearest = search.kneighbors(spot_space)
    weights = 1.0 / np.clip(distances, 1e-9, None)
    proportions = (truth[nearest] * weights[..., None]).sum(axis=1) / weights.sum(axis=1, keepdims=True)
    return pd.DataFrame(proportions, index=spots.obs_names, columns=types)
