"""A labelled single-cell reference in the shape the imputation and deconvolution need."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from fmscope.errors import FmscopeError


def expression(adata: ad.AnnData, use_raw: bool = True) -> tuple[np.ndarray, list[str]]:
    """Dense (cells, genes) expression on a comparable scale: log1p of counts per 10,000.

    A ``.raw`` that already holds log-normalised values (as in pbmc68k_reduced) is used as is.
    """
    source = adata.raw if use_raw and adata.raw is not None else adata
    matrix = source.X.toarray() if sp.issparse(source.X) else np.asarray(source.X, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    names = list(source.var_names)
    looks_logged = matrix.max() < 20 and not np.allclose(matrix, np.round(matrix))
    if not looks_logged:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.log1p(matrix / np.clip(totals, 1e-12, None) * 1e4)
    return matrix, names


def shared_genes(a: list[str], b: list[str]) -> list[str]:
    """Genes present in both lists (case-insensitive), in the order of ``a``; raises when none."""
    lower_b = {g.lower() for g in b}
    shared = [g for g in a if g.lower() in lower_b]
    if not shared:
        raise FmscopeError("The slide and the reference share no gene.",
                           "Use a reference of the same species, with gene symbols as names.")
    return shared


def columns(names: list[str], wanted: list[str]) -> np.ndarray:
    """Column indices of ``wanted`` genes in ``names`` (case-insensitive)."""
    index = {g.lower(): i for i, g in enumerate(names)}
    return np.array([index[g.lower()] for g in wanted])
