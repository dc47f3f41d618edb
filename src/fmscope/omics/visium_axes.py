"""Whether a Visium table's ``obsm['spatial']`` holds (x, y) or was written (y, x), for the slide reader.

Space Ranger defines x = ``pxl_col_in_fullres`` and y = ``pxl_row_in_fullres`` (the image's column and row);
scanpy / squidpy keep ``obsm['spatial']`` = (x, y). Hand conversions from Seurat store (imagerow, imagecol) =
(y, x) instead (seurat#4900, scanpy#2251, squidpy#599), and the spots then lie transposed on the tissue image.

The spot grid alone cannot tell a swap from a slide image turned by 90 degrees (both make x follow
``array_row``; a swap is a 90-degree turn and a mirror, and Space Ranger aligns mirrored images too). So the
rule (:func:`check_axes`), for a table with ``array_row`` / ``array_col``:

1. Space Ranger's own columns ``pxl_col_in_fullres`` / ``pxl_row_in_fullres`` in obs: x is ``pxl_col``. When
   ``obsm['spatial']`` is (``pxl_row``, ``pxl_col``) it is swapped back, with a note (any image orientation).
2. Else, when the grid puts ``array_col`` along x (within 10 degrees): unchanged (Space Ranger's layout for an
   image as scanned).
3. Else, when the grid puts ``array_col`` along y (within 10 degrees: swapped, or an image turned by 90
   degrees) and ``uns['spatial']`` holds one library's tissue image with its scale factor: the spots' places on
   the image decide. Tissue pixels are those far from the border's colour (Otsu threshold); when the transposed
   places put at least 10 points more of the spots on tissue and off tissue at most a third as many as the given
   places, the table is swapped back, with a note giving both fractions; otherwise unchanged, with a note.
4. Anything else (no grid, a grid at another angle, no image): unchanged; the ambiguous case of 3 with a note
   saying x follows ``array_row`` and how to swap it if the spots lie transposed.

A swapped table of a slide image turned by 90 degrees, without the ``pxl_*`` columns, looks like Space Ranger's
layout and is left unchanged (nothing in it says otherwise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ROW_UM, COL_UM = 100.0 * np.sqrt(3) / 2, 50.0  # one array_row / array_col step on the slide
ANGLE_TOLERANCE_DEG = 10.0


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _col_direction_deg(rows: np.ndarray, cols: np.ndarray, xy: np.ndarray) -> float | None:
    """The angle (degrees, 0 = along x, 90 = along y, folded into [0, 90]) of the image direction of the spot
    grid's columns, from a least-squares affine fit of (x, y) on (array_col, array_row); None when the fit is
    not a Visium grid (fewer than 3 spots, a flat grid, or a fit leaving more than 5 % of the spread)."""
    if len(rows) < 3:
        return None
    design = np.column_stack([cols * COL_UM, rows * ROW_UM, np.ones(len(rows))])
    coef, *_ = np.linalg.lstsq(design, xy, rcond=None)
    residual = xy - design @ coef
    spread = np.linalg.norm(xy - xy.mean(axis=0))
    if spread == 0 or np.linalg.norm(residual) > 0.05 * spread:
        return None
    along_col = coef[0]  # image (dx, dy) of one micron along array_col
    if not np.any(along_col):
        return None
    return float(np.degrees(np.arctan2(abs(along_col[1]), abs(along_col[0]))))


def _tissue_mask(image: np.ndarray) -> np.ndarray:
    """Pixels far from the colour of the image's border (glass), by Otsu's threshold; (H, W) bool."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    pixels = np.asarray(image, dtype=float)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels[..., :3]
    h, w = pixels.shape[:2]
    b = max(2, int(0.05 * min(h, w)))
    border = np.concatenate(
        [pixels[:b].reshape(-1, pixels.shape[2]), pixels[-b:].reshape(-1, pixels.shape[2])]
        + [pixels[:, :b].reshape(-1, pixels.shape[2]), pixels[:, -b:].reshape(-1, pixels.shape[2])]
    )
    distance = ndimage.uniform_filter(np.linalg.norm(pixels - np.median(border, axis=0), axis=2), 5)
    if distance.max() == distance.min():
        return np.zeros(distance.shape, bool)
    return distance > threshold_otsu(distance)


def _on_tissue(mask: np.ndarray, xy_image: np.ndarray) -> float:
    """The fraction of points (x, y in image pixels) on tissue (outside the image: off)."""
    cols, rows = np.round(xy_image[:, 0]).astype(int), np.round(xy_image[:, 1]).astype(int)
    inside = (cols >= 0) & (cols < mask.shape[1]) & (rows >= 0) & (rows < mask.shape[0])
    on = np.zeros(len(xy_image), bool)
    on[inside] = mask[rows[inside], cols[inside]]
    return float(on.mean())


def _library_image(uns: dict) -> tuple[np.ndarray, float] | None:
    """The one library's hires (else lowres) image and its scale factor (image pixels per full-resolution
    pixel), or None (no image, several libraries)."""
    libraries = uns.get("spatial")
    if not isinstance(libraries, dict) or len(libraries) != 1:
        return None
    library = next(iter(libraries.values()))
    if not isinstance(library, dict):
        return None
    images, factors = library.get("images") or {}, library.get("scalefactors") or {}
    for name in ("hires", "lowres"):
        if name in images and factors.get(f"tissue_{name}_scalef"):
            return np.asarray(images[name]), float(factors[f"tissue_{name}_scalef"])
    return None


def check_axes(adata, where: str) -> list[str]:
    """Swap ``adata.obsm['spatial']``'s first two columns back to (x, y) when the table shows they hold (y, x),
    by the rule of this module; in place. Returns the notes to say (empty when nothing is to be said)."""
    if "spatial" not in adata.obsm or not {"array_row", "array_col"} <= set(adata.obs.columns):
        return []
    spatial = adata.obsm["spatial"]
    values = np.asarray(spatial.to_numpy() if isinstance(spatial, pd.DataFrame) else spatial, dtype=float)
    if values.ndim != 2 or values.shape[1] < 2 or not np.all(np.isfinite(values[:, :2])):
        return []  # the reader's validation says what is wrong
    xy = values[:, :2]
    rows = pd.to_numeric(adata.obs["array_row"], errors="coerce").to_numpy(float)
    cols = pd.to_numeric(adata.obs["array_col"], errors="coerce").to_numpy(float)
    if not (np.all(np.isfinite(rows)) and np.all(np.isfinite(cols))):
        return []
    swapped = values.copy()
    swapped[:, [0, 1]] = values[:, [1, 0]]
    if {"pxl_col_in_fullres", "pxl_row_in_fullres"} <= set(adata.obs.columns):
        px = pd.to_numeric(adata.obs["pxl_col_in_fullres"], errors="coerce").to_numpy(float)
        py = pd.to_numeric(adata.obs["pxl_row_in_fullres"], errors="coerce").to_numpy(float)
        if _corr(xy[:, 0], py) > 0.99 and _corr(xy[:, 1], px) > 0.99 and _corr(xy[:, 0], px) < 0.99:
            adata.obsm["spatial"] = swapped
            return [
                f"{where}: obsm['spatial'] holds (pxl_row_in_fullres, pxl_col_in_fullres) = (y, x) (e.g. Seurat's "
                "imagerow, imagecol): swapped back to (x, y), as Space Ranger defines x = pxl_col_in_fullres."
            ]
        return []
    angle = _col_direction_deg(rows, cols, xy)
    if angle is None or angle < 90 - ANGLE_TOLERANCE_DEG:
        return []
    said = (
        f"{where}: obsm['spatial']'s x follows array_row and y follows array_col (Space Ranger's layout is x along "
        "array_col unless the slide image was turned by 90 degrees)"
    )
    found = _library_image(adata.uns)
    if found is not None:
        mask, scale = _tissue_mask(found[0]), found[1]
        keep = adata.obs["in_tissue"].to_numpy() == 1 if "in_tissue" in adata.obs else np.ones(len(xy), bool)
        given, transposed = _on_tissue(mask, xy[keep] * scale), _on_tissue(mask, xy[keep][:, ::-1] * scale)
        if transposed - given >= 0.10 and (1 - transposed) <= (1 - given) / 3:
            adata.obsm["spatial"] = swapped
            return [
                f"{said}; on the tissue image {given:.0%} of the spots lie on tissue as given and {transposed:.0%} "
                "with x and y swapped: read as (y, x) and swapped back to (x, y) (e.g. Seurat's imagerow, imagecol)."
            ]
        if given - transposed >= 0.10:
            return []  # the image agrees with the table: an image turned by 90 degrees
    return [
        f"{said}; read as given (nothing in the file tells a turned image from swapped coordinates). If the spots "
        "lie transposed on the tissue, obsm['spatial'] holds (y, x): swap it (adata.obsm['spatial'] = "
        "adata.obsm['spatial'][:, ::-1])."
    ]
