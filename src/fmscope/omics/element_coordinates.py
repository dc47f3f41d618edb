"""Cell coordinates of a SpatialData table from the element it annotates, when the table holds none.

In the SpatialData model a table annotates an element (its ``region``) row by row through the
``instance_key``; ``obsm["spatial"]`` is optional, and stores built with ``ShapesModel`` + ``TableModel``
(the spatialdata tutorials) carry none. As spatialdata's maintainers answer for such stores
(scverse/spatialdata#387, #1150 ``get_centroids``), the coordinates are the annotated element's: circle
centres, polygon centroids, label-region centroids. They are returned in the element's **intrinsic** units,
the units the rest of the store reader takes a table's coordinates in: the element's transformation to a
micron coordinate system, or the other unit rules of :mod:`fmscope.omics.units`, turns them into microns.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from fmscope.errors import FmscopeError


def annotated_element(sdata, table: ad.AnnData) -> tuple[str | None, object | None]:
    """(name, element) of the one shapes, labels or points element ``table`` annotates; (None, None) when it
    annotates nothing in the store or several elements."""
    region = (table.uns.get("spatialdata_attrs") or {}).get("region")
    regions = [region] if isinstance(region, str) else list(region or [])
    if len(regions) != 1:
        return None, None
    name = regions[0]
    for elements in (sdata.shapes, sdata.labels, sdata.points):
        if name in elements:
            return name, elements[name]
    return None, None


def _rows(ids: pd.Series, index: pd.Index, name: str, key: str) -> np.ndarray:
    """Positions in ``index`` of each of the table's ``ids`` (compared as text); refuses ids not there, and an
    element whose ids repeat (an id would name several cells: :mod:`fmscope.omics.cell_ids`)."""
    index = pd.Index(index.astype(str))
    if not index.is_unique:
        repeated = sorted(set(index[index.duplicated()]))
        raise FmscopeError(
            f"'{name}', the element the table annotates, repeats {len(repeated)} instance id(s) "
            f"({', '.join(repeated[:3])}), so the table's obs['{key}'] cannot tell which of its cells is meant, and "
            "the table has no coordinates of its own (obsm['spatial']).",
            f"Give the element unique ids (its index) and the table the matching '{key}', or give the table's "
            "cells their x, y in obsm['spatial'].",
        )
    found = index.get_indexer(ids.astype(str))
    if (found < 0).any():
        absent = ids[found < 0].astype(str)
        raise FmscopeError(
            f"{(found < 0).sum()} of the table's {len(ids)} cells (obs['{key}'] {', '.join(absent[:3])}"
            f"{' ...' if len(absent) > 3 else ''}) are not in '{name}', the element it annotates, and the table has "
            "no coordinates of its own (obsm['spatial']).",
            f"Give the table's cells their x, y in obsm['spatial'], or annotate the element holding them by '{key}'.",
        )
    return found


def element_coordinates(sdata, table: ad.AnnData) -> tuple[np.ndarray, str] | None:
    """((cells, 2) x, y of ``table``'s rows in the intrinsic units of the element it annotates, a notice), or None
    when it annotates no element of the store. Raises FmscopeError naming the element when it cannot give them
    (several elements, points, no instance key, ids not in the element)."""
    attrs = table.uns.get("spatialdata_attrs") or {}
    name, element = annotated_element(sdata, table)
    region = attrs.get("region")
    if name is None:
        if isinstance(region, list) and len(region) > 1:
            raise FmscopeError(
                f"The table has no coordinates (obsm['spatial']) and annotates several elements "
                f"({', '.join(map(str, region))}); fmscope takes a slide's cells from one element.",
                "Give the table's cells their x, y in obsm['spatial'] (in one coordinate system).",
            )
        return None
    key = attrs.get("instance_key")
    if key not in table.obs:
        raise FmscopeError(
            f"The table annotates '{name}' but has no instance key column (obs['{key}']) to match its cells to it, "
            "and no coordinates of its own (obsm['spatial']).",
            "Parse the table with TableModel.parse(..., instance_key=...) naming the column of the element's ids.",
        )
    ids = table.obs[key]
    if name in sdata.shapes:
        centres = element.geometry.centroid  # circles are stored as points: their centres
        rows = _rows(ids, element.index, name, key)
        what = "centres of the circles" if "radius" in element.columns else "centroids of the outlines"
        return np.c_[centres.x.to_numpy()[rows], centres.y.to_numpy()[rows]], f"{what} '{name}' (by {key})"
    if name in sdata.labels:
        return _label_centroids(element, ids, name, key), f"centroids of the label regions '{name}' (by {key})"
    raise FmscopeError(
        f"The table annotates the points '{name}' and has no coordinates of its own (obsm['spatial']).",
        "Give the table's cells their x, y in obsm['spatial'], or annotate the cell shapes.",
    )


def _label_centroids(labels, ids: pd.Series, name: str, key: str) -> np.ndarray:
    """Centroids of the label regions ``ids`` in the labels' intrinsic pixels (x, y): spatialdata's
    ``get_centroids`` in one of the element's coordinate systems, mapped back by its transformation."""
    from spatialdata import get_centroids
    from spatialdata.transformations import get_transformation

    system, transformation = next(iter(get_transformation(labels, get_all=True).items()))
    centroids = get_centroids(labels, coordinate_system=system).compute()
    rows = _rows(ids, centroids.index, name, key)
    to_system = transformation.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    xy = np.c_[centroids["x"].to_numpy()[rows], centroids["y"].to_numpy()[rows], np.ones(len(rows))]
    return (xy @ np.linalg.inv(np.asarray(to_system, float)).T)[:, :2]
