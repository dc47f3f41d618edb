"""Joins on cell ids (barcodes, cell names) against a table whose ids repeat.

Every Visium capture area uses the same barcodes, so two sections concatenated without ``index_unique`` repeat
them (anndata only warns "Observation names are not unique"; scverse/scanpy#55, drighelli/SpatialExperiment#100).
A table keyed by id (an annotation CSV, a model's held-out spot ids) then names a cell of each section at once:
:func:`require_unique` refuses such a join, naming the repeated ids and the sections that share them.
"""

from __future__ import annotations

from collections.abc import Iterable

import anndata as ad
import numpy as np
import pandas as pd

from fmscope.errors import FmscopeError
from fmscope.omics.sections import sections


def require_unique(adata: ad.AnnData, ids: Iterable[str], source: str) -> None:
    """Refuse (FmscopeError) when one of ``ids`` (read from ``source``, e.g. 'ann.csv') names more than one cell of
    ``adata`` (its obs names repeat); ids not on the slide are ignored here."""
    names = pd.Index(adata.obs_names.astype(str))
    if names.is_unique:
        return
    repeated = names[names.duplicated(keep=False)]
    hit = sorted(set(map(str, ids)) & set(repeated))
    if not hit:
        return
    found = sections(adata)
    where = ""
    if found is not None:
        column, labels = found
        shared = sorted(set(labels[np.isin(names, hit[:1])]))
        where = f" (e.g. {hit[0]} is a cell of {', '.join(shared)} in obs['{column}'])"
    raise FmscopeError(
        f"{len(hit)} cell id(s) of {source} name several cells of the slide{where}: its obs names repeat "
        f"({len(set(repeated))} ids, e.g. {', '.join(sorted(set(repeated))[:3])}; sections concatenated without "
        "unique names), so the id cannot tell which cell is meant.",
        "Give the slide unique cell ids (anndata.concat(..., index_unique='-') or adata.obs_names_make_unique()) "
        f"and use those ids in {source}; or give each section as a slide of its own.",
    )
