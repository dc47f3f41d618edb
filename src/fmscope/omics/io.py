"""Reading slides into one view, and writing results back without touching the user's data.

A :class:`Slide` is an AnnData of raw counts (cells or spots x genes) with coordinates in
microns in ``obsm["spatial"]``, plus the tissue image and its pixel size when present.
Readers: AnnData ``.h5ad`` with ``obsm["spatial"]`` (and ``uns["fmscope"]["microns_per_unit"]``
when the coordinates are not microns), 10x Visium output folders (read directly:
``filtered_feature_bc_matrix.h5`` + ``spatial/``), and SpatialData zarr (first table).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmscope.atomic import atomic_write
from fmscope.errors import FmscopeError

VISIUM_SPOT_DIAMETER_UM = 55.0
VISIUM_PITCH_UM = 100.0  # centre-to-centre distance of neighbouring spots (array columns differ by 2)


@dataclass
class Slide:
    """Counts + coordinates (microns) + optional image (H, W[, 3]) with its microns per pixel."""

    adata: ad.AnnData
    image: np.ndarray | None = None
    image_microns_per_pixel: float | None = None
    spot_diameter_um: float | None = None
    source: str = ""


def _validate(adata: ad.AnnData, source: str) -> ad.AnnData:
    if "spatial" not in adata.obsm:
        raise FmscopeError(f"{source} has no coordinates (obsm['spatial']).",
                           "Add x/y coordinates in microns to obsm['spatial'], or read the original slide folder.")
    coords = np.asarray(adata.obsm["spatial"], dtype=float)
    if coords.ndim != 2 or coords.shape[1] < 2 or not np.all(np.isfinite(coords[:, :2])):
        raise FmscopeError(f"{source}: obsm['spatial'] must hold finite x, y per cell.", "Fix or drop those cells.")
    values = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if not np.all(np.isfinite(values)):
        raise FmscopeError(f"{source} has NaN or infinite counts.", "Replace them (e.g. with 0) before running fmscope.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise FmscopeError(f"{source} is empty ({adata.n_obs} cells x {adata.n_vars} genes).", "Check the input.")
    return adata


def _visium_microns_per_pixel(positions: pd.DataFrame, scale: dict) -> float:
    """Microns per full-resolution pixel from the spot grid (100 um pitch), else the spot diameter."""
    by_position = {(r, c): (y, x) for r, c, y, x in positions[
        ["array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]].itertuples(index=False)}
    steps = []
    for (row, col), (y, x) in by_position.items():
        neighbour = by_position.get((row, col + 2))
        if neighbour is not None:
            steps.append(np.hypot(neighbour[0] - y, neighbour[1] - x))
    if len(steps) >= 10:
        return VISIUM_PITCH_UM / float(np.median(steps))
    return VISIUM_SPOT_DIAMETER_UM / scale["spot_diameter_fullres"]


def _read_visium(folder: Path) -> Slide:
    import scanpy as sc
    from imageio.v3 import imread

    spatial = folder / "spatial"
    positions_file = next((spatial / name for name in ("tissue_positions.csv", "tissue_positions_list.csv")
                           if (spatial / name).is_file()), None)
    if positions_file is None:
        raise FmscopeError(f"{folder} has no spatial/tissue_positions(_list).csv.", "Give the Space Ranger output folder.")
    adata = sc.read_10x_h5(folder / "filtered_feature_bc_matrix.h5")
    adata.var_names_make_unique()
    header = 0 if positions_file.name == "tissue_positions.csv" else None
    positions = pd.read_csv(positions_file, header=header, index_col=0)
    positions.columns = ["in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
    positions = positions.loc[positions.index.intersection(adata.obs_names)]
    adata = adata[positions.index].copy()
    scale = json.loads((spatial / "scalefactors_json.json").read_text())
    microns_per_fullres_px = _visium_microns_per_pixel(positions, scale)
    xy = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(float) * microns_per_fullres_px
    adata.obsm["spatial"] = xy
    adata.obs[["array_row", "array_col"]] = positions[["array_row", "array_col"]].to_numpy()
    image, per_px = None, None
    for name, key in (("tissue_hires_image.png", "tissue_hires_scalef"), ("tissue_lowres_image.png", "tissue_lowres_scalef")):
        if (spatial / name).is_file():
            image = np.asarray(imread(spatial / name))[..., :3]
            per_px = microns_per_fullres_px / scale[key]
            break
    return Slide(adata, image, per_px, VISIUM_SPOT_DIAMETER_UM, str(folder))


GENE_COLUMNS = ("feature_name", "gene", "target", "genes")
CELL_SHAPES = ("cell_boundaries", "cell_circles", "cells")


def _aggregate_transcripts(sdata, path: Path) -> ad.AnnData:
    """Counts per cell from transcripts (points) inside cell boundaries (shapes), with centroids."""
    import spatialdata

    points = next(((name, element) for name, element in sdata.points.items()
                   if any(c in element.columns for c in GENE_COLUMNS)), None)
    shapes_name = next((name for name in CELL_SHAPES if name in sdata.shapes), None)
    if points is None or shapes_name is None:
        raise FmscopeError(f"{path} has no table, and no transcripts + cell boundaries to build one from.",
                           "Give a SpatialData zarr with a cells table, or with points (gene per transcript) "
                           "and cell shapes.")
    gene_column = next(c for c in GENE_COLUMNS if c in points[1].columns)
    shapes = sdata.shapes[shapes_name]
    system = next(iter(spatialdata.transformations.get_transformation(shapes, get_all=True)))
    table = spatialdata.aggregate(values=points[1], by=shapes, value_key=gene_column, agg_func="count",
                                  target_coordinate_system=system).tables["table"]
    centroids = shapes.geometry.centroid.loc[table.obs["instance_id"].to_numpy()]
    adata = ad.AnnData(X=sp.csr_matrix(table.X, dtype=np.float32), var=pd.DataFrame(index=table.var_names))
    adata.obs_names = [str(i) for i in table.obs["instance_id"]]
    adata.obsm["spatial"] = np.c_[centroids.x.to_numpy(), centroids.y.to_numpy()]
    adata.uns["fmscope"] = {"built_from": f"{points[0]} counted in {shapes_name}",
                            "coordinate_units": "intrinsic units of the shapes (Xenium: microns)"}
    return adata


def _read_spatialdata(path: Path) -> Slide:
    import spatialdata

    sdata = spatialdata.read_zarr(path)
    if sdata.tables:
        adata = next(iter(sdata.tables.values())).copy()
    else:
        adata = _aggregate_transcripts(sdata, path)
    return Slide(adata, source=str(path))


def read_slide(path: str | os.PathLike) -> Slide:
    """Read a slide (h5ad, Visium folder, SpatialData zarr) into a validated :class:`Slide`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FmscopeError(f"No such file or folder: {path}", "Check the path.")
    try:
        if path.is_dir() and (path / "filtered_feature_bc_matrix.h5").is_file():
            slide = _read_visium(path)
        elif path.suffix == ".zarr" or (path / ".zgroup").exists() or (path / "zarr.json").exists():
            slide = _read_spatialdata(path)
        elif path.suffix == ".h5ad":
            adata = ad.read_h5ad(path)
            factor = float(adata.uns.get("fmscope", {}).get("microns_per_unit", 1.0))
            if "spatial" in adata.obsm:
                adata.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2] * factor
            slide = Slide(adata, source=str(path))
        else:
            raise FmscopeError(f"{path} is not a slide fmscope can read.",
                               "Give an .h5ad with obsm['spatial'], a Visium output folder, or a SpatialData .zarr.")
    except FmscopeError:
        raise
    except Exception as error:
        raise FmscopeError(f"Cannot read {path} ({type(error).__name__}: {str(error)[:200]}).",
                           "Check the file is complete and of a supported kind.") from None
    slide.adata = _validate(slide.adata, str(path))
    return slide


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike) -> None:
    """Write ``adata`` to ``path`` atomically (a failed write leaves nothing under that name)."""
    atomic_write(path, lambda temporary: adata.write_h5ad(temporary))
