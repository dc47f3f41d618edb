"""Label images as an OME-Zarr (NGFF 0.4) multiscale label image, written chunk by chunk: ``-o labels.ome.zarr``.

The store is a zarr v2 group whose ``multiscales`` lists the levels of a
:class:`~fmscope.imaging.label_pyramid.LabelPyramid` (level k: every 2**k-th pixel of level 0, nearest neighbour, so
label ids never blend; its chunks) with an ``image-label`` entry, so viewers such as napari-ome-zarr
open it as labels at the zoom they need. Only chunks that hold a label are stored (zarr leaves chunks equal to the
fill value 0 out): a 40,000 x 40,000 label image with one object is a few small files. The labels are built from the
crops that hold them (never the whole image in memory) and the store is written atomically
(:func:`fmscope.atomic.atomic_write`). It carries fmscope's stamp (:mod:`fmscope.omics.output_stamp`), and an existing
store is replaced only when fmscope wrote it, unchanged since (:mod:`fmscope.output_owner`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmscope import output_owner
from fmscope.atomic import atomic_write
from fmscope.imaging import picture_geometry
from fmscope.imaging.label_pyramid import LabelPyramid
from fmscope.imaging.tiled_labels import Piece
from fmscope.omics.output_stamp import STAMP, stamp


def _pyramid(shape: tuple[int, int], dtype: np.dtype, pieces: Sequence[Piece]) -> tuple[LabelPyramid, int]:
    """The pieces painted into a LabelPyramid (where pieces overlap the earlier one keeps the pixel; clipped to the
    image), and the number of labelled pixels."""
    pyramid = LabelPyramid(shape, dtype)
    for y0, x0, labels in pieces:
        top, left = max(0, y0), max(0, x0)
        bottom, right = min(shape[0], y0 + labels.shape[0]), min(shape[1], x0 + labels.shape[1])
        if top >= bottom or left >= right:
            continue
        region = pyramid[top:bottom, left:right]
        source = labels[top - y0 : bottom - y0, left - x0 : right - x0]
        free = (region == 0) & (source > 0)
        if free.any():
            region[free] = source[free]
            pyramid[top:bottom, left:right] = region
    pixels = sum(int(np.count_nonzero(pyramid[y0:y1, x0:x1])) for y0, x0, y1, x1 in pyramid.written_regions())
    return pyramid, pixels


def _transforms(scale: list[float], translation: list[float], factor: float) -> list[dict]:
    """A level's NGFF coordinateTransformations: its pixels (every ``factor``-th of level 0, from pixel 0) at
    ``scale`` x ``factor``, then the origin (a translation only where there is one)."""
    transforms: list[dict] = [{"type": "scale", "scale": [value * factor for value in scale]}]
    if any(translation):
        transforms.append({"type": "translation", "translation": list(translation)})
    return transforms


def write_ome_zarr_labels(
    path: str | os.PathLike,
    shape: tuple[int, int],
    dtype: type,
    pieces: Sequence[Piece],
    name: str = "labels",
    geometry: Any = None,
) -> int:
    """Write an (H, W) ``shape`` label image of ``dtype`` (zero except ``pieces``, as
    :func:`fmscope.imaging.tiled_labels.write_tiled_labels` takes them) as an OME-Zarr label image at ``path``
    (see module docstring), atomically. ``geometry``: the image's (:class:`fmscope.imaging.io.Geometry`, None: in
    pixels): level k maps its pixels to the image's space, scale = pixel size x 2**k and translation = origin in
    the input's unit (:func:`fmscope.imaging.picture_geometry.ngff_placement`). Raises FmscopeError when ``path``
    exists and is not a store fmscope wrote, unchanged since. Returns the number of labelled pixels written."""
    import zarr

    path = Path(path)
    output_owner.require_replaceable(path, "-o")
    dtype = np.dtype(dtype)
    pyramid, pixels = _pyramid((int(shape[0]), int(shape[1])), dtype, pieces)
    regions = list(pyramid.written_regions())
    axes, scale, translation = picture_geometry.ngff_placement(geometry) or (
        [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        [1.0, 1.0],
        [0.0, 0.0],
    )

    def write(target: Path) -> None:
        group = zarr.open_group(target, mode="w", zarr_format=2)
        for k, level in enumerate(pyramid.levels):
            stored = group.create_array(
                str(k),
                shape=level.shape,
                chunks=level.chunks,
                dtype=dtype,
                fill_value=0,
                config={"write_empty_chunks": False},
            )
            factor = 2**k
            for y0, x0, y1, x1 in regions:  # level-0 chunks that were written, on this level
                top, left, bottom, right = y0 // factor, x0 // factor, math.ceil(y1 / factor), math.ceil(x1 / factor)
                stored[top:bottom, left:right] = level[top:bottom, left:right]
        group.attrs["multiscales"] = [
            {
                "version": "0.4",
                "name": name,
                "axes": axes,
                "datasets": [
                    {"path": str(k), "coordinateTransformations": _transforms(scale, translation, 2.0**k)}
                    for k in range(len(pyramid.levels))
                ],
            }
        ]
        group.attrs["image-label"] = {"version": "0.4"}
        group.attrs[STAMP] = stamp()

    atomic_write(path, write)
    return pixels
