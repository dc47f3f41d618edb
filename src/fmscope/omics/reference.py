"""A labelled single-cell reference in the shape the imputation and deconvolution need."""

from __future__ import annotations

import os
from pathlib import Path

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


def read_reference(path: str | os.PathLike) -> ad.AnnData:
    """A single-cell reference .h5ad, with a clear error when it is missing or unreadable."""
    if not Path(path).is_file():
        raise FmscopeError(f"No such reference file: {path}", "Give a labelled single-cell .h5ad.")
    try:
        return ad.read_h5ad(path)
    except Exception as error:
        raise FmscopeError(f"Cannot read the reference {path} ({type(error).__name__}).",
                           "Give a single-cell .h5ad.") from None


def gene_expression(adata: ad.AnnData, gene: str) -> np.ndarray:
    """One gene's log1p(counts per 10,000) per cell, normalised by each cell's total over all genes."""
    if gene not in adata.var_names:
        raise FmscopeError(f"The slide has no gene '{gene}'.", "Pick a gene the slide measured.")
    totals = np.asarray(adata.X.sum(axis=1), dtype=np.float64).ravel()
    column = adata[:, gene].X
    counts = np.asarray(column.toarray() if sp.issparse(column) else column, dtype=np.float64).ravel()
    return np.log1p(counts / np.clip(totals, 1e-12, None) * 1e4)
