"""A spatial-omics slide as napari layer data, all in one coordinate system: microns.

The tissue image is placed by its full pixel -> microns transformation (offset, rotation,
scale; a pyramid when it has levels); cells or spots become Points of their true diameter at their (y, x) in
microns. Above
``POINTS_LIMIT`` cells, per-cell colours go to a raster (a Labels layer for categories, an
Image for values) of about one pixel per cell (:class:`fmscope.omics.raster.CellGrid`), which
napari draws as one texture. Layer tuples are ``(data, kwargs, layer_type)``.
"""

from __future__ import annotations

import numpy as np

from fmscope.names import display_name
from fmscope.omics.io import Slide

SLIDE_KEY = "fmscope_slide"  # layer metadata: the Slide a layer shows
POINTS_LIMIT = 100_000
TRANSCRIPTS_LIMIT = 500_000  # larger transcript sets are not drawn (they stay in the SpatialData store)
BOUNDARIES_LIMIT = 20_000  # cell outlines drawn as Shapes up to this many cells
UNITS = ("um", "um")
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)


def yx_um(slide: Slide) -> np.ndarray:
    """(cells, 2) y, x positions in microns (napari's axis order)."""
    return np.asarray(slide.adata.obsm["spatial"], dtype=float)[:, 1::-1].copy()


def is_large(slide: Slide) -> bool:
    return slide.adata.n_obs > POINTS_LIMIT


def slide_name(slide: Slide) -> str:
    return display_name(slide.source, "slide") if slide.source else "slide"


def sorted_names(values: np.ndarray) -> list[str]:
    """Category names in natural order ('2' before '10')."""
    return sorted({str(v) for v in values}, key=lambda v: (len(v), v) if v.isdigit() else (1_000, v))


def category_colours(names: list[str]) -> dict[str, str]:
    """A fixed colour per category (the legend and the layer use the same)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def placement(matrix: np.ndarray) -> dict:
    """napari layer arguments for a 3x3 (y, x) pixel -> microns affine: scale and translate when the
    pixel axes stay on the microns axes, else the whole affine (rotation, shear, flips kept)."""
    linear = matrix[:2, :2]
    if np.allclose(linear, np.diag(np.diag(linear))) and np.all(np.diag(linear) > 0):
        return {"scale": tuple(np.diag(linear)), "translate": tuple(matrix[:2, 2])}
    return {"affine": matrix}


def image_layer(slide: Slide) -> tuple | None:
    """The tissue image placed in microns by its full transformation, or None when the slide has none."""
    matrix = slide.image_to_microns()
    if matrix is None:
        return None
    levels = slide.image_levels or [slide.image]
    first = levels[0]
    rgb = first.ndim == 3 and first.shape[-1] in (3, 4)
    data = levels if len(levels) > 1 else levels[0]
    return (
        data,
        {
            "name": f"{slide_name(slide)} tissue",
            "rgb": rgb,
            "multiscale": len(levels) > 1,
            **placement(matrix),
            "units": UNITS,
            "metadata": {SLIDE_KEY: slide},
        },
        "image",
    )


def raster_placement(slide: Slide) -> dict:
    """Scale, translate and units that put the slide's cell grid on the cells (pixel centres)."""
    grid = slide.cell_grid()
    half = grid.pixel_um / 2
    return {
        "scale": (grid.pixel_um,) * 2,
        "translate": (grid.origin_um[0] + half, grid.origin_um[1] + half),
        "units": UNITS,
    }


def categorical_layer(slide: Slide, values: np.ndarray, name: str) -> tuple[tuple, dict[str, str]]:
    """Cells coloured by category (Points, or a Labels raster for large slides) and the colours used."""
    values = np.asarray(values).astype(str)
    names = sorted_names(values)
    colours = category_colours(names)
    metadata = {SLIDE_KEY: slide, "fmscope_categories": colours}
    if is_large(slide):
        lookup = {n: i + 1 for i, n in enumerate(names)}
        unique, inverse = np.unique(values, return_inverse=True)
        codes = np.array([lookup[u] for u in unique])[inverse]
        from napari.utils.colormaps import DirectLabelColormap

        colormap = DirectLabelColormap(
            color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), **{lookup[n]: colours[n] for n in names}}
        )
        return (
            slide.cell_grid().labels(codes),
            {"name": name, **raster_placement(slide), "colormap": colormap, "opacity": 0.8, "metadata": metadata},
            "labels",
        ), colours
    face = np.array([colours[v] for v in values])
    return (
        yx_um(slide),
        {
            "name": name,
            "size": slide.cell_diameter_um,
            "face_color": face,
            "border_width": 0,
            "features": {"category": values},
            "units": UNITS,
            "opacity": 0.85,
            "metadata": metadata,
        },
        "points",
    ), colours


def continuous_layer(slide: Slide, values: np.ndarray, name: str, colormap: str = "viridis") -> tuple:
    """Cells coloured by a value (Points with a colour map, or an Image raster for large slides)."""
    values = np.asarray(values, dtype=np.float32)
    finite = values[np.isfinite(values)]
    limits = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    limits = limits if limits[1] > limits[0] else (limits[0], limits[0] + 1.0)
    metadata = {SLIDE_KEY: slide}
    if is_large(slide):
        return (
            slide.cell_grid().values(values),
            {
                "name": name,
                **raster_placement(slide),
                "colormap": colormap,
                "contrast_limits": limits,
                "metadata": metadata,
            },
            "image",
        )
    return (
        yx_um(slide),
        {
            "name": name,
            "size": slide.cell_diameter_um,
            "features": {"value": values},
            "face_color": "value",
            "face_colormap": colormap,
            "face_contrast_limits": limits,
            "border_width": 0,
            "units": UNITS,
            "metadata": metadata,
        },
        "points",
    )


def cells_layer(slide: Slide) -> tuple:
    """Where the cells / spots are (plain colour; a raster of cell counts for large slides)."""
    name = f"{slide_name(slide)} {'spots' if slide.spot_diameter_um and slide.spot_diameter_um > 30 else 'cells'}"
    if is_large(slide):
        grid = slide.cell_grid()
        counts = np.bincount(grid.flat_index, minlength=grid.shape[0] * grid.shape[1]).reshape(grid.shape)
        return (
            counts.astype(np.float32),
            {"name": name, **raster_placement(slide), "colormap": "gray", "metadata": {SLIDE_KEY: slide}},
            "image",
        )
    return (
        yx_um(slide),
        {
            "name": name,
            "size": slide.cell_diameter_um,
            "face_color": "#ffffff55",
            "border_color": "#ffffffaa",
            "border_width": 0.05,
            "units": UNITS,
            "metadata": {SLIDE_KEY: slide},
        },
        "points",
    )


def transcripts_layer(slide: Slide) -> tuple | None:
    """The slide's transcripts (hidden; coloured by gene), when it has up to ``TRANSCRIPTS_LIMIT``.

    Transcript coordinates are the points element's own units, microns in Xenium, MERSCOPE and
    fmscope stores, like the cells'.
    """
    from fmscope.omics.io import GENE_COLUMNS

    if slide.sdata is None:
        return None
    for element in slide.sdata.points.values():
        gene_column = next((c for c in GENE_COLUMNS if c in element.columns), None)
        if gene_column is None or len(element) > TRANSCRIPTS_LIMIT:
            continue
        frame = element[["x", "y", gene_column]].compute()
        return (
            frame[["y", "x"]].to_numpy(float),
            {
                "name": f"{slide_name(slide)} transcripts",
                "size": 1.5,
                "visible": False,
                "border_width": 0,
                "features": {"gene": frame[gene_column].astype(str).to_numpy()},
                "face_color": "gene",
                "units": UNITS,
                "metadata": {SLIDE_KEY: slide},
            },
            "points",
        )
    return None


def boundaries_layer(slide: Slide) -> tuple | None:
    """Cell outlines (polygons of the store's cell boundaries, in microns), when there are not too many."""
    from fmscope.omics.io import CELL_SHAPES

    if slide.sdata is None:
        return None
    for name in CELL_SHAPES:
        shapes = slide.sdata.shapes.get(name)
        if shapes is None or len(shapes) > BOUNDARIES_LIMIT:
            continue
        polygons = [
            np.asarray(geometry.exterior.coords)[:, ::-1]
            for geometry in shapes.geometry
            if geometry is not None and geometry.geom_type == "Polygon"
        ]
        if polygons:
            return (
                polygons,
                {
                    "name": f"{slide_name(slide)} cell boundaries",
                    "shape_type": "polygon",
                    "edge_color": "#ffd700",
                    "face_color": "#00000000",
                    "edge_width": 0.5,
                    "units": UNITS,
                    "metadata": {SLIDE_KEY: slide},
                },
                "shapes",
            )
    return None


def slide_layers(slide: Slide) -> list[tuple]:
    """The tissue image (if any), cell boundaries, the cells / spots and the transcripts (hidden), in microns."""
    candidates = (image_layer(slide), boundaries_layer(slide), cells_layer(slide), transcripts_layer(slide))
    layers = [layer for layer in candidates if layer is not None]
    from fmscope.omics.domains import DOMAIN_KEY

    if DOMAIN_KEY in slide.adata.obs:  # a saved result: show its domains too
        layers.append(categorical_layer(slide, slide.adata.obs[DOMAIN_KEY].to_numpy(), "fmscope domains")[0])
    return layers
