"""Reading slides into one view, and writing results back without touching the user's data.

A :class:`Slide` is an AnnData of raw counts (cells or spots x genes) with coordinates in
microns in ``obsm["spatial"]``, plus the tissue image and its pixel size when present.
Readers: AnnData ``.h5ad`` with ``obsm["spatial"]`` and its units (``uns["fmscope"]
["microns_per_unit"]``, or ``microns_per_unit=`` / ``--microns-per-unit``), 10x Visium output
folders (read directly: ``filtered_feature_bc_matrix.h5`` + ``spatial/``), Xenium and MERSCOPE
output folders (through spatialdata-io), and SpatialData zarr (its table, fmscope's own first,
with the image and its microns per pixel).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmscope.atomic import atomic_write
from fmscope.errors import FmscopeError
from fmscope.omics.raster import CellGrid

VISIUM_SPOT_DIAMETER_UM = 55.0
DEFAULT_CELL_DIAMETER_UM = 10.0  # drawn size of cells when the slide does not give one
VISIUM_PITCH_UM = 100.0  # centre-to-centre distance of neighbouring spots (array columns differ by 2)


@dataclass
class Slide:
    """Counts + coordinates (microns) + optional image (H, W[, 3]) with its microns per pixel.

    ``image_levels`` holds the image pyramid (finest first, lazy dask arrays for SpatialData
    images) when there is one; ``sdata`` and ``table_name`` the SpatialData the slide came from,
    so results can be written back beside the user's elements. ``image_affine_um``: the image's
    full placement (offset, rotation, scale) when it has one (see :meth:`image_to_microns`).
    """

    adata: ad.AnnData
    image: np.ndarray | None = None
    image_microns_per_pixel: float | None = None
    spot_diameter_um: float | None = None
    source: str = ""
    image_levels: list | None = None
    sdata: object | None = None
    table_name: str | None = None
    image_affine_um: np.ndarray | None = None
    _cell_grid: CellGrid | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def cell_diameter_um(self) -> float:
        """The spots' diameter, or a typical cell's when the slide does not give one."""
        return self.spot_diameter_um or DEFAULT_CELL_DIAMETER_UM

    def image_to_microns(self) -> np.ndarray | None:
        """3x3 matrix taking image pixel (y, x, 1) (finest level) to microns (y, x, 1); None without an image."""
        if self.image is None or not self.image_microns_per_pixel:
            return None
        if self.image_affine_um is not None:
            return self.image_affine_um
        return np.diag([self.image_microns_per_pixel, self.image_microns_per_pixel, 1.0])

    def cell_grid(self) -> CellGrid:
        """The cells' raster grid for drawing large slides (built once: a slide's cells do not move)."""
        if self._cell_grid is None:
            self._cell_grid = CellGrid.for_cells(self.adata.obsm["spatial"])
        return self._cell_grid


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


def _image_levels(element) -> list:
    """(y, x[, c]) arrays of an image element, finest first (RGB kept, else the first channel)."""
    if hasattr(element, "children") and element.children:  # multiscale DataTree
        arrays = [element[name]["image"] for name in sorted(element.children, key=lambda n: int(n.lstrip("scale")))]
    else:
        arrays = [element]
    levels = []
    for array in arrays:
        data = array.transpose("c", "y", "x").data
        levels.append(data[:3].transpose(1, 2, 0) if data.shape[0] in (3, 4) else data[0])
    return levels


def _yx_affine(element, system: str) -> np.ndarray:
    """3x3 matrix from the element's intrinsic (y, x, 1) to ``system``'s (y, x, 1)."""
    from spatialdata.transformations import get_transformation

    return get_transformation(element, to_coordinate_system=system).to_affine_matrix(
        input_axes=("y", "x"), output_axes=("y", "x"))


def _spatialdata_image(sdata) -> tuple[list | None, np.ndarray | None]:
    """The first image's levels and its pixel -> microns affine (y, x), from the ``microns`` system or one
    it shares with shapes or points (whose intrinsic units are microns in Xenium, MERSCOPE and fmscope
    stores): offset, rotation and scale all kept."""
    from spatialdata.transformations import get_transformation

    for element in sdata.images.values():
        systems = get_transformation(element, get_all=True)
        if "microns" in systems:
            return _image_levels(element), _yx_affine(element, "microns")
        for other in [*sdata.shapes.values(), *sdata.points.values()]:
            shared = set(systems) & set(get_transformation(other, get_all=True))
            if shared:
                system = sorted(shared)[0]
                return _image_levels(element), np.linalg.inv(_yx_affine(other, system)) @ _yx_affine(element, system)
    return None, None


def _spot_diameter(sdata, adata: ad.AnnData) -> float | None:
    """Diameter (microns) of the circles the table annotates, when it annotates circles."""
    region = adata.uns.get("spatialdata_attrs", {}).get("region")
    region = region[0] if isinstance(region, list) and len(region) == 1 else region
    shapes = sdata.shapes.get(region) if isinstance(region, str) else None
    if shapes is not None and "radius" in shapes.columns:
        return float(2 * np.median(shapes["radius"]))
    return None


def _read_spatialdata(path: Path) -> Slide:
    import spatialdata

    return _from_spatialdata(spatialdata.read_zarr(path), path)


def _from_spatialdata(sdata, path: Path) -> Slide:
    table_name = None
    if sdata.tables:
        table_name = "fmscope_table" if "fmscope_table" in sdata.tables else next(iter(sdata.tables))
        adata = sdata.tables[table_name].copy()
        if "spatial" not in adata.obsm and {"x", "y"} <= set(adata.obs.columns):
            adata.obsm["spatial"] = adata.obs[["x", "y"]].to_numpy(float)
    else:
        adata = _aggregate_transcripts(sdata, path)
    levels, affine = _spatialdata_image(sdata)
    microns_per_pixel = None if affine is None else float(np.sqrt(abs(np.linalg.det(affine[:2, :2]))))
    return Slide(adata, levels[0] if levels else None, microns_per_pixel, _spot_diameter(sdata, adata), str(path),
                 levels, sdata, table_name, affine)


def _read_with_spatialdata_io(path: Path, technology: str) -> Slide:
    import spatialdata_io

    if technology == "xenium":
        # Segmentation rasters are not needed (boundaries are read as polygons); the morphology
        # image is read when the folder has it (XOA 1.x: one OME-TIFF, 2.0+: a folder of them).
        focus = (path / "morphology_focus.ome.tif").is_file() or (path / "morphology_focus").is_dir()
        sdata = spatialdata_io.xenium(path, cells_labels=False, nucleus_labels=False, morphology_mip=False,
                                      morphology_focus=focus, aligned_images=False)
    else:
        sdata = spatialdata_io.merscope(path)
    return _from_spatialdata(sdata, path)


def read_slide(path: str | os.PathLike, microns_per_unit: float | None = None) -> Slide:
    """Read a slide (h5ad, Visium / Xenium / MERSCOPE folder, SpatialData zarr) into a validated :class:`Slide`.

    ``microns_per_unit`` gives the units of an .h5ad's ``obsm["spatial"]`` when the file does not
    (``uns["fmscope"]["microns_per_unit"]``); coordinates without units are refused.
    """
    path = Path(path).expanduser()
    units = None
    if not path.exists():
        raise FmscopeError(f"No such file or folder: {path}", "Check the path.")
    try:
        if path.is_dir() and (path / "filtered_feature_bc_matrix.h5").is_file():
            slide = _read_visium(path)
        elif path.is_dir() and (path / "experiment.xenium").is_file():
            slide = _read_with_spatialdata_io(path, "xenium")
        elif path.is_dir() and (path / "cell_by_gene.csv").is_file():
            slide = _read_with_spatialdata_io(path, "merscope")
        elif path.suffix == ".zarr" or (path / ".zgroup").exists() or (path / "zarr.json").exists():
            slide = _read_spatialdata(path)
        elif path.suffix == ".h5ad":
            slide = Slide(ad.read_h5ad(path), source=str(path))
            units = microns_per_unit
            if units is None:
                units = slide.adata.uns.get("fmscope", {}).get("microns_per_unit")
                units = None if units is None else float(units)
        else:
            raise FmscopeError(f"{path} is not a slide fmscope can read.",
                               "Give an .h5ad with obsm['spatial'], a Visium, Xenium or MERSCOPE output folder, "
                               "or a SpatialData .zarr.")
    except FmscopeError:
        raise
    except Exception as error:
        raise FmscopeError(f"Cannot read {path} ({type(error).__name__}: {str(error)[:200]}).",
                           "Check the file is complete and of a supported kind.") from None
    slide.adata = _validate(slide.adata, str(path))
    if path.suffix == ".h5ad":
        if units is None or not units > 0:
            raise FmscopeError(f"{path}: the coordinates in obsm['spatial'] have no units.",
                               "Say how many microns one unit is: --microns-per-unit 1 if they are microns "
                               "(or set uns['fmscope']['microns_per_unit'] in the file).")
        slide.adata.obsm["spatial"] = np.asarray(slide.adata.obsm["spatial"], dtype=float)[:, :2] * units
        slide.adata.uns.setdefault("fmscope", {})["microns_per_unit"] = 1.0  # coordinates are microns from here on
    return slide


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike) -> None:
    """Write ``adata`` to ``path`` atomically (a failed write leaves nothing under that name)."""
    atomic_write(path, lambda temporary: adata.write_h5ad(temporary))
