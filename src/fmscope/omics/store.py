"""Results back into SpatialData: a new zarr store holding the user's elements and fmscope's table.

A slide read from SpatialData keeps every element it had (images, shapes, points, labels, other
tables); its table is written again with fmscope's columns added (``obs`` / ``obsm``). A slide
from a Visium folder or an .h5ad becomes a SpatialData with, in the coordinate system
``microns``: the tissue image (scaled to microns, a pyramid when large), the cells or spots as
circles of their true size (Visium HD bins as squares of their true side), and the table
annotating them. The table written is the user's (its X, genes and layers) with fmscope's
columns, even when fmscope computed on counts taken from a layer. The store is written beside the
target and renamed into place (:func:`fmscope.atomic.atomic_write`) with fmscope's stamp
(:mod:`fmscope.omics.output_stamp`); writing over the input, or over a store or .h5ad fmscope did not
write or that changed since (:mod:`fmscope.output_owner`), is refused. A table read in other units than
microns (a spatialdata-io Visium store, a scanpy / squidpy Visium .h5ad: full-resolution pixels) gets its
coordinates back in those units, as its elements and the ``uns["spatial"]`` scale factors it carries are
(scanpy's ``sc.pl.spatial`` multiplies one by the other), with the units in ``uns["fmscope"]["microns_per_unit"]``;
the same for an .h5ad written from any slide, and in a built store for a table carrying such scale factors
(its circles then in those units too, with their transformation to ``microns``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from fmscope.atomic import atomic_write
from fmscope.omics.io import Slide
from fmscope.omics.legal_keys import legal_keys
from fmscope.omics.output_stamp import STAMP, stamp, stamp_h5ad, store_elements
from fmscope.outputs import SLIDE_SUFFIXES, Output, check_outputs

MICRONS = "microns"
SPOTS = "fmscope_spots"
TABLE = "fmscope_table"
PYRAMID_ABOVE_PX = 4096


def _spot_shapes(slide: Slide, transformations: dict, xy: np.ndarray | None = None):
    """The slide's cells / spots at ``xy`` (default ``obsm["spatial"]``, microns): circles of their diameter,
    or squares of their side (Visium HD bins), indexed 0..n-1; sizes in the units of ``xy``."""
    from spatialdata.models import ShapesModel

    scale = 1.0 if xy is None or slide.units is None or slide.file_spatial is None else slide.units.scale
    xy = np.asarray(slide.adata.obsm["spatial"] if xy is None else xy, dtype=float)[:, :2]
    size = slide.cell_diameter_um / scale
    index = pd.RangeIndex(len(xy))
    if slide.spot_shape == "square":
        import geopandas
        import shapely

        squares = shapely.box(xy[:, 0] - size / 2, xy[:, 1] - size / 2, xy[:, 0] + size / 2, xy[:, 1] + size / 2)
        return ShapesModel.parse(geopandas.GeoDataFrame(geometry=squares, index=index), transformations=transformations)
    return ShapesModel.parse(
        xy, geometry=0, radius=np.full(len(xy), size / 2), index=index, transformations=transformations
    )


def _annotate_spots(adata, region: str = SPOTS):
    """``adata`` as a table annotating the ``region`` shapes made by :func:`_spot_shapes` (row i: shape i)."""
    from spatialdata.models import TableModel

    adata.obs["fmscope_region"] = pd.Categorical([region] * adata.n_obs)
    adata.obs["fmscope_instance"] = np.arange(adata.n_obs)
    adata.uns.pop("spatialdata_attrs", None)
    return TableModel.parse(adata, region=region, region_key="fmscope_region", instance_key="fmscope_instance")


def _built_spatialdata(slide: Slide, result):
    """A new SpatialData for a slide that did not come from one, ``result`` its table."""
    import spatialdata
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Affine, Identity, Scale

    adata = result.copy()
    to_microns, xy = Identity(), None
    if slide.file_spatial is not None and slide.units is not None and _has_scale_factors(adata):
        adata = _in_file_units(slide, adata)  # coordinates beside the scale factors that map them onto images
        xy = adata.obsm["spatial"]
        to_microns = Affine(slide.units.to_microns, input_axes=("x", "y"), output_axes=("x", "y"))
    shapes = _spot_shapes(slide, {MICRONS: to_microns}, xy)
    table = _annotate_spots(adata)
    images = {}
    if slide.image is not None and slide.image_microns_per_pixel:
        image = np.asarray(slide.image)
        cyx = image.transpose(2, 0, 1) if image.ndim == 3 else image[None]
        pyramid = [2, 2, 2] if max(cyx.shape[1:]) > PYRAMID_ABOVE_PX else None
        scale = Scale([slide.image_microns_per_pixel] * 2, axes=("y", "x"))
        images["tissue"] = Image2DModel.parse(
            cyx, dims=("c", "y", "x"), scale_factors=pyramid, transformations={MICRONS: scale}
        )
    return spatialdata.SpatialData(images=images, shapes={SPOTS: shapes}, tables={TABLE: table})


def _has_scale_factors(table) -> bool:
    """Whether ``table`` carries Space Ranger scale factors (scanpy / squidpy ``uns["spatial"][lib]["scalefactors"]``),
    which scanpy multiplies with ``obsm["spatial"]``: then its coordinates stay in the units those factors assume."""
    libraries = table.uns.get("spatial")
    return isinstance(libraries, dict) and any(
        isinstance(lib, dict) and isinstance(lib.get("scalefactors"), dict) for lib in libraries.values()
    )


def _updated_spatialdata(slide: Slide, result):
    """The slide's own SpatialData with its table replaced by the annotated one ``result`` (or fmscope's table
    added)."""
    import spatialdata
    from spatialdata.models import TableModel

    source = slide.sdata
    tables, shapes = dict(source.tables), dict(source.shapes)
    if slide.table_name is not None:
        table = _in_file_units(slide, result)
        region = table.uns.get("spatialdata_attrs", {}).get("region")
        regions = [region] if isinstance(region, str) else list(region or [])
        present = set(source.shapes) | set(source.labels) | set(source.points)
        if not regions or not set(regions) <= present:  # e.g. MERSCOPE read without its boundaries
            shapes[SPOTS] = _spot_shapes(slide, _transformations_of(source), table.obsm["spatial"])
            table = _annotate_spots(table.copy())
        tables[slide.table_name] = table
    else:  # built from transcripts in cell shapes: annotate those shapes
        adata = _in_file_units(slide, result)
        region = adata.uns["fmscope"]["built_from"].split(" counted in ")[-1]
        index = source.shapes[region].index
        adata.obs["fmscope_region"] = pd.Categorical([region] * adata.n_obs)
        adata.obs["fmscope_instance"] = np.asarray(adata.obs_names).astype(index.dtype)
        tables[TABLE] = TableModel.parse(
            adata, region=region, region_key="fmscope_region", instance_key="fmscope_instance"
        )
    return spatialdata.SpatialData(
        images=dict(source.images),
        labels=dict(source.labels),
        points=dict(source.points),
        shapes=shapes,
        tables=tables,
        attrs={k: v for k, v in dict(source.attrs or {}).items() if k != STAMP},
    )


def _in_file_units(slide: Slide, table):
    """A copy of ``table`` with ``obsm["spatial"]`` in the store's own units (those of its elements), which
    ``uns["fmscope"]["microns_per_unit"]`` then states."""
    table = table.copy()
    if slide.file_spatial is not None and slide.units is not None:
        table.obsm["spatial"] = slide.file_spatial
        table.uns["fmscope"] = {**(table.uns.get("fmscope") or {}), "microns_per_unit": slide.units.scale}
    return table


def _transformations_of(sdata) -> dict:
    """The transformations of the store's first points or shapes element (intrinsic units: microns), else microns."""
    from spatialdata.transformations import Identity, get_transformation

    for element in [*sdata.points.values(), *sdata.shapes.values()]:
        return dict(get_transformation(element, get_all=True))
    return {MICRONS: Identity()}


def to_spatialdata(slide: Slide):
    """The SpatialData object fmscope writes for ``slide`` (its elements + the annotated table, whose keys
    spatialdata refuses renamed: :func:`legal_keys`), and the notes saying what was renamed."""
    result, notes = legal_keys(slide.result_table(), store=True)
    build = _updated_spatialdata if slide.sdata is not None else _built_spatialdata
    return build(slide, result), notes


def write_result(slide: Slide, path: str | os.PathLike) -> list[str]:
    """Write the slide with its results: a SpatialData ``.zarr`` store, or an ``.h5ad`` of the table. Names
    holding '/' (cell types, genes) where the file cannot hold them as keys are written with '_', the originals
    kept in the table (:mod:`fmscope.omics.legal_keys`); returns the notes saying so (empty when none)."""
    path = Path(path)
    check_outputs([Output("output", path, SLIDE_SUFFIXES)], [slide.source or None])
    if path.suffix == ".h5ad":
        table, notes = legal_keys(_in_file_units(slide, slide.result_table()), store=False)

        def write_stamped(temporary: Path) -> None:
            table.write_h5ad(temporary)
            stamp_h5ad(temporary)

        atomic_write(path, write_stamped)
        return notes
    sdata, notes = to_spatialdata(slide)
    notes += _make_writable(sdata)
    sdata.attrs[STAMP] = stamp(store_elements(sdata))
    atomic_write(path, lambda temporary: sdata.write(temporary))
    return notes


def _make_writable(sdata) -> list[str]:
    """anndata cannot write object columns mixing types; make such obs columns strings. An obs index
    named like a column (MERSCOPE's EntityID) is unnamed, or spatialdata's joins (get_values) fail. Keys
    spatialdata or zarr refuse ('/', spaces ...) are renamed on a copy of the table (:func:`legal_keys`);
    returns the notes."""
    notes = []
    for name in list(sdata.tables):
        table, renamed = legal_keys(sdata.tables[name], store=True)
        if renamed:
            sdata.tables[name] = table
            notes += [f"table '{name}': {line}" if len(sdata.tables) > 1 else line for line in renamed]
    for table in sdata.tables.values():
        if table.obs.index.name in table.obs.columns:
            table.obs.index.name = None
        for column in table.obs.columns:
            if table.obs[column].dtype == object:
                table.obs[column] = table.obs[column].astype(str)
    return notes
