"""How many cells (or spots, or bins) each spatial-omics step needs, checked before any work.

- ``embed``: the baseline encoder is a PCA, which needs 2 cells (an scGPT checkpoint embeds
  each cell on its own, so 1 will do).
- ``domains``: Leiden clustering of a spatial neighbour graph; fewer than 10 cells do not make
  domains (:func:`fmscope.omics.domains.spatial_domains` asks for as many).
- ``finetune`` / ``classify``: the head's features and probabilities are smoothed over each
  cell's 6 nearest spatial neighbours (:func:`fmscope.omics.domains.smooth_embedding`), so
  7 cells at least.
"""

from __future__ import annotations

from fmscope.errors import FmscopeError

SPATIAL_NEIGHBOURS = 6
MIN_CELLS = {
    "embed": 2,
    "embed_scgpt": 1,
    "domains": 10,
    "finetune": SPATIAL_NEIGHBOURS + 1,
    "classify": SPATIAL_NEIGHBOURS + 1,
    "impute": 1,
    "deconvolve": 1,
    "annotate": 1,
}
WHY = {
    "embed": "the baseline encoder is a PCA across cells (an scGPT --checkpoint embeds single cells)",
    "domains": "domains are clusters of a spatial neighbour graph",
    "finetune": f"each cell is smoothed with its {SPATIAL_NEIGHBOURS} nearest neighbours",
    "classify": f"each cell is smoothed with its {SPATIAL_NEIGHBOURS} nearest neighbours",
}


def require_cells(n_cells: int, step: str, source: str = "the slide") -> None:
    """Raise :class:`FmscopeError` naming the minimum when ``n_cells`` is too few for ``step`` (a key of MIN_CELLS)."""
    minimum = MIN_CELLS[step]
    if n_cells >= minimum:
        return
    name = step.split("_")[0]
    plural = "cell or spot" if n_cells == 1 else "cells or spots"
    why = WHY.get(name)
    raise FmscopeError(
        f"{source} has {n_cells} {plural}; `{name}` needs at least {minimum}" + (f" ({why})." if why else "."),
        "Give a larger slide or crop.",
    )
