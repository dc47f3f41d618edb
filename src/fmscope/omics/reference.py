"""A labelled single-cell reference in the shape the imputation and deconvolution need.

:func:`read_reference` is the one reader of references (CLI, napari): counts found as for slides, cells
without a label left out (said in its notices).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from fmscope.errors import FmscopeError
from fmscope.omics.expression import counts_view
from fmscope.omics.io import is_anndata_zarr, read_anndata
from fmscope.omics.missing_labels import missing_mask


def expression(adata: ad.AnnData, use_raw: bool = True) -> tuple[np.ndarray, list[str]]:
    """Dense (cells, genes) expression on a comparable scale: log1p of counts per 10,000.

    A ``.raw`` that already holds log-normalised values (as in pbmc68k_reduced) is used as is.
    """
    source = adata.raw if use_raw and adata.raw is not None else adata
    matrix = source.X.toarray() if sp.issparse(source.X) else np.asarray(source.X, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    names = list(source.var_names)
    if matrix.size and matrix.min() < 0:
        raise FmscopeError(
            f"The expression {'in .raw ' if source is not adata else ''}holds scaled values (negative "
            "numbers), not counts or log-normalised values.",
            "Read the file with fmscope's readers (they find counts in layers['counts'] or .raw), or give the counts.",
        )
    looks_logged = matrix.max() < 20 and not np.allclose(matrix, np.round(matrix))
    if not looks_logged:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.log1p(matrix / np.clip(totals, 1e-12, None) * 1e4)
    return matrix, names


@dataclass
class Reference:
    """A reference as fmscope computes on it: counts-like X (one column per gene, no ``.raw``) and what was
    done to the file to get it (where the counts were, cells left out for want of a label)."""

    adata: ad.AnnData
    notices: list[str] = field(default_factory=list)


def labelled(reference: ad.AnnData, label_key: str) -> tuple[ad.AnnData, np.ndarray, str | None]:
    """(the cells with a cell type, their labels as str, a notice when some were left out).

    Missing labels (NaN, empty, 'unknown', 'unassigned', ...) are not a cell type; fewer than two types
    left is refused, naming the column.
    """
    if label_key not in reference.obs:
        raise FmscopeError(
            f"The reference has no obs['{label_key}'].",
            f"Give --label-key, one of: {', '.join(map(str, reference.obs.columns[:10]))}.",
        )
    values = reference.obs[label_key]
    text = values.astype(str).str.strip()
    missing = missing_mask(values)
    types = sorted(set(text[~missing]))
    if len(types) < 2:
        raise FmscopeError(
            f"The reference's obs['{label_key}'] has {len(types)} cell type(s) "
            f"({int(missing.sum())} of {reference.n_obs} cells without a label).",
            "Use a reference labelled with at least two cell types.",
        )
    if not missing.any():
        return reference, text.to_numpy(), None
    notice = (
        f"{int(missing.sum())} of {reference.n_obs} reference cells have no label in obs['{label_key}'] "
        "(NaN, empty or 'unknown'): left out."
    )
    return reference[~missing].copy(), text[~missing].to_numpy(), notice


def read_reference(path: str | os.PathLike, label_key: str | None = None, layer: str | None = None) -> Reference:
    """Read a single-cell reference .h5ad: its counts found wherever the file keeps them (X, a layer such as
    ``layers['counts']`` beside a scaled X, or ``.raw``; :func:`fmscope.omics.expression.counts_view`, the rule
    slides follow; ``layer`` names one) and, with ``label_key``, cells without a cell type left out. A file
    with only scaled values, or without cell types, is refused by name. An AnnData zarr (``adata.write_zarr``)
    is read as its .h5ad twin."""
    if not _is_reference(Path(path)):
        raise FmscopeError(f"No such reference file: {path}", "Give a labelled single-cell .h5ad.")
    try:
        adata = read_anndata(Path(path))
    except Exception as error:
        raise FmscopeError(
            f"Cannot read the reference {path} ({type(error).__name__}).", "Give a single-cell .h5ad."
        ) from None
    view = counts_view(adata, layer, f"the reference {Path(path).name}")
    adata = view.adata
    if adata.raw is not None:  # X holds the counts; a .raw beside them is not what fmscope computes on
        adata = ad.AnnData(X=adata.X, obs=adata.obs, var=adata.var)
    notices = list(view.notices)
    if label_key is not None:
        adata, _, notice = labelled(adata, label_key)
        notices += [notice] if notice else []
    return Reference(adata, notices)


def _is_reference(path: Path) -> bool:
    """Whether ``path`` is a file (an .h5ad) or an AnnData zarr folder."""
    return path.is_file() or (path.is_dir() and is_anndata_zarr(path))


def obs_columns(path: str | os.PathLike) -> list[str]:
    """The obs column names of a reference .h5ad (read without its matrices) or AnnData zarr, to choose the
    cell-type column."""
    if not _is_reference(Path(path)):
        raise FmscopeError(f"No such reference file: {path}", "Give a labelled single-cell .h5ad.")
    try:
        if Path(path).is_dir():  # an AnnData zarr: its obs alone (the matrices are not read)
            import zarr
            from anndata.io import read_elem

            return [str(name) for name in read_elem(zarr.open_group(str(path), mode="r")["obs"]).columns]
        backed = ad.read_h5ad(path, backed="r")
        try:
            return [str(name) for name in backed.obs.columns]
        finally:
            backed.file.close()
    except Exception as error:
        raise FmscopeError(
            f"Cannot read the reference {path} ({type(error).__name__}).", "Give a single-cell .h5ad."
        ) from None


def gene_expression(adata: ad.AnnData, gene: str) -> np.ndarray:
    """One gene's log1p(counts per 10,000) per cell, normalised by each cell's total over all genes."""
    if gene not in adata.var_names:
        raise FmscopeError(f"The slide has no gene '{gene}'.", "Pick a gene the slide measured.")
    totals = np.asarray(adata.X.sum(axis=1), dtype=np.float64).ravel()
    column = adata[:, gene].X
    counts = np.asarray(column.toarray() if sp.issparse(column) else column, dtype=np.float64).ravel()
    return np.log1p(counts / np.clip(totals, 1e-12, None) * 1e4)
