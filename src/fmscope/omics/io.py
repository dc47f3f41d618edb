"""Reading slides into one view, and writing results back without touching the user's data.

A :class:`Slide` is an AnnData of counts (cells, spots or bins x genes) with coordinates in
microns in ``obsm["spatial"]``, plus the tissue image and its pixel size when present.
Readers: AnnData ``.h5ad`` with ``obsm["spatial"]`` and its units (``uns["fmscope"]
["microns_per_unit"]``, or ``microns_per_unit=`` / ``--microns-per-unit``), 10x Visium output
folders (read directly: ``filtered_feature_bc_matrix.h5`` + ``spatial/``), Visium HD binned
outputs (``binned_outputs/square_NNNum``: parquet positions, microns per pixel and bin size
from the scale factors; bins are squares), Xenium (XOA 1.x to 3.x) and MERSCOPE output folders
(through spatialdata-io), and SpatialData zarr (its table, fmscope's own first, with the image
and its microns per pixel). A table that annotates an element missing from the store is linked
to the cell outlines it describes. Whatever the file, the counts are found
(:mod:`fmscope.omics.expression`) and the user's table is kept for writing back.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmscope.atomic import atomic_write
from fmscope.errors import FmscopeError
from fmscope.omics.expression import counts_view
from fmscope.omics.raster import CellGrid

VISIUM_SPOT_DIAMETER_UM = 55.0
DEFAULT_CELL_DIAMETER_UM = 10.0  # drawn size of cells when the slide does not give one
VISIUM_PITCH_UM = 100.0  # centre-to-centre distance of neighbouring spots (array columns differ by 2)


@dataclass
class Slide:
    """Counts + coordinates (microns) + optional image (H, W[, 3]) with its microns per pixel.

    ``image_levels`` holds the image pyramid (finest first, lazy dask arrays for SpatialData
    images) when there is one; ``sdata`` and ``table_name`` the SpatialData the slide came from,
    so results can be written back beside the user's elements. ``spot_diameter_um`` is the
    spot's diameter, a bin's side (``spot_shape == "square"``) or a typical cell's diameter
    from its outlines. ``user_table`` is the user's AnnData when ``adata`` is a counts view of
    it (counts from a layer, gene names merged): results are written back onto it.
    ``notices`` say what fmscope assumed about the file. ``image_affine_um``: the image's
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
    spot_shape: str = "circle"  # "circle" (spots, cells) or "square" (Visium HD bins)
    user_table: ad.AnnData | None = None
    notices: list[str] = field(default_factory=list)
    image_affine_um: np.ndarray | None = None
    _cell_grid: CellGrid | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def cell_diameter_um(self) -> float:
        """The spots' diameter, or a typical cell's when the slide does not give one."""
        return self.spot_diameter_um or DEFAULT_CELL_DIAMETER_UM

    def result_table(self) -> ad.AnnData:
        """The table to write: the user's table (its X, genes, layers) with fmscope's per-cell results."""
        if self.user_table is None:
            return self.adata
        table = self.user_table.copy()
        table.obs = self.adata.obs.copy()
        for key, value in self.adata.obsm.items():
            table.obsm[key] = value
        for key, value in self.adata.obsp.items():
            table.obsp[key] = value
        table.uns = dict(self.adata.uns)
        return table

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


def _tissue_image(spatial: Path, scale: dict, microns_per_fullres_px: float) -> tuple[np.ndarray | None, float | None]:
    """The hires (else lowres) tissue image and its microns per pixel."""
    from imageio.v3 import imread

    for name, key in (("tissue_hires_image.png", "tissue_hires_scalef"), ("tissue_lowres_image.png", "tissue_lowres_scalef")):
        if (spatial / name).is_file() and scale.get(key):
            return np.asarray(imread(spatial / name))[..., :3], microns_per_fullres_px / float(scale[key])
    return None, None


def _visium_counts(folder: Path, positions: pd.DataFrame) -> ad.AnnData:
    """Counts of the barcodes that have a position, in that order, with array row / column in obs."""
    import scanpy as sc

    adata = sc.read_10x_h5(folder / "filtered_feature_bc_matrix.h5")
    positions = positions.loc[positions.index.intersection(adata.obs_names)]
    adata = adata[positions.index].copy()
    adata.obs[["array_row", "array_col"]] = positions[["array_row", "array_col"]].to_numpy()
    return adata


def _read_visium(folder: Path) -> Slide:
    spatial = folder / "spatial"
    positions_file = next((spatial / name for name in ("tissue_positions.csv", "tissue_positions_list.csv")
                           if (spatial / name).is_file()), None)
    if positions_file is None:
        raise FmscopeError(f"{folder} has no spatial/tissue_positions(_list).csv.", "Give the Space Ranger output folder.")
    header = 0 if positions_file.name == "tissue_positions.csv" else None
    positions = pd.read_csv(positions_file, header=header, index_col=0)
    positions.columns = ["in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
    adata = _visium_counts(folder, positions)
    positions = positions.loc[adata.obs_names]
    scale = json.loads((spatial / "scalefactors_json.json").read_text())
    microns_per_fullres_px = _visium_microns_per_pixel(positions, scale)
    adata.obsm["spatial"] = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(float) * microns_per_fullres_px
    image, per_px = _tissue_image(spatial, scale, microns_per_fullres_px)
    return Slide(adata, image, per_px, VISIUM_SPOT_DIAMETER_UM, str(folder))


HD_BINS = re.compile(r"^square_(\d{3})um$")
HD_BARCODE = re.compile(r"^s_(\d{3})um_\d+_\d+")


def _is_visium_hd(folder: Path) -> bool:
    """A Visium HD bin folder: named square_NNNum, parquet positions, a bin size in its scale
    factors, or HD barcodes (s_016um_...) in a positions csv written from the parquet."""
    spatial = folder / "spatial"
    if HD_BINS.match(folder.name) or (spatial / "tissue_positions.parquet").is_file():
        return True
    scale_file = spatial / "scalefactors_json.json"
    if scale_file.is_file() and "bin_size_um" in json.loads(scale_file.read_text()):
        return True
    csv = spatial / "tissue_positions.csv"
    return csv.is_file() and bool(HD_BARCODE.match(str(pd.read_csv(csv, nrows=1).iloc[0, 0])))


def _read_visium_hd(folder: Path) -> Slide:
    """One Visium HD bin level (``binned_outputs/square_NNNum``): bins as squares of their true size, in microns."""
    spatial = folder / "spatial"
    scale_file = spatial / "scalefactors_json.json"
    if not scale_file.is_file():
        raise FmscopeError(f"{folder} is a Visium HD bin folder without spatial/scalefactors_json.json.",
                           "Give the square_NNNum folder as Space Ranger wrote it.")
    scale = json.loads(scale_file.read_text())
    named = HD_BINS.match(folder.name)
    bin_um = float(scale.get("bin_size_um") or (named and named.group(1)) or 0)
    microns_per_px = float(scale.get("microns_per_pixel") or 0) or (
        bin_um / float(scale["spot_diameter_fullres"]) if bin_um and scale.get("spot_diameter_fullres") else 0)
    if not bin_um or not microns_per_px:
        raise FmscopeError(f"{scale_file} gives neither the Visium HD bin size (bin_size_um) nor microns_per_pixel.",
                           "Use the scalefactors_json.json Space Ranger wrote into the bin folder.")
    parquet, csv = spatial / "tissue_positions.parquet", spatial / "tissue_positions.csv"
    if parquet.is_file():
        positions = pd.read_parquet(parquet)
    elif csv.is_file():
        positions = pd.read_csv(csv)
    else:
        raise FmscopeError(f"{folder} (Visium HD bins) has no spatial/tissue_positions.parquet.",
                           "Give the square_NNNum folder as Space Ranger wrote it.")
    positions = positions.set_index("barcode")
    adata = _visium_counts(folder, positions)
    positions = positions.loc[adata.obs_names]
    adata.obsm["spatial"] = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(float) * microns_per_px
    image, per_px = _tissue_image(spatial, scale, microns_per_px)
    slide = Slide(adata, image, per_px, bin_um, str(folder), spot_shape="square")
    slide.notices.append(f"Visium HD bins of {bin_um:g} um, {microns_per_px:.4g} um per full-resolution pixel "
                         "(from the scale factors).")
    return slide


def _visium_hd_level(outs: Path) -> Path:
    """The one bin level under a Visium HD ``outs`` folder; several: refuse, listing them."""
    levels = sorted(p for p in (outs / "binned_outputs").iterdir() if p.is_dir() and HD_BINS.match(p.name))
    if len(levels) == 1:
        return levels[0]
    listed = ", ".join(str(p) for p in levels) or "none"
    raise FmscopeError(f"{outs} is a Visium HD output with {len(levels)} bin levels ({listed}).",
                       "Give the bin folder to read, e.g. binned_outputs/square_008um (8 um bins, 10x's "
                       "recommendation for analysis); 2 um bins are millions of rows.")


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


def _annotated_shapes(sdata, adata: ad.AnnData):
    """The shapes element the table annotates (one region), else None."""
    region = adata.uns.get("spatialdata_attrs", {}).get("region")
    region = region[0] if isinstance(region, list) and len(region) == 1 else region
    return sdata.shapes.get(region) if isinstance(region, str) else None


def _cell_size(shapes) -> tuple[float | None, str]:
    """(diameter of circles, side of square bins, or the diameter of a disc of the outlines' median
    area, in the shapes' units; shape name)."""
    if shapes is None or len(shapes) == 0:
        return None, "circle"
    if "radius" in shapes.columns:
        return float(2 * np.median(shapes["radius"])), "circle"
    polygons = shapes.geometry
    area = float(np.median(polygons.area))
    if area <= 0:
        return None, "circle"
    bounds = polygons.bounds
    boxes = (bounds["maxx"] - bounds["minx"]) * (bounds["maxy"] - bounds["miny"])
    if np.allclose(polygons.area, boxes, rtol=1e-6):  # axis-aligned squares: bins
        return float(np.sqrt(area)), "square"
    return float(2 * np.sqrt(area / np.pi)), "circle"


CELL_ELEMENTS = ("cell_boundaries", "cell_circles", "cells")


def _link_table(sdata, table: ad.AnnData) -> str | None:
    """Make ``table`` annotate an element that is in ``sdata`` (in place); returns a notice when it was relinked.

    spatialdata-io's Xenium reader links its table to 'cell_labels' even when that raster is not
    read; viewers then cannot colour cells by the table. The table is linked to the cell shapes
    whose index holds its cell ids (outlines first, then circles).
    """
    attrs = table.uns.get("spatialdata_attrs", {})
    region = attrs.get("region")
    regions = [region] if isinstance(region, str) else list(region or [])
    present = set(sdata.shapes) | set(sdata.labels) | set(sdata.points)
    if regions and all(r in present for r in regions):
        return None
    names = [n for n in CELL_ELEMENTS if n in sdata.shapes] + sorted(n for n in sdata.shapes if n not in CELL_ELEMENTS)
    keys = [k for k in (attrs.get("instance_key"), "cell_id") if k and k in table.obs] + [
        str(c) for c in table.obs.columns if table.obs[c].dtype == object]
    for name in names:
        index = sdata.shapes[name].index
        known = set(index.astype(str))
        for key in dict.fromkeys(keys):
            ids = table.obs[key].astype(str)
            if len(ids) and ids.isin(known).all():
                region_key = attrs.get("region_key") or "region"
                table.obs[key] = ids.to_numpy() if index.dtype == object else ids.astype(index.dtype).to_numpy()
                table.obs[region_key] = pd.Categorical([name] * table.n_obs)
                table.uns["spatialdata_attrs"] = {"region": name, "region_key": region_key, "instance_key": key}
                return (f"The table annotated {regions or 'nothing'}, not in the store; it now annotates "
                        f"'{name}' (by {key}).")
    return None


def _read_spatialdata(path: Path) -> Slide:
    import spatialdata

    return _from_spatialdata(spatialdata.read_zarr(path), path)


def _from_spatialdata(sdata, path: Path) -> Slide:
    table_name, notices = None, []
    if sdata.tables:
        table_name = "fmscope_table" if "fmscope_table" in sdata.tables else next(iter(sdata.tables))
        adata = sdata.tables[table_name].copy()
        notice = _link_table(sdata, adata)
        if notice:
            notices.append(notice)
        if "spatial" not in adata.obsm and {"x", "y"} <= set(adata.obs.columns):
            adata.obsm["spatial"] = adata.obs[["x", "y"]].to_numpy(float)
        shapes = _annotated_shapes(sdata, adata)
    else:
        adata = _aggregate_transcripts(sdata, path)
        shapes = sdata.shapes[adata.uns["fmscope"]["built_from"].split(" counted in ")[-1]]
    levels, affine = _spatialdata_image(sdata)
    microns_per_pixel = None if affine is None else float(np.sqrt(abs(np.linalg.det(affine[:2, :2]))))
    size, shape = _cell_size(shapes)
    slide = Slide(adata, levels[0] if levels else None, microns_per_pixel, size, str(path),
                  levels, sdata, table_name, spot_shape=shape, image_affine_um=affine)
    slide.notices += notices
    return slide


def _read_with_spatialdata_io(path: Path, technology: str) -> Slide:
    import spatialdata_io

    if technology == "xenium":
        # Segmentation rasters are not needed (boundaries are read as polygons); the morphology
        # image is read when the folder has it (XOA 1.x: one OME-TIFF, 2.0+: a folder of them).
        focus = (path / "morphology_focus.ome.tif").is_file() or (path / "morphology_focus").is_dir()
        sdata = spatialdata_io.xenium(path, cells_labels=False, nucleus_labels=False, morphology_mip=False,
                                      morphology_focus=focus, aligned_images=False, cells_as_circles=False)
    else:
        sdata = spatialdata_io.merscope(path)
    return _from_spatialdata(sdata, path)


def _read_any(path: Path) -> Slide:
    if path.is_dir() and (path / "binned_outputs").is_dir():
        return _read_visium_hd(_visium_hd_level(path))
    if path.is_dir() and (path / "filtered_feature_bc_matrix.h5").is_file():
        return _read_visium_hd(path) if _is_visium_hd(path) else _read_visium(path)
    if path.is_dir() and (path / "experiment.xenium").is_file():
        return _read_with_spatialdata_io(path, "xenium")
    if path.is_dir() and (path / "cell_by_gene.csv").is_file():
        return _read_with_spatialdata_io(path, "merscope")
    if path.suffix == ".zarr" or (path / ".zgroup").exists() or (path / "zarr.json").exists():
        return _read_spatialdata(path)
    if path.suffix == ".h5ad":
        return Slide(ad.read_h5ad(path), source=str(path))
    raise FmscopeError(f"{path} is not a slide fmscope can read.",
                       "Give an .h5ad with obsm['spatial'], a Visium / Visium HD (square_NNNum), Xenium or "
                       "MERSCOPE output folder, or a SpatialData .zarr.")


def read_slide(path: str | os.PathLike, microns_per_unit: float | None = None, layer: str | None = None) -> Slide:
    """Read a slide (h5ad, Visium / Visium HD / Xenium / MERSCOPE folder, SpatialData zarr) into a validated :class:`Slide`.

    ``microns_per_unit`` gives the units of an .h5ad's ``obsm["spatial"]`` when the file does not
    (``uns["fmscope"]["microns_per_unit"]``); coordinates without units are refused. ``layer``
    names where the counts are (a layer, ``"raw"`` or ``"X"``); by default they are found
    (:func:`fmscope.omics.expression.counts_view`); what was assumed is in ``slide.notices``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FmscopeError(f"No such file or folder: {path}", "Check the path.")
    try:
        slide = _read_any(path)
    except FmscopeError:
        raise
    except Exception as error:
        raise FmscopeError(f"Cannot read {path} ({type(error).__name__}: {str(error)[:200]}).",
                           "Check the file is complete and of a supported kind.") from None
    view = counts_view(slide.adata, layer, str(path))
    if view.changed:
        slide.user_table, slide.adata = slide.adata, view.adata
    slide.notices += view.notices
    slide.adata = _validate(slide.adata, str(path))
    if path.suffix == ".h5ad":
        units = microns_per_unit
        if units is None:
            units = slide.adata.uns.get("fmscope", {}).get("microns_per_unit")
            units = None if units is None else float(units)
        if units is None or not units > 0:
            raise FmscopeError(f"{path}: the coordinates in obsm['spatial'] have no units.",
                               "Say how many microns one unit is: --microns-per-unit 1 if they are microns "
                               "(or set uns['fmscope']['microns_per_unit'] in the file).")
        slide.adata.obsm["spatial"] = np.asarray(slide.adata.obsm["spatial"], dtype=float)[:, :2] * units
        slide.adata.uns["fmscope"] = {**slide.adata.uns.get("fmscope", {}), "microns_per_unit": 1.0}
    return slide


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike) -> None:
    """Write ``adata`` to ``path`` atomically (a failed write leaves nothing under that name)."""
    atomic_write(path, lambda temporary: adata.write_h5ad(temporary))
