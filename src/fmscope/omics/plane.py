"""Coordinates of more than two axes (x, y, z: stacked serial sections, 3D MERFISH / STARmap) made x, y.

fmscope's spatial steps (neighbour smoothing, domains, fine-tuning, drawing) work in the plane. A third column
that is the same for every cell (z = 0 written by a 3D-capable tool) carries no position and is dropped, with a
notice; one that varies is refused: taking x, y alone would make cells at different depths neighbours (squidpy
uses N-D coordinates as they are, scverse/squidpy#581), and a wrong domain map is worse than a refusal.
"""

from __future__ import annotations

import numpy as np

from fmscope.errors import FmscopeError


def plane_coordinates(coords: np.ndarray, source: str) -> tuple[np.ndarray, str]:
    """((cells, 2) x, y; a notice) from (cells, D > 2) coordinates whose columns after the second are constant
    (or NaN throughout). FmscopeError, naming the column and its values, when one varies."""
    for axis in range(2, coords.shape[1]):
        column = coords[:, axis]
        if np.all(np.isnan(column)):
            continue
        values = np.unique(column[~np.isnan(column)])
        if len(values) > 1 or np.isnan(column).any():
            shown = ", ".join(f"{v:g}" for v in values[:4]) + (" ..." if len(values) > 4 else "")
            name = "z" if axis == 2 else f"column {axis + 1}"
            raise FmscopeError(
                f"{source}: obsm['spatial'] holds {coords.shape[1]} coordinates per cell; its {name} "
                f"(column {axis + 1}) varies ({len(values)} values: {shown}"
                f"{'; NaN for some cells' if np.isnan(column).any() else ''}), so the cells are in 3D. fmscope's "
                "spatial steps work in one plane: taking x, y alone would make cells at different depths neighbours.",
                "Give each depth (serial section) as a section: obsm['spatial'] = x, y and obs['section'] = its z "
                "(or one slide per section).",
            )
    return coords[:, :2].copy(), (
        f"obsm['spatial'] holds {coords.shape[1]} coordinates per cell; the ones after x, y are the same for every "
        "cell (one plane): x, y used."
    )
