"""Lazy 2D images: a huge tiled TIFF / BigTIFF / OME-TIFF or OME-Zarr read region by region, never whole.

A :class:`LazyImage` holds a zarr array (tifffile's ``aszarr()`` store for TIFF, the first multiscale
level of an OME-Zarr) and answers ``read(y0, x0, y1, x1)`` (or ``image[y0:y1, x0:x1]``) by decoding only
the tiles (chunks) that region touches. Memory grows with the region, not with the image.

Which images are lazy: :func:`fmscope.imaging.io.open_image` (the picture family's reader, which also opens the
TIFFs: tiled pages tile by tile, striped pages strip by strip, uncompressed ones memory-mapped; a chunk larger
than ``MAX_CHUNK_BYTES`` decoded is refused) returns one for an image of more than ``EAGER_MAX_PIXELS`` pixels;
smaller ones are read whole as before. This module opens OME-Zarr images, and :func:`from_array` wraps an
array another program holds (a dask or zarr array, e.g. napari's layer data) the same way. The segmenter computes no
whole-image embedding for a lazy image (that view would need every pixel): prompts must zoom (``fmscope.imaging.roi``).
docs/formats.md lists the layouts and refusals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.imaging.intensity import Intensity, auto_intensity

# Images above this many pixels (H x W) are read lazily and get no whole-image embedding (a 4096 x 4096 grey
# image is 16.8 MB as uint8, 50 MB as the model's RGB, its resize fits any laptop).
EAGER_MAX_PIXELS = 4096 * 4096
# A region read decodes whole chunks; a chunk (tile, strip) larger than this decoded is refused.
MAX_CHUNK_BYTES = 64 * 2**20
# The intensity window of a lazy image (other than uint8 / 1-bit, used as is) is the 0.5-99.5 percentile
# range of SAMPLE_GRID x SAMPLE_GRID regions of SAMPLE_SIDE pixels, evenly spaced over the image (the
# region in each cell's centre): fixed by the image's shape, so every crop of the image gets the same window.
SAMPLE_GRID = 8
SAMPLE_SIDE = 256


@dataclass
class LazyImage:
    """One 2D image, grey (H, W) or RGB (H, W, 3), read on demand.

    ``array``: a zarr array (or anything sliceable the same way) in the file's axis order ``axes``
    (letters ``Y``, ``X``, ``S`` for samples: grey + alpha (2, read as grey), RGB or RGBA (3, 4, read as RGB);
    any other letter an axis of size 1); ``source``: what
    was opened (messages, cache identity); ``closer``: called by :meth:`close` (the open TIFF file).
    """

    array: Any
    axes: str
    source: str
    chunks: tuple[int, int]  # (rows, columns) of one stored chunk
    closer: Any = None
    coarser: tuple[Any, ...] = ()  # a pyramid's lower-resolution levels (arrays in ``axes`` order), finest first
    geometry: Any = None  # the pixel size and position (fmscope.imaging.io.Geometry) when the file states them
    note: str = ""  # what the reader found that the user should know (an OME-Zarr's chunks not stored)
    _identity: str = field(default="", repr=False, compare=False)  # identity(), once computed

    @property
    def shape(self) -> tuple[int, ...]:
        """(H, W) or (H, W, 3)."""
        sizes = dict(zip(self.axes, self.array.shape))
        samples = sizes.get("S", 1)
        return (sizes["Y"], sizes["X"]) + ((3,) if samples in (3, 4) else ())

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def pixels(self) -> int:
        """H x W."""
        return self.shape[0] * self.shape[1]

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """A new array of rows y0..y1-1, columns x0..x1-1 (clipped to the image): (h, w) or (h, w, 3)."""
        height, width = self.shape[:2]
        y0, y1 = max(0, int(y0)), min(height, int(y1))
        x0, x1 = max(0, int(x0)), min(width, int(x1))
        index = tuple(
            slice(y0, y1) if axis == "Y" else slice(x0, x1) if axis == "X" else slice(None) if axis == "S" else 0
            for axis in self.axes
        )
        region = np.array(self.array[index])  # a copy also of a memory-mapped file
        kept = [axis for axis in self.axes if axis in "YXS"]
        if "S" in kept:  # samples last; alpha dropped: grey + alpha -> grey, RGBA -> RGB (as the eager reader)
            region = np.moveaxis(region, kept.index("S"), -1)
            region = region[..., :3] if region.shape[-1] in (3, 4) else region[..., 0]
        if region.dtype == bool:
            region = region.astype(np.uint8) * 255
        return region

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        """``image[y0:y1, x0:x1]`` (steps of 1): :meth:`read`."""
        rows, cols = key
        height, width = self.shape[:2]
        y0, y1, _ = rows.indices(height)
        x0, x1, _ = cols.indices(width)
        return self.read(y0, x0, y1, x1)

    def read_all(self) -> np.ndarray:
        """The whole image in memory (only for images of at most ``EAGER_MAX_PIXELS``)."""
        return self.read(0, 0, *self.shape[:2])

    def level(self, index: int) -> LazyImage:
        """Pyramid level ``index`` (0: this image) as a LazyImage of its own (same source, never closes the file)."""
        if index == 0:
            return self
        array = self.coarser[index - 1]
        return LazyImage(array, self.axes, self.source, _chunk_sides(array, self.axes))

    def level_for(self, crop: tuple[int, int, int, int], pixels: int) -> tuple[int, int]:
        """(level index, factor) of the coarsest pyramid level on which ``crop`` (y0, x0, y1, x1 on this level)
        still spans at least ``pixels`` pixels along its long side, among the levels whose pixels are whole
        ``factor`` x ``factor`` blocks of this level's (each side ``factor`` times shorter, rounded either way);
        (0, 1): this level (no pyramid, or no coarser level keeps that resolution). A box much larger than the
        model's input (a 5,000 px box on a 40k scan) is then read at the encoder's resolution, not the scan's."""
        height, width = self.shape[:2]
        long_side = max(crop[2] - crop[0], crop[3] - crop[1])
        best = (0, 1)
        for index in range(1, len(self.coarser) + 1):
            rows, cols = self.level(index).shape[:2]
            factor = round(height / rows)
            whole = all(
                size in (length // factor, -(-length // factor)) for size, length in ((rows, height), (cols, width))
            )
            if factor > best[1] and whole and long_side / factor >= pixels:
                best = (index, factor)
        return best

    def snap(self, crop: tuple[int, int, int, int], factor: int) -> tuple[int, int, int, int]:
        """``crop`` (y0, x0, y1, x1) widened to whole ``factor`` x ``factor`` blocks (within the image)."""
        height, width = self.shape[:2]
        y0, x0, y1, x1 = crop
        return (
            y0 // factor * factor,
            x0 // factor * factor,
            min(height, -(-y1 // factor) * factor),
            min(width, -(-x1 // factor) * factor),
        )

    def read_level(self, index: int, factor: int, crop: tuple[int, int, int, int]) -> np.ndarray:
        """The pixels of ``crop`` (on this level, widened to whole blocks by :meth:`snap`) from pyramid level
        ``index`` of :meth:`level_for`'s ``factor``: about (y1 - y0) / factor x (x1 - x0) / factor pixels."""
        level = self.level(index)
        rows, cols = level.shape[:2]
        y0, x0, y1, x1 = self.snap(crop, factor)
        return level.read(y0 // factor, x0 // factor, min(rows, -(-y1 // factor)), min(cols, -(-x1 // factor)))

    def read_resampled(self, factor: float) -> np.ndarray:
        """The whole image shrunk ``factor`` times (>= 1) per side: (round(H / factor), round(W / factor)[, 3]).

        Read from the coarsest pyramid level at least as fine as asked (none: this level), band by band
        (``MAX_CHUNK_BYTES`` of decoded pixels at most per band, whole chunk rows), each band area-averaged
        (``cv2.INTER_AREA``) to its share of the output rows: memory is the output plus one band. Band edges fall
        on output rows only to the nearest row when ``factor`` is not whole (a sub-pixel difference from resizing
        the whole image at once). Raises FmscopeError for ``factor`` < 1 (this reads, it does not enlarge).
        """
        import cv2

        if not factor >= 1:
            raise FmscopeError(f"Cannot shrink {self.source} by {factor:g}.", "Ask for a factor of at least 1.")
        height, width = self.shape[:2]
        levels = [self.level(index) for index in range(len(self.coarser) + 1)]
        fine_enough = [lvl for lvl in levels if height / lvl.shape[0] <= factor * 1.001]
        source = max(fine_enough, key=lambda lvl: height / lvl.shape[0])  # level 0 always qualifies
        rows, cols = source.shape[:2]
        out_height, out_width = max(1, round(height / factor)), max(1, round(width / factor))
        band = max(source.chunks[0], MAX_CHUNK_BYTES // max(1, cols * source.dtype.itemsize * 3))
        band -= band % source.chunks[0] if band > source.chunks[0] else 0
        pieces = []
        for y0 in range(0, rows, band):
            y1 = min(rows, y0 + band)
            out0, out1 = round(y0 * out_height / rows), round(y1 * out_height / rows)
            if out1 > out0:
                pieces.append(
                    cv2.resize(source.read(y0, 0, y1, cols), (out_width, out1 - out0), interpolation=cv2.INTER_AREA)
                )
        return np.concatenate(pieces)

    def sample_regions(self) -> Iterator[np.ndarray]:
        """The fixed sample of the image (see ``SAMPLE_GRID``): its regions, read one by one."""
        height, width = self.shape[:2]
        for row in range(SAMPLE_GRID):
            for col in range(SAMPLE_GRID):
                cy, cx = (2 * row + 1) * height // (2 * SAMPLE_GRID), (2 * col + 1) * width // (2 * SAMPLE_GRID)
                y0, x0 = max(0, cy - SAMPLE_SIDE // 2), max(0, cx - SAMPLE_SIDE // 2)
                yield self.read(y0, x0, y0 + SAMPLE_SIDE, x0 + SAMPLE_SIDE)

    def intensity(self) -> Intensity:
        """The automatic intensity window: uint8 as is, 1-bit as 0 / 255, else the 0.5-99.5 percentiles of
        :meth:`sample_regions` (the same window for every crop of the image)."""
        if self.dtype in (np.uint8, bool):
            return auto_intensity(np.zeros(1, np.uint8))
        return auto_intensity(np.concatenate([region.ravel() for region in self.sample_regions()]))

    def identity(self) -> str:
        """A sha256 naming this image's content for the embedding cache: source, shape, dtype and the sample
        (read region by region, none kept; once per LazyImage: the segmenter asks again for every prompt)."""
        if not self._identity:
            digest = hashlib.sha256(f"{self.source}|{self.shape}|{self.dtype}".encode())
            for region in self.sample_regions():
                digest.update(region.tobytes())
            self._identity = digest.hexdigest()
        return self._identity

    def close(self) -> None:
        if self.closer is not None:
            self.closer()

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_axes(axes: str, shape: tuple[int, ...], path: Path) -> None:
    """Refuse stacks: every axis other than Y, X and samples (grey + alpha: 2; RGB, RGBA: 3, 4) must have size 1."""
    extra = [(axis, size) for axis, size in zip(axes, shape) if axis not in "YXS" and size > 1]
    samples = dict(zip(axes, shape)).get("S", 1)
    if extra or samples not in (1, 2, 3, 4):
        raise FmscopeError(
            f"{path} holds a stack (axes {axes}, shape {shape}), not one 2D image.",
            "Save the plane or channel to segment as its own file (one 2D image per file).",
        )


def is_ome_zarr(path: Path) -> bool:
    """A folder holding a zarr group with OME-NGFF ``multiscales`` attributes (v0.4: .zattrs, v0.5: zarr.json)."""
    return path.is_dir() and bool(_multiscales(path))


def _multiscales(path: Path) -> list:
    import json

    for name in (".zattrs", "zarr.json"):
        try:
            attributes = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attributes = attributes.get("attributes", attributes)
        attributes = attributes.get("ome", attributes)
        if attributes.get("multiscales"):
            return attributes["multiscales"]
    return []


def first_multiscale(path: Path) -> dict:
    """The first OME-NGFF multiscale (its attributes: axes, datasets, transformations) of an OME-Zarr image."""
    return _multiscales(path)[0]


def open_ome_zarr(path: Path) -> LazyImage:
    """The full-resolution level of an OME-Zarr image's first multiscale as a :class:`LazyImage` (its other levels
    in ``coarser``, for :meth:`LazyImage.read_resampled`).

    Axes come from the multiscale's ``axes`` (names t, c, z, y, x; version 0.3 lists names only);
    an axis other than y and x must have size 1.
    """
    import zarr

    multiscale = _multiscales(path)[0]
    level = multiscale["datasets"][0]["path"]
    names = [axis["name"] if isinstance(axis, dict) else axis for axis in multiscale.get("axes", ["y", "x"])]
    array = zarr.open_array(path / level, mode="r")
    if len(names) != array.ndim:
        raise FmscopeError(
            f"{path}: the multiscale lists {len(names)} axes ({', '.join(names)}) for a {array.ndim}D array.",
            "Check the store's .zattrs / zarr.json (OME-NGFF multiscales).",
        )
    axes = "".join({"y": "Y", "x": "X"}.get(name.lower(), "Q") for name in names)
    if "Y" not in axes or "X" not in axes:
        raise FmscopeError(f"{path} has no y and x axes ({', '.join(names)}).", "Give a 2D OME-Zarr image.")
    check_axes(axes, tuple(array.shape), path)
    chunks = dict(zip(axes, array.chunks))
    coarser = tuple(zarr.open_array(path / dataset["path"], mode="r") for dataset in multiscale["datasets"][1:])
    return LazyImage(
        array, axes, str(path), (int(chunks["Y"]), int(chunks["X"])), coarser=coarser, note=_absent_chunks(array, path)
    )


def _absent_chunks(array: Any, path: Path) -> str:
    """A note when chunks of the full-resolution level are not stored (zarr reads them as the fill value, without a
    word): zarr leaves out chunks equal to the fill value, an interrupted copy leaves out others, and the two cannot
    be told apart, so fmscope reads the image and says so. "" when every chunk is stored."""
    try:
        stored, total = int(array.nchunks_initialized), int(array.nchunks)
    except Exception:  # a store that cannot list its keys: nothing to say
        return ""
    if stored >= total:
        return ""
    return (
        f"{path.name}: {total - stored} of {total} chunks of its full-resolution level are not stored and read as "
        f"the fill value {array.fill_value} (zarr leaves out chunks equal to it; an interrupted copy leaves out "
        "others): if the store was copied, compare it with the original"
    )


def _chunk_sides(array: Any, axes: str) -> tuple[int, int]:
    """(rows, columns) of one chunk of ``array`` (zarr: its chunks; dask: its largest block; else its shape)."""
    chunks = getattr(array, "chunks", None) or tuple(array.shape)
    sizes = dict(zip(axes, chunks))
    rows, cols = (size if isinstance(size, int) else max(size) for size in (sizes["Y"], sizes["X"]))
    return int(rows), int(cols)


def from_array(array: Any, source: str, coarser: Sequence[Any] = ()) -> LazyImage:
    """A sliceable 2D array held elsewhere, grey (H, W) or colour (H, W, 3|4), as a :class:`LazyImage`.

    ``array``: anything with ``shape``, ``dtype`` and numpy basic slicing, such as a dask array (each read
    computes only the blocks it touches), a zarr array (reads only its chunks) or a numpy memory map. ``source``
    names it in messages and in the embedding cache's identity (:meth:`LazyImage.identity`). The one adapter
    through which front ends (napari's multiscale, dask or zarr layers) hand the engine an image without reading it.
    ``coarser``: a multiscale's lower-resolution levels, finest first (napari: a multiscale layer's ``data[1:]``),
    each of ``array``'s layout; they serve large prompts' crops (:meth:`LazyImage.level_for`). Raises FmscopeError
    for any other shape.
    """
    shape = tuple(int(size) for size in array.shape)
    if len(shape) == 2:
        axes = "YX"
    elif len(shape) == 3 and shape[-1] in (3, 4):
        axes = "YXS"
    else:
        raise FmscopeError(
            f"{source} has shape {shape}; a lazy image is (H, W) or (H, W, 3).",
            "Select one plane (and channel) of the data first.",
        )
    for level in coarser:
        if len(level.shape) != len(shape) or tuple(level.shape[2:]) != shape[2:]:
            raise FmscopeError(
                f"A lower-resolution level of {source} has shape {tuple(level.shape)}, the image {shape}.",
                "Give the levels of one multiscale image, finest first.",
            )
    return LazyImage(array, axes, source, _chunk_sides(array, axes), coarser=tuple(coarser))
