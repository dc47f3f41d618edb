"""What an expression matrix holds, where a file keeps its counts, and the matrix fmscope computes on.

Files arrive as users have them: raw counts (integers, often stored as floats), log-normalised
values (``sc.pp.normalize_total`` + ``sc.pp.log1p``), scaled values (``sc.pp.scale``: negative
numbers), counts kept aside in ``layers`` or ``.raw``, Ensembl ids with version suffixes as
gene names, and gene names that occur twice. :func:`counts_view` finds the counts (or takes
the ``layer`` the user names), never normalises twice (log-normalised values become ``b^x - 1`` in
their log base b: scanpy's ``uns['log1p']`` record, else told from the values by
:mod:`fmscope.omics.log_base`, refused when they do not tell it; i.e. counts per cell total, which
fmscope's normalisation leaves unchanged up to scale), and refuses what cannot be counts with a message
that says where counts may be.
Gene names become one name per gene: Ensembl version suffixes are dropped, symbols are used
when a symbol column exists, and columns sharing a name are summed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmscope.errors import FmscopeError
from fmscope.omics import log_base

COUNTS = "raw counts"
LOG_NORMALISED = "log-normalised values"
NORMALISED = "non-integer values"  # non-negative, not integers, not logged: normalised or corrected counts
SCALED = "scaled values"
LOG_MAX = 20.0  # log1p of normalised counts stays below this (log1p(1e4) = 9.2)
SAMPLE_ROWS = 5_000  # rows inspected for integers (negatives and the maximum use every value)
ENSEMBL = re.compile(r"^(ENS[A-Z]*[GT]\d{6,})\.\d+$")
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "feature_name", "gene_name", "gene_names", "symbol", "gene_short_name")
RAW = "raw"


def _values(matrix) -> np.ndarray:
    return np.asarray(matrix.data if sp.issparse(matrix) else matrix).ravel()


def values_kind(matrix, logged: bool = False) -> str:
    """What a (cells, genes) matrix holds: ``COUNTS``, ``LOG_NORMALISED``, ``NORMALISED`` or ``SCALED``.

    ``logged``: the file says log1p was applied (scanpy's ``uns['log1p']``).
    """
    values = _values(matrix)
    if values.size == 0:
        return COUNTS
    if float(values.min()) < 0:
        return SCALED
    rows = matrix[:SAMPLE_ROWS]
    sample = _values(rows)
    if np.array_equal(sample, np.round(sample)):
        return COUNTS
    return LOG_NORMALISED if logged or float(values.max()) < LOG_MAX else NORMALISED


@dataclass
class CountsView:
    """The AnnData fmscope computes on (counts-like ``X``, one column per gene) and what was done to get it."""

    adata: ad.AnnData
    source: str  # "X", "layers['counts']", "raw"
    kind: str
    notices: list[str] = field(default_factory=list)
    changed: bool = False  # True when ``adata`` is not the user's AnnData itself


def _matrix(adata: ad.AnnData, where: str):
    if where == "X":
        return adata.X
    if where == RAW:
        return adata.raw.X
    return adata.layers[where]


def _label(where: str) -> str:
    return {"X": "X", RAW: ".raw"}.get(where, f"layers['{where}']")


def _kind_of(adata: ad.AnnData, where: str) -> str:
    logged = where in ("X", RAW) and "log1p" in adata.uns
    return values_kind(_matrix(adata, where), logged=logged)


def _where_counts_may_be(adata: ad.AnnData) -> str:
    parts = [f"{_label(name)} holds {_kind_of(adata, name)}" for name in adata.layers]
    if adata.raw is not None:
        parts.append(f".raw holds {_kind_of(adata, RAW)}")
    found = "; ".join(parts) if parts else "this file has no layers and no .raw"
    return (
        f"({found}). Raw counts may be in the file saved before normalising or scaling, or in the slide's "
        "original output (Space Ranger filtered_feature_bc_matrix.h5, Xenium cell_feature_matrix.h5)"
    )


def _log_base(adata: ad.AnnData, where: str, name: str) -> tuple[float, str]:
    """(log base, notice) of the log-normalised matrix at ``where``: scanpy's ``uns['log1p']`` record for X and
    .raw (the matrices it describes), else told from the values (:mod:`fmscope.omics.log_base`: refused when
    they do not tell one base)."""
    label = _label(where)
    base = log_base.recorded_base(adata.uns.get("log1p")) if where in ("X", RAW) else None
    if base is not None:
        return base, f"{label} undone as {log_base.undo(base)} (the log base scanpy recorded in uns['log1p'])."
    base, how = log_base.detect_base(_matrix(adata, where), label, name)
    return base, f"{label} undone as {log_base.undo(base)}: no uns['log1p'] record of its log base, and {how}."


def _counts_like(matrix, kind: str, base: float | None):
    """Counts per cell total from log-normalised values (b^x - 1 in the file's log base b); else the matrix."""
    if kind != LOG_NORMALISED:
        return matrix
    factor = float(np.log(base))
    if sp.issparse(matrix):
        out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        out.data = np.expm1(out.data * factor).astype(np.float32)
        return out
    return np.expm1(np.asarray(matrix, dtype=np.float32) * factor)


def _choose(adata: ad.AnnData, layer: str | None, name: str) -> tuple[str, str, list[str]]:
    """(where, kind, notices): the matrix to use."""
    if layer is not None:
        available = [
            *(["X"] if adata.X is not None else []),
            *adata.layers.keys(),
            *([RAW] if adata.raw is not None else []),
        ]
        if layer not in available:
            raise FmscopeError(
                f"{name} has no '{layer}' to take counts from.", f"Give --layer one of: {', '.join(available)}."
            )
        kind = _kind_of(adata, layer)
        if kind == SCALED:
            raise FmscopeError(
                f"{_label(layer)} of {name} holds scaled values (negative numbers), not counts.",
                f"Name the layer that holds raw counts {_where_counts_may_be(adata)}.",
            )
        return (
            layer,
            kind,
            []
            if kind == COUNTS
            else [
                f"{_label(layer)} holds {kind}, not raw counts: used as they are"
                + (" (undone, not normalised again)." if kind == LOG_NORMALISED else ".")
            ],
        )
    candidates = sorted(adata.layers.keys(), key=lambda n: ("count" not in n.lower(), n))
    if adata.raw is not None:
        candidates.append(RAW)
    if adata.X is None:
        return _without_x(adata, candidates, name)
    kind = _kind_of(adata, "X")
    if kind == COUNTS:
        return "X", kind, []
    for where in candidates:
        if _kind_of(adata, where) == COUNTS:
            return where, COUNTS, [f"X holds {kind}, not raw counts; fmscope uses the raw counts in {_label(where)}."]
    if kind in (LOG_NORMALISED, NORMALISED):
        how = "undone, without normalising them again" if kind == LOG_NORMALISED else "as they are"
        return (
            "X",
            kind,
            [
                f"X holds {kind}, not raw counts; fmscope uses them {how}. "
                "Give --layer NAME if the raw counts are in a layer."
            ],
        )
    if adata.raw is not None and _kind_of(adata, RAW) in (LOG_NORMALISED, NORMALISED):
        raw_kind = _kind_of(adata, RAW)
        return (
            RAW,
            raw_kind,
            [
                f"X holds scaled values and no raw counts were found; fmscope uses the {raw_kind} "
                "in .raw" + (" (undone, not normalised again)." if raw_kind == LOG_NORMALISED else ".")
            ],
        )
    low = float(_values(adata.X).min())
    raise FmscopeError(
        f"{name}: X holds scaled values (negative numbers, min {low:.3g}), not raw counts, and no "
        f"counts were found elsewhere {_where_counts_may_be(adata)}.",
        "Give the file with raw counts, or name the layer holding them with --layer NAME.",
    )


def _without_x(adata: ad.AnnData, candidates: list[str], name: str) -> tuple[str, str, list[str]]:
    """An AnnData without X (the format allows it; pipelines drop X and keep counts in a layer): the raw counts
    of a layer or .raw, else log-normalised / normalised values there (said), else a refusal naming X."""
    kinds = {where: _kind_of(adata, where) for where in candidates}
    for wanted in (COUNTS, LOG_NORMALISED, NORMALISED):
        for where, kind in kinds.items():
            if kind == wanted:
                how = {
                    COUNTS: ".",
                    LOG_NORMALISED: " (not raw counts: undone, not normalised again).",
                    NORMALISED: " (not raw counts: used as they are).",
                }[kind]
                return where, kind, [f"{name} has no X; fmscope uses the {kind} in {_label(where)}{how}"]
    raise FmscopeError(
        f"{name} has no X (no expression matrix) and no layer or .raw holding counts {_where_counts_may_be(adata)}.",
        "Give the file with its counts in X or in a layer (then --layer NAME).",
    )


def _gene_names(var: pd.DataFrame) -> tuple[list[str], list[str] | None, list[str]]:
    """(one name per column, unversioned Ensembl ids or None, notices)."""
    names = [str(n) for n in var.index]
    notices = []
    ids = None
    if "gene_ids" in var:
        ids = [ENSEMBL.sub(r"\1", str(i)) for i in var["gene_ids"]]
    versioned = sum(bool(ENSEMBL.match(n)) for n in names)
    symbols = next((c for c in SYMBOL_COLUMNS if c in var and var[c].notna().all()), None)
    if versioned or all(n.startswith("ENS") for n in names[:50]):
        if symbols is not None:
            ids = [ENSEMBL.sub(r"\1", n) for n in names]
            names = [str(s) for s in var[symbols]]
            notices.append(f"Gene names are Ensembl ids; fmscope uses the symbols in var['{symbols}'].")
        elif versioned:
            names = [ENSEMBL.sub(r"\1", n) for n in names]
            ids = names
            notices.append(f"Ensembl version suffixes dropped from {versioned} gene ids (ENSG….16 -> ENSG…).")
    return names, ids, notices


def _merge_duplicates(matrix, names: list[str], ids: list[str] | None):
    """Columns that share a gene name summed into one; returns (matrix, names, ids, notice or None)."""
    codes, unique = pd.factorize(pd.Index(names))
    if len(unique) == len(names):
        return matrix, names, ids, None
    counts = pd.Series(names).value_counts()
    repeated = counts[counts > 1]
    summing = sp.csr_matrix(
        (np.ones(len(names), dtype=np.float32), (np.arange(len(names)), codes)), shape=(len(names), len(unique))
    )
    merged = matrix @ summing
    first = pd.Series(np.arange(len(names))).groupby(codes).first().to_numpy()
    notice = (
        f"{len(repeated)} gene names occur more than once "
        f"({', '.join(f'{g} x{n}' for g, n in repeated.head(5).items())}"
        f"{', ...' if len(repeated) > 5 else ''}); their counts are summed into one column per gene."
    )
    return merged, [str(u) for u in unique], None if ids is None else [ids[i] for i in first], notice


def counts_view(adata: ad.AnnData, layer: str | None = None, name: str = "the slide") -> CountsView:
    """The counts-like AnnData fmscope computes on, for a user's ``adata`` (never modified).

    ``layer``: where the counts are (a layer name, ``"raw"`` or ``"X"``); default: detected.
    Raises :class:`FmscopeError` when no matrix can be counts (scaled values only), naming what
    the file holds and where counts may be.
    """
    where, kind, notices = _choose(adata, layer, name)
    matrix = _matrix(adata, where)
    var = adata.raw.var if where == RAW else adata.var
    names, ids, name_notices = _gene_names(var)
    notices += name_notices
    same = where == "X" and kind != LOG_NORMALISED and not name_notices
    base = None
    if kind == LOG_NORMALISED:
        base, base_notice = _log_base(adata, where, name)
        notices.append(base_notice)
    matrix = _counts_like(matrix, kind, base)
    matrix, names, ids, duplicate_notice = _merge_duplicates(matrix, names, ids)
    if duplicate_notice:
        notices.append(duplicate_notice)
    if same and not duplicate_notice:
        return CountsView(adata, where, kind, notices)
    new_var = pd.DataFrame(index=pd.Index(names, name=None))
    if ids is not None:
        new_var["gene_ids"] = ids
    view = ad.AnnData(
        X=matrix,
        obs=adata.obs.copy(),
        var=new_var,
        uns=dict(adata.uns),
        obsm={key: value.copy() for key, value in adata.obsm.items()},
        obsp={key: value.copy() for key, value in adata.obsp.items()},
    )
    return CountsView(view, where, kind, notices, changed=True)
