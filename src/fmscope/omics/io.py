"""Reading slides into one view, and writing results back without touching the user's data.

A :class:`Slide` is an AnnData of counts (cells, spots or bins x genes) with coordinates in
microns in ``obsm["spatial"]``, plus the tissue image and its pixel size when present.
Readers: AnnData ``.h5ad`` with ``obsm["spatial"]`` and its units (``uns["fmscope"]
["microns_per_unit"]``, or ``microns_per_unit=`` / ``--microns-per-unit``), 10x Visium output
folders (read directly: ``filtered_feature_bc_matrix.h5``, a sample-prefixed one or the MEX folder
(:mod:`fmscope.omics.visium_counts`), + ``spatial/`` or GEO's flat prefixed copies of its files:
:mod:`fmscope.omics.visium_spatial`), Visium HD binned
outputs (``binned_outputs/square_NNNum``: parquet positions, microns per pixel and bin size
from the scale factors; bins are squares), Xenium (XOA 1.x to 3.x) and MERSCOPE output folders
(through spatialdata-io), and SpatialData zarr (its table, fmscope's own first, with the image
and its microns per pixel). A table that annotates an element missing from the store is linked
to the cell outlines it describes. Whatever the file, the counts are found
(:mod:`fmscope.omics.expression`) and the user's table is kept for writing back.

This is the one reader of slides (CLI, napari reader and widgets, image-expression, batch jobs). Each
format's variants (docs/formats.md) are read here: Visium positions told by their first line, coordinates
in the units the file states (:mod:`fmscope.omics.units`: a micron coordinate system, Space Ranger scale
factors or spot grid, ``uns["fmscope"]``; spatialdata-io Visium stores are in pixels), tissue images in
any channel layout (:mod:`fmscope.omics.tissue_image`); sections are told apart where neighbours are used
(:mod:`fmscope.omics.sections`); Visium ``spatial/`` files gzipped or not; an AnnData zarr read as its .h5ad twin
(:func:`read_anndata`); a Visium table's ``obsm['spatial']`` written (y, x) swapped back on unambiguous evidence
(:mod:`fmscope.omics.visium_axes`); MERSCOPE counts and centres joined by cell id (:mod:`fmscope.omics.merscope_files`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmscope.errors import FmscopeError
from fmscope.omics import merscope_files, visium_axes, visium_counts, visium_spatial, xenium_files
from fmscope.omics import units as unit_rules
from fmscope.omics.element_coordinates import annotated_element, element_coordinates
from fmscope.omics.expression import counts_view
from fmscope.omics.plane import plane_coordinates
from fmscope.omics.raster import CellGrid
from fmscope.omics.reserved_columns import make_writable
from fmscope.omics.spatial_columns import read_named_columns
from fmscope.omics.units import Units, resolve, stated_microns_per_unit, visium_units
from fmscope.omics.visium_spatial import SpatialFiles

VISIUM_SPOT_DIAMETER_UM = 55.0
DEFAULT_CELL_DIAMETER_UM = 10.0  # drawn size of cells when the slide does not give one
MICRON_SYSTEMS = ("microns", "micron", "micrometer", "micrometers", "um", "µm")


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

    Readers fill these in the file's own units (coordinates, spot size, image placement) with the
    ``units`` the file states (:mod:`fmscope.omics.units`; ``units_unknown`` says why there are none);
    :func:`read_slide` turns them into microns once, keeping the file's coordinates in ``file_spatial``
    (written back into a store in its own units).
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
    units: Units | None = None
    units_unknown: str = ""
    file_spatial: np.ndarray | None = None
    diameter_in_microns: bool = False  # the format fixes the spot size in microns (Visium: 55 um)
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


def _validate(adata: ad.AnnData, source: str, notices: list[str]) -> ad.AnnData:
    """``adata`` checked (coordinates, finite counts, not empty), its coordinates made x, y
    (:func:`plane_coordinates`, said in ``notices``); FmscopeError naming what is wrong."""
    if "spatial" not in adata.obsm:
        raise FmscopeError(
            f"{source} has no coordinates (obsm['spatial']).",
            "Add x/y coordinates in microns to obsm['spatial'], or read the original slide folder.",
        )
    coords = np.asarray(adata.obsm["spatial"], dtype=float)
    if coords.ndim != 2 or coords.shape[1] < 2 or not np.all(np.isfinite(coords[:, :2])):
        raise FmscopeError(f"{source}: obsm['spatial'] must hold finite x, y per cell.", "Fix or drop those cells.")
    if coords.shape[1] > 2:
        adata.obsm["spatial"], notice = plane_coordinates(coords, source)
        notices.append(notice)
    values = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if not np.all(np.isfinite(values)):
        raise FmscopeError(
            f"{source} has NaN or infinite counts.", "Replace them (e.g. with 0) before running fmscope."
        )
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise FmscopeError(f"{source} is empty ({adata.n_obs} cells x {adata.n_vars} genes).", "Check the input.")
    return adata


def _open_text(path: Path):
    """A text file opened for reading (UTF-8, a BOM dropped), gunzipped when it is named ``.gz`` (GEO ships Space
    Ranger's text files gzipped)."""
    return (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8-sig")


def _read_text(path: Path) -> str:
    """A text file's contents (:func:`_open_text`)."""
    with _open_text(path) as handle:
        return handle.read()


def _scale_factors(files: SpatialFiles) -> dict:
    """``scalefactors_json.json`` (or ``.json.gz``) of a sample's spatial files as a dict; FmscopeError naming it
    when absent."""
    found = files.file("scalefactors_json.json")
    if found is None:
        raise FmscopeError(
            f"{files.folder} has no {files.shown('scalefactors_json.json')} (gzipped or not): the tissue image's "
            "scale and the spot size come from it.",
            "Copy spatial/scalefactors_json.json from the Space Ranger output folder beside the positions.",
        )
    return json.loads(_read_text(found))


POSITION_COLUMNS = ["in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]


def _visium_positions(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Spot positions (index: barcode; ``POSITION_COLUMNS``) from either Space Ranger layout, told by its first
    line, not its name: SR 1.x ``tissue_positions_list.csv`` (no header) or SR >= 2 ``tissue_positions.csv``
    (header ``barcode,in_tissue,...``; columns taken by name). A header under the old name (users rename the
    new file back) is read as a header, with a notice."""
    with _open_text(path) as handle:
        first = handle.readline().strip().split(",")
    has_header = len(first) > 1 and not first[1].strip().lstrip("-").isdigit()
    positions = pd.read_csv(path, header=0 if has_header else None, index_col=0, encoding="utf-8-sig")
    notices = []
    if has_header:
        positions.columns = [str(c).strip() for c in positions.columns]
        absent = [c for c in POSITION_COLUMNS if c not in positions.columns]
        if absent:
            raise FmscopeError(
                f"{path} has a header row without the column(s) {', '.join(absent)} "
                f"(it has {', '.join(positions.columns)}).",
                "Give the tissue positions file Space Ranger wrote.",
            )
        positions = positions[POSITION_COLUMNS]
        if path.name.removesuffix(".gz").endswith("tissue_positions_list.csv"):
            notices.append(
                f"{path.name} has a header row (the Space Ranger 2 format under the Space Ranger 1 "
                "name); read by its column names."
            )
    elif positions.shape[1] == len(POSITION_COLUMNS):
        positions.columns = POSITION_COLUMNS
    else:
        raise FmscopeError(
            f"{path} has {positions.shape[1] + 1} columns and no header; Space Ranger writes 6 "
            "(barcode, in_tissue, array_row, array_col, pxl_row_in_fullres, pxl_col_in_fullres).",
            "Give the tissue positions file Space Ranger wrote.",
        )
    return positions, notices


def _visium_counts(folder: Path, positions: pd.DataFrame, positions_name: str) -> tuple[ad.AnnData, list[str]]:
    """Counts of the barcodes that have a position, in that order, with array row / column in obs, from the
    folder's one counts matrix (:mod:`fmscope.omics.visium_counts`: .h5, sample-prefixed .h5 or MEX); notices.
    Barcodes that differ between the two files are refused, naming both (``positions_name``: the positions file)."""
    counts = visium_counts.find_counts(folder)
    adata = visium_counts.read_counts(counts)
    if counts.raw:  # every spot of the capture area: the slide is the spots under tissue, as the filtered matrix
        positions = positions[positions["in_tissue"] == 1]
    positions.index = positions.index.astype(str)
    kept, notices = visium_counts.barcodes_with_position(
        adata.obs_names, positions.index, counts.describe(folder), positions_name, counts.raw
    )
    positions = positions.loc[kept]
    adata = adata[positions.index].copy()
    adata.obs[["array_row", "array_col"]] = positions[["array_row", "array_col"]].to_numpy()
    return adata, visium_counts.notice(counts, folder) + notices


def _read_visium(folder: Path) -> Slide:
    files = visium_spatial.find_spatial(folder)
    positions_file = files.file("tissue_positions.csv") or files.file("tissue_positions_list.csv")
    if positions_file is None:
        raise FmscopeError(
            f"{folder} has no {files.shown('tissue_positions(_list).csv')} (gzipped or not).",
            "Give the Space Ranger output folder.",
        )
    positions, notices = _visium_positions(positions_file)
    if files.flat:
        notices.append(
            f"No spatial/ folder in {folder.name}: spot positions read from {positions_file.name} and the sample's "
            f"other files starting '{files.prefix}' beside the counts (GEO's layout)."
        )
    positions_name = positions_file.name if files.flat else f"spatial/{positions_file.name}"
    adata, counts_notices = _visium_counts(folder, positions, positions_name)
    notices += counts_notices
    positions = positions.loc[adata.obs_names]
    scale = _scale_factors(files)
    xy = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(float)
    adata.obsm["spatial"] = xy
    units = visium_units(
        scale, positions["array_row"].to_numpy(), positions["array_col"].to_numpy(), xy, where="Space Ranger "
    )
    image, placement, image_notices = visium_spatial.read_tissue_image(files, scale)
    return Slide(
        adata,
        image,
        None,
        VISIUM_SPOT_DIAMETER_UM,
        str(folder),
        notices=notices + image_notices,
        image_affine_um=placement,
        units=units,
        units_unknown="Visium full-resolution pixels without scale factors",
        diameter_in_microns=True,
    )


HD_BINS = re.compile(r"^square_(\d{3})um$")
HD_BARCODE = re.compile(r"^s_(\d{3})um_\d+_\d+")


def _is_visium_hd(folder: Path) -> bool:
    """A Visium HD bin folder: named square_NNNum, parquet positions, a bin size in its scale
    factors, or HD barcodes (s_016um_...) in a positions csv written from the parquet."""
    files = SpatialFiles(folder / "spatial")
    if HD_BINS.match(folder.name) or (files.folder / "tissue_positions.parquet").is_file():
        return True
    scale_file = files.file("scalefactors_json.json")
    if scale_file is not None and "bin_size_um" in json.loads(_read_text(scale_file)):
        return True
    csv = files.file("tissue_positions.csv")
    return csv is not None and bool(HD_BARCODE.match(str(pd.read_csv(csv, nrows=1).iloc[0, 0])))


def _read_visium_hd(folder: Path) -> Slide:
    """One Visium HD bin level (``binned_outputs/square_NNNum``): bins as squares of their true size, in microns."""
    files = SpatialFiles(folder / "spatial")
    scale_file = files.file("scalefactors_json.json")
    if scale_file is None:
        raise FmscopeError(
            f"{folder} is a Visium HD bin folder without spatial/scalefactors_json.json.",
            "Give the square_NNNum folder as Space Ranger wrote it.",
        )
    scale = json.loads(_read_text(scale_file))
    named = HD_BINS.match(folder.name)
    bin_um = float(scale.get("bin_size_um") or (named and named.group(1)) or 0)
    microns_per_px = float(scale.get("microns_per_pixel") or 0) or (
        bin_um / float(scale["spot_diameter_fullres"]) if bin_um and scale.get("spot_diameter_fullres") else 0
    )
    if not bin_um or not microns_per_px:
        raise FmscopeError(
            f"{scale_file} gives neither the Visium HD bin size (bin_size_um) nor microns_per_pixel.",
            "Use the scalefactors_json.json Space Ranger wrote into the bin folder.",
        )
    parquet, csv = files.folder / "tissue_positions.parquet", files.file("tissue_positions.csv")
    if parquet.is_file():
        positions = pd.read_parquet(parquet)
    elif csv is not None:
        positions = pd.read_csv(csv)
    else:
        raise FmscopeError(
            f"{folder} (Visium HD bins) has no spatial/tissue_positions.parquet.",
            "Give the square_NNNum folder as Space Ranger wrote it.",
        )
    positions = positions.set_index("barcode")
    adata, counts_notices = _visium_counts(folder, positions, f"spatial/{(parquet if parquet.is_file() else csv).name}")
    positions = positions.loc[adata.obs_names]
    adata.obsm["spatial"] = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(float)
    image, placement, image_notices = visium_spatial.read_tissue_image(files, scale)
    slide = Slide(
        adata,
        image,
        None,
        bin_um / microns_per_px,
        str(folder),
        spot_shape="square",
        image_affine_um=placement,
        units=Units.scaled(microns_per_px, "the Visium HD scale factors"),
    )
    slide.notices += counts_notices + [
        f"Visium HD bins of {bin_um:g} um, {microns_per_px:.4g} um per full-resolution pixel (from the scale factors)."
    ]
    slide.notices += image_notices
    return slide


def _visium_hd_level(outs: Path) -> Path:
    """The one bin level under a Visium HD ``outs`` folder; several: refuse, listing them."""
    levels = sorted(p for p in (outs / "binned_outputs").iterdir() if p.is_dir() and HD_BINS.match(p.name))
    if len(levels) == 1:
        return levels[0]
    listed = ", ".join(str(p) for p in levels) or "none"
    raise FmscopeError(
        f"{outs} is a Visium HD output with {len(levels)} bin levels ({listed}).",
        "Give the bin folder to read, e.g. binned_outputs/square_008um (8 um bins, 10x's "
        "recommendation for analysis); 2 um bins are millions of rows.",
    )


GENE_COLUMNS = ("feature_name", "gene", "target", "genes")
CELL_SHAPES = ("cell_boundaries", "cell_circles", "cells")


def _aggregate_transcripts(sdata, path: Path) -> ad.AnnData:
    """Counts per cell from transcripts (points) inside cell boundaries (shapes), with centroids."""
    import spatialdata

    points = next(
        ((name, element) for name, element in sdata.points.items() if any(c in element.columns for c in GENE_COLUMNS)),
        None,
    )
    shapes_name = next((name for name in CELL_SHAPES if name in sdata.shapes), None)
    if points is None or shapes_name is None:
        raise FmscopeError(
            f"{path} has no table, and no transcripts + cell boundaries to build one from.",
            "Give a SpatialData zarr with a cells table, or with points (gene per transcript) and cell shapes.",
        )
    gene_column = next(c for c in GENE_COLUMNS if c in points[1].columns)
    shapes = sdata.shapes[shapes_name]
    system = next(iter(spatialdata.transformations.get_transformation(shapes, get_all=True)))
    table = spatialdata.aggregate(
        values=points[1], by=shapes, value_key=gene_column, agg_func="count", target_coordinate_system=system
    ).tables["table"]
    centroids = shapes.geometry.centroid.loc[table.obs["instance_id"].to_numpy()]
    adata = ad.AnnData(X=sp.csr_matrix(table.X, dtype=np.float32), var=pd.DataFrame(index=table.var_names))
    adata.obs_names = [str(i) for i in table.obs["instance_id"]]
    adata.obsm["spatial"] = np.c_[centroids.x.to_numpy(), centroids.y.to_numpy()]
    adata.uns["fmscope"] = {
        "built_from": f"{points[0]} counted in {shapes_name}",
        "coordinate_units": "intrinsic units of the shapes (Xenium: microns)",
    }
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
        levels.append(data[:3].transpose(1, 2, 0) if data.shape[0] in (3, 4) else data[0])  # lazy: no tissue_image()
    return levels


def _yx_affine(element, system: str) -> np.ndarray:
    """3x3 matrix from the element's intrinsic (y, x, 1) to ``system``'s (y, x, 1)."""
    from spatialdata.transformations import get_transformation

    return get_transformation(element, to_coordinate_system=system).to_affine_matrix(
        input_axes=("y", "x"), output_axes=("y", "x")
    )


def _spatialdata_image(sdata, element) -> tuple[list | None, np.ndarray | None]:
    """The levels of the first image placed with ``element`` (the table's cells), and its pixel -> ``element``
    intrinsic units affine (y, x) through a coordinate system they share (offset, rotation and scale kept);
    images sharing none with it are placed through other shapes or points. (None, None) without an image."""
    from spatialdata.transformations import get_transformation

    others = [e for e in (element, *sdata.shapes.values(), *sdata.points.values()) if e is not None]
    for other in others:
        for image in sdata.images.values():
            shared = set(get_transformation(image, get_all=True)) & set(get_transformation(other, get_all=True))
            if shared:
                system = sorted(shared)[0]
                return _image_levels(image), np.linalg.inv(_yx_affine(other, system)) @ _yx_affine(image, system)
    return None, None


def _table_units(adata: ad.AnnData, where: str) -> Units | None:
    """Units a table states: ``uns["fmscope"]["microns_per_unit"]``, else Space Ranger scale factors in
    ``uns["spatial"]`` (scanpy / squidpy / spatialdata-io Visium layout: full-resolution pixels)."""
    stated = (adata.uns.get("fmscope") or {}).get("microns_per_unit")
    if stated is not None:
        return Units.scaled(stated_microns_per_unit(stated, where), f"uns['fmscope']['microns_per_unit'] in {where}")
    libraries = adata.uns.get("spatial")
    factors = (
        [
            lib["scalefactors"]
            for lib in libraries.values()
            if isinstance(lib, dict) and isinstance(lib.get("scalefactors"), dict)
        ]
        if isinstance(libraries, dict)
        else []
    )
    if not factors or "spatial" not in adata.obsm:
        return None
    grid = {"array_row", "array_col"} <= set(adata.obs.columns)
    from fmscope.omics.sections import sections

    found = sections(adata)
    return visium_units(
        dict(factors[0]),
        adata.obs["array_row"].to_numpy() if grid else None,
        adata.obs["array_col"].to_numpy() if grid else None,
        np.asarray(adata.obsm["spatial"], float)[:, :2] if grid else None,
        None if found is None else found[1],
        where=f"{where}'s Visium ",
    )


HD_BIN_NAME = re.compile(r"square_(\d{3})um")


def _visium_store_units(adata: ad.AnnData, element) -> Units | None:
    """Microns per full-resolution pixel of a spatialdata-io Visium / Visium HD store (its coordinates are
    pixels and it keeps no scale factors): the bin size in the element's name over the bins' side in pixels
    (HD), else the spot grid of the table's array_row / array_col, else the 65 um spot the circles span."""
    region = (adata.uns.get("spatialdata_attrs") or {}).get("region")
    named = HD_BIN_NAME.search(str(region))
    size, _ = _cell_size(element)
    if named and size:
        return Units.scaled(
            float(named.group(1)) / size, f"the {named.group(0)} bins of the store, {size:.4g} px across"
        )
    grid = {"array_row", "array_col"} <= set(adata.obs.columns) and "spatial" in adata.obsm
    from fmscope.omics.sections import sections

    found = sections(adata)
    return visium_units(
        {"spot_diameter_fullres": size} if size else {},
        adata.obs["array_row"].to_numpy() if grid else None,
        adata.obs["array_col"].to_numpy() if grid else None,
        np.asarray(adata.obsm["spatial"], float)[:, :2] if grid else None,
        None if found is None else found[1],
        where="the store's ",
    )


def _store_units(sdata, adata: ad.AnnData, element, technology: str | None) -> Units | None:
    """The units of a store's table coordinates (the intrinsic units of the element it annotates): a micron
    coordinate system of that element, then the table's own (:func:`_table_units`), then the technology
    (Xenium and MERSCOPE write microns); a store of transcripts that says nothing is assumed in microns."""
    from spatialdata.transformations import get_transformation

    if element is not None:
        for system, transformation in get_transformation(element, get_all=True).items():
            if system.lower() in MICRON_SYSTEMS:
                matrix = transformation.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
                return Units(np.asarray(matrix, float), f"the store's '{system}' coordinate system")
    units = _table_units(adata, "the table")
    if units is not None:
        return units
    technology = technology or (getattr(sdata, "attrs", None) or {}).get("spatialdata_io_reader")
    if technology in ("visium", "visium_hd") or any(
        system.endswith(("_downscaled_hires", "_downscaled_lowres")) for system in sdata.coordinate_systems
    ):
        return _visium_store_units(adata, element)
    if technology in ("xenium", "merscope"):
        return Units.scaled(1.0, f"{technology.capitalize()} coordinates are microns")
    if any(any(c in points.columns for c in GENE_COLUMNS) for points in sdata.points.values()):
        return Units.scaled(1.0, "a store of transcripts, in microns as Xenium and MERSCOPE write them", stated=False)
    return None


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
        str(c) for c in table.obs.columns if table.obs[c].dtype == object
    ]
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
                return (
                    f"The table annotated {regions or 'nothing'}, not in the store; it now annotates "
                    f"'{name}' (by {key})."
                )
    return None


def _read_spatialdata(path: Path) -> Slide:
    import spatialdata

    return _from_spatialdata(spatialdata.read_zarr(path), path)


def _from_spatialdata(sdata, path: Path, technology: str | None = None) -> Slide:
    table_name, notices = None, []
    if sdata.tables:
        if "fmscope_table" not in sdata.tables and len(sdata.tables) > 1:
            raise FmscopeError(
                f"{path} holds {len(sdata.tables)} tables ({', '.join(sdata.tables)}); fmscope reads "
                "one table of cells per slide and will not guess which (e.g. Visium HD bin levels).",
                "Write the table to analyse, with the elements it annotates, to a store of its own "
                "(sdata.subset([...]).write(...)).",
            )
        table_name = "fmscope_table" if "fmscope_table" in sdata.tables else next(iter(sdata.tables))
        adata = sdata.tables[table_name].copy()
        notices += read_named_columns(adata, f"{path.name}'s table '{table_name}'")
        notice = _link_table(sdata, adata)
        if notice:
            notices.append(notice)
        if "spatial" not in adata.obsm and {"x", "y"} <= set(adata.obs.columns):  # z too: judged by _validate
            adata.obsm["spatial"] = adata.obs[["x", "y", "z"] if "z" in adata.obs else ["x", "y"]].to_numpy(float)
        shapes = _annotated_shapes(sdata, adata)
        if "spatial" not in adata.obsm and (found := element_coordinates(sdata, adata)) is not None:
            adata.obsm["spatial"], taken = found  # in the element's intrinsic units, as obsm['spatial'] would be
            notices.append(f"The table has no obsm['spatial']: its cells are at the {taken}.")
            shapes = shapes if shapes is not None else annotated_element(sdata, adata)[1]  # labels: units, image
    else:
        adata = _aggregate_transcripts(sdata, path)
        shapes = sdata.shapes[adata.uns["fmscope"]["built_from"].split(" counted in ")[-1]]
    levels, affine = _spatialdata_image(sdata, shapes)
    size, shape = _cell_size(shapes) if shapes is None or hasattr(shapes, "geometry") else (None, "circle")
    slide = Slide(
        adata,
        levels[0] if levels else None,
        None,
        size,
        str(path),
        levels,
        sdata,
        table_name,
        spot_shape=shape,
        image_affine_um=affine,
        units=_store_units(sdata, adata, shapes, technology),
        units_unknown="no micron coordinate system, scale factors or uns['fmscope']['microns_per_unit']",
    )
    slide.notices += notices
    return slide


def _read_with_spatialdata_io(path: Path, technology: str) -> Slide:
    import spatialdata_io

    notices = []
    if technology == "xenium":
        # Segmentation rasters are not needed (boundaries are read as polygons); the morphology
        # image is read when the folder has it (XOA 1.x: one OME-TIFF, 2.0+: a folder of them); the
        # transcripts and outlines when the folder has them (shared copies leave them out: xenium_files).
        options, notices = xenium_files.reader_options(path)
        focus = (path / "morphology_focus.ome.tif").is_file() or (path / "morphology_focus").is_dir()
        sdata = spatialdata_io.xenium(
            path,
            cells_labels=False,
            nucleus_labels=False,
            morphology_mip=False,
            morphology_focus=focus,
            aligned_images=False,
            cells_as_circles=not options["cells_boundaries"],
            **options,
        )
    else:  # the counts and centres joined by cell id (merscope_files): spatialdata-io pairs them by row
        joined = merscope_files.joined_tables(path)
        try:
            sdata = spatialdata_io.merscope(path, vpt_outputs=joined.vpt_outputs)
        finally:
            joined.close()
        notices = joined.notices
    slide = _from_spatialdata(sdata, path, technology)
    slide.notices += notices
    return slide


def is_anndata_zarr(path: Path) -> bool:
    """Whether ``path`` is an AnnData written by ``adata.write_zarr`` (zarr v2 ``.zattrs`` or v3 ``zarr.json``
    root attributes with ``encoding-type: anndata``), not a SpatialData store (whose root names
    ``spatialdata_attrs`` and holds ``tables/``, ``images/`` ...)."""
    for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
        if (path / name).is_file():
            try:
                metadata = json.loads((path / name).read_text())
            except (OSError, ValueError):
                return False
            attributes = metadata.get(key, {}) if key else metadata
            return isinstance(attributes, dict) and attributes.get("encoding-type") == "anndata"
    return False


def read_anndata(path: Path) -> ad.AnnData:
    """An AnnData file: ``.h5ad`` (``anndata.read_h5ad``) or an AnnData zarr folder (``anndata.read_zarr``)."""
    return ad.read_zarr(path) if path.is_dir() and is_anndata_zarr(path) else ad.read_h5ad(path)


def _read_h5ad(path: Path) -> Slide:
    """A slide held in one AnnData, ``.h5ad`` or AnnData zarr (read the same way: :func:`read_anndata`)."""
    adata = read_anndata(path)
    notices = read_named_columns(adata, path.name)  # a DataFrame obsm['spatial'] read by its column names
    notices += visium_axes.check_axes(adata, path.name)  # obsm['spatial'] written (y, x): swapped back, said
    return Slide(
        adata,
        source=str(path),
        notices=notices,
        units=_table_units(adata, path.name),
        units_unknown="no uns['fmscope']['microns_per_unit'] and no Space Ranger scale factors",
    )


def slide_kind(path: str | os.PathLike) -> str | None:
    """What :func:`read_slide` reads ``path`` as, from its name and its folder's file names (nothing is read):
    ``"visium_hd_outs"``, ``"visium"`` (every Visium layout: Space Ranger's, 10x's sample-prefixed .h5, MEX,
    GEO's flat files), ``"xenium"``, ``"merscope"``, ``"anndata_zarr"``, ``"spatialdata"``, ``"h5ad"``; None
    when it is not a slide. The one test every front end uses (the napari slide reader too)."""
    path = Path(path)
    folder = path.is_dir()
    if folder and (path / "binned_outputs").is_dir():
        return "visium_hd_outs"
    if folder and (path / "filtered_feature_bc_matrix.h5").is_file():
        return "visium"
    if folder and (path / "experiment.xenium").is_file():
        return "xenium"
    if folder and (path / "cell_by_gene.csv").is_file():
        return "merscope"
    if folder and is_anndata_zarr(path):  # adata.write_zarr: one AnnData, read as its .h5ad twin
        return "anndata_zarr"
    if path.suffix == ".zarr" or (path / ".zgroup").exists() or (path / "zarr.json").exists():
        return "spatialdata"
    if path.suffix == ".h5ad":
        return "h5ad"
    if visium_spatial.is_visium_folder(path):  # downloaded layouts: prefixed .h5, MEX, packed or flat spatial
        return "visium"
    return None


def _read_any(path: Path) -> Slide:
    kind = slide_kind(path)
    if kind == "visium_hd_outs":
        return _read_visium_hd(_visium_hd_level(path))
    if kind == "visium":
        return _read_visium_hd(path) if _is_visium_hd(path) else _read_visium(path)
    if kind in ("xenium", "merscope"):
        return _read_with_spatialdata_io(path, kind)
    if kind in ("anndata_zarr", "h5ad"):
        return _read_h5ad(path)
    if kind == "spatialdata":
        return _read_spatialdata(path)
    held = f" (it holds {visium_counts.contents(path)})" if path.is_dir() else ""
    raise FmscopeError(
        f"{path} is not a slide fmscope can read{held}.",
        "Give an .h5ad with obsm['spatial'], a Visium / Visium HD (square_NNNum), Xenium or "
        "MERSCOPE output folder, or a SpatialData .zarr.",
    )


def read_slide(path: str | os.PathLike, microns_per_unit: float | None = None, layer: str | None = None) -> Slide:
    """Read a slide (h5ad, Visium / Visium HD / Xenium / MERSCOPE folder, SpatialData zarr) into a validated
    :class:`Slide`.

    ``microns_per_unit`` (``--microns-per-unit``) gives the units of the coordinates, for every kind of
    input, by the rule of :mod:`fmscope.omics.units`: used where the file does not state them, checked
    against them where it does (a disagreement is refused); coordinates without units are refused. ``layer``
    names where the counts are (a layer, ``"raw"`` or ``"X"``); by default they are found
    (:func:`fmscope.omics.expression.counts_view`); what was assumed is in ``slide.notices``. Columns anndata
    reads but will not write (``_index``: :mod:`fmscope.omics.reserved_columns`) are dropped or renamed, said.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FmscopeError(f"No such file or folder: {path}", "Check the path.")
    try:
        slide = _read_any(path)
    except FmscopeError:
        raise
    except Exception as error:
        raise FmscopeError(
            f"Cannot read {path} ({type(error).__name__}: {str(error)[:200]}).",
            "Check the file is complete and of a supported kind.",
        ) from None
    slide.notices += make_writable(slide.adata, path.name)  # SeuratDisk's '_index' columns: written back below
    for name, table in dict(getattr(slide.sdata, "tables", None) or {}).items():
        if name != slide.table_name:
            slide.notices += make_writable(table, f"{path.name}'s table '{name}'")
    view = counts_view(slide.adata, layer, str(path))
    if view.changed:
        slide.user_table, slide.adata = slide.adata, view.adata
    slide.notices += view.notices
    slide.adata = _validate(slide.adata, str(path), slide.notices)
    units, notices = resolve(slide.units, microns_per_unit, str(path), slide.units_unknown)
    slide.notices += notices
    _to_microns(slide, units)
    return slide


def _to_microns(slide: Slide, units: Units) -> None:
    """Coordinates, spot size and image placement from the file's units into microns (in place)."""
    slide.units = units
    if not np.array_equal(units.to_microns, np.eye(3)):  # exactly: 0.99999 um per unit is not 1 (allclose's 1e-5)
        slide.file_spatial = np.asarray(slide.adata.obsm["spatial"]).copy()
        slide.adata.obsm["spatial"] = unit_rules.apply(units, slide.file_spatial)
    if slide.spot_diameter_um is not None and not slide.diameter_in_microns:
        slide.spot_diameter_um *= units.scale
    if slide.image is not None and slide.image_affine_um is not None:
        slide.image_affine_um = unit_rules.yx(units.to_microns) @ slide.image_affine_um
        slide.image_microns_per_pixel = float(np.sqrt(abs(np.linalg.det(slide.image_affine_um[:2, :2]))))
    slide.adata.uns["fmscope"] = {**(slide.adata.uns.get("fmscope") or {}), "microns_per_unit": 1.0}
