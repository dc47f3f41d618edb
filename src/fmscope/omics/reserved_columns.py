"""Data-frame columns that anndata reads but will not write: ``_index`` in obs, var or raw.var.

anndata stores a data frame's index as a dataset named ``_index`` and refuses a column of that name on
write ("'_index' is a reserved name for dataframe columns"), but reads one without a word when a file's
``column-order`` lists it. SeuratDisk's ``Convert(..., dest = "h5ad")`` writes such files (raw/var lists
``_index``: mojaveazure/seurat-disk#71, theislab/scvelo#255, scverse/anndata#990, scverse/spatialdata#516), so
a table fmscope read could not be written back with its results. :func:`make_writable` fixes the tables
fmscope holds in memory (never the input file): a ``_index`` column repeating its frame's index is dropped,
any other is renamed ``index`` (``index_1``, ... when taken); each change is said in a notice.
"""

from __future__ import annotations

import anndata as ad
import pandas as pd

RESERVED = "_index"


def _fix(frame: pd.DataFrame, where: str) -> str | None:
    """Drop or rename ``frame``'s ``_index`` column in place; the sentence saying so, None when there is none."""
    if RESERVED not in frame.columns:
        return None
    said = f"{where} has a column '_index' (a name anndata reserves; SeuratDisk writes it)"
    values = frame[RESERVED].astype(str).to_numpy()
    if len(values) == len(frame.index) and (values == frame.index.astype(str).to_numpy()).all():
        frame.drop(columns=RESERVED, inplace=True)
        return f"{said} repeating its index: dropped."
    name, k = "index", 0
    while name in frame.columns:
        k += 1
        name = f"index_{k}"
    frame.rename(columns={RESERVED: name}, inplace=True)
    return f"{said}: renamed '{name}'."


def make_writable(adata: ad.AnnData, where: str) -> list[str]:
    """Drop or rename the ``_index`` columns of ``adata``'s obs, var and raw.var in place (see the module);
    ``where`` names the table in the notices returned (one per column changed)."""
    frames = [(adata.obs, "obs"), (adata.var, "var")]
    if adata.raw is not None:
        frames.append((adata.raw.var, "raw.var"))
    notices = [_fix(frame, f"{where}: {name}") for frame, name in frames]
    return [notice for notice in notices if notice]
