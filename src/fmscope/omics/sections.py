"""Several tissue sections in one table: which column tells them apart, so neighbours stay within a section.

Users concatenate sections into one AnnData (``anndata.concat``; one ``library_id`` per section and
``uns["spatial"]`` with one entry per library, the scanpy / squidpy layout) or keep several samples
in one SpatialData table (its region column, one region per section). Each section's coordinates
start at the same origin, so spots of different sections overlap: a spatial neighbour graph over the
whole table joins them (squidpy's maintainers: spatial_neighbors "is not batch aware", squidpy#318;
its ``library_key`` since squidpy#516). :func:`sections` finds the section column;
:func:`require_sections` also refuses a table that holds several libraries (``uns["spatial"]``) or
many cells sharing one position without a column to tell them apart.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from fmscope.errors import FmscopeError

SECTION_KEYS = ("library_id", "library", "section", "section_id", "sample", "sample_id", "slide", "slide_id")
MAX_SHARED_POSITIONS = 0.05  # more cells than this sharing a position with another: overlapping sections


def _region_key(adata: ad.AnnData) -> str | None:
    attrs = adata.uns.get("spatialdata_attrs") or {}
    region = attrs.get("region")
    if isinstance(region, str) or region is None or len(list(region)) < 2:
        return None
    return attrs.get("region_key")


def sections(adata: ad.AnnData) -> tuple[str, np.ndarray] | None:
    """(obs column, (cells,) section labels) when the table holds two or more sections, else None.

    The column is the first of ``SECTION_KEYS`` (exact name, any case) with two or more values, else the
    SpatialData region column when the table annotates several regions. Missing labels are refused.
    """
    by_lower = {str(c).lower(): c for c in adata.obs.columns}
    candidates = [by_lower[k] for k in SECTION_KEYS if k in by_lower]
    region_key = _region_key(adata)
    if region_key in adata.obs.columns:
        candidates.append(region_key)
    for column in candidates:
        values = adata.obs[column]
        if values.nunique(dropna=True) < 2:
            continue
        if values.isna().any():
            raise FmscopeError(
                f"obs['{column}'] tells the sections apart but {int(values.isna().sum())} cells have no section.",
                f"Fill obs['{column}'] for every cell, or drop those cells.",
            )
        return str(column), values.astype(str).to_numpy()
    return None


def require_sections(adata: ad.AnnData, name: str) -> np.ndarray | None:
    """Section labels for a step that uses spatial neighbours (None: one section); refuses a table that holds
    several sections it cannot tell apart."""
    found = sections(adata)
    if found is not None:
        return found[1]
    libraries = adata.uns.get("spatial")
    if isinstance(libraries, dict) and len(libraries) > 1:
        raise FmscopeError(
            f"{name} holds {len(libraries)} libraries in uns['spatial'] "
            f"({', '.join(map(str, libraries))}) but no obs column saying which section each cell "
            "belongs to.",
            "Add obs['library_id'] naming each cell's section, or give one section per file.",
        )
    xy = pd.DataFrame(np.asarray(adata.obsm["spatial"], dtype=float)[:, :2])
    shared = float(xy.duplicated(keep=False).mean()) if len(xy) else 0.0
    if shared > MAX_SHARED_POSITIONS:
        raise FmscopeError(
            f"{name}: {shared:.0%} of the cells share their position with another cell, as when "
            "several sections are stacked in one file (overlapping coordinates).",
            "Add obs['library_id'] naming each cell's section, or give one section per file.",
        )
    return None


def within_sections(labels: np.ndarray | None, n: int):
    """(section name, cell indices) for each section, in order (one section of all ``n`` cells when None)."""
    if labels is None:
        return [("", np.arange(n))]
    return [(str(name), np.flatnonzero(labels == name)) for name in pd.unique(labels)]
