"""``obsm['spatial']`` given as a pandas DataFrame (anndata allows it) read by its column names, for the slide reader.

fmscope's coordinates are an array of (x, y[, z]) per cell, in that order. A DataFrame in ``obsm['spatial']``
names its columns, and the order of those names is the writer's, not fmscope's: R / Seurat's
``GetTissueCoordinates()`` gives ``imagerow, imagecol`` (y first), Xenium's cells table ``x_centroid,
y_centroid``, hand-made frames ``y, x`` or ``X, Y``. Read positionally, a y-first frame transposes every cell.
So a frame is read by its names: each name is split into words (``_``, ``.``, ``-``, space, camelCase) and a
column is x when a word is ``x``, ``col``, ``column`` or ``imagecol``, y for ``y``, ``row`` or ``imagerow``, z for
``z``; columns naming no axis (a ``cell`` id column) are left out. Exactly one x and one y column must be
found, or the frame is refused naming its columns (two x-like columns, ``spatial_1, spatial_2``: the names do
not say which is x). Numbered columns ``0, 1[, 2]`` (an array made a frame) say only their order and are read
in it, as an array is. A plain array is never touched here: it is (x, y) by the format's convention.
"""

from __future__ import annotations

import re

import anndata as ad
import pandas as pd

from fmscope.errors import FmscopeError

AXIS_WORDS = {
    "x": "x",
    "col": "x",
    "column": "x",
    "imagecol": "x",
    "y": "y",
    "row": "y",
    "imagerow": "y",
    "z": "z",
}
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def _axis(name: str) -> str | None:
    """The axis a column name says (``'x'``, ``'y'``, ``'z'``) by its words (:data:`AXIS_WORDS`), or None when it
    says none or several (``pxl_col_in_fullres`` -> x, ``imagerow`` -> y, ``centroidX`` -> x, ``cell`` -> None)."""
    words = {word.lower() for part in re.split(r"[_.\-\s]+", str(name)) for word in _WORD.findall(part)}
    axes = {AXIS_WORDS[word] for word in words if word in AXIS_WORDS}
    return axes.pop() if len(axes) == 1 else None


def read_named_columns(adata: ad.AnnData, where: str) -> list[str]:
    """Replace a DataFrame ``adata.obsm['spatial']`` by its (cells, 2 or 3) float array of x, y[, z] taken by
    column name (module rule), in place; notices saying what was read. An array, or no ``obsm['spatial']``:
    unchanged, no notice. Raises :class:`FmscopeError` naming the columns when the names do not say which
    column is x and which is y, or when the x / y columns are not numbers."""
    frame = adata.obsm.get("spatial")
    if not isinstance(frame, pd.DataFrame):
        return []
    names = [str(c) for c in frame.columns]
    shown = ", ".join(repr(n) for n in names)
    if names == [str(i) for i in range(len(names))]:
        chosen = list(frame.columns)
        note = f"{where}: obsm['spatial'] is a table of numbered columns ({shown}): read in that order as x, y."
    else:
        by_axis: dict[str, list] = {}
        for column in frame.columns:
            axis = _axis(column)
            if axis is not None:
                by_axis.setdefault(axis, []).append(column)
        if len(by_axis.get("x", [])) != 1 or len(by_axis.get("y", [])) != 1 or len(by_axis.get("z", [])) > 1:
            raise FmscopeError(
                f"{where}: obsm['spatial'] is a table whose column names ({shown}) do not say which one column "
                "is x and which is y, so fmscope cannot place the cells.",
                "Name the columns x and y, or store the coordinates as an array in x, y order: "
                "adata.obsm['spatial'] = adata.obsm['spatial'][['X_COLUMN', 'Y_COLUMN']].to_numpy().",
            )
        chosen = [by_axis["x"][0], by_axis["y"][0], *by_axis.get("z", [])]
        left = [repr(str(c)) for c in frame.columns if c not in chosen]
        note = (
            f"{where}: obsm['spatial'] is a table; its columns read by name: x = {str(chosen[0])!r}, "
            f"y = {str(chosen[1])!r}"
            + (f", z = {str(chosen[2])!r}" if len(chosen) > 2 else "")
            + (f" ({', '.join(left)} left out)" if left else "")
            + "."
        )
    try:
        values = frame[chosen].apply(pd.to_numeric, errors="raise").to_numpy(float)
    except (ValueError, TypeError):
        raise FmscopeError(
            f"{where}: obsm['spatial']'s coordinate columns ({', '.join(repr(str(c)) for c in chosen)}) hold "
            "values that are not numbers.",
            "Give the coordinates as numbers (x, y per cell).",
        ) from None
    adata.obsm["spatial"] = values
    return [note]
