"""The axes of a TIFF series (tifffile's letters, any order) arranged as a stack of 2D planes: one reader of TIFF
axes for the time-lapse frames (:mod:`fmscope.imaging.tracking.frames`) and the volume reader
(:func:`fmscope.imaging.io.read_volume`), so a channel is never taken for time points or z slices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from fmscope.errors import FmscopeError

FRAME_AXES = {"T": "time points", "Z": "z slices", "Q": "pages", "I": "pages"}  # tifffile's axis letters
# tifffile's other stack axes (TIFF.AXES_NAMES): Micro-Manager positions are read as R (cgohlke/tifffile#198)
OTHER_AXES = {
    "R": "positions / tiles (R)",
    "M": "mosaic tiles (M)",
    "A": "angles (A)",
    "P": "phases (P)",
    "H": "lifetimes (H)",
    "E": "wavelengths (E)",
    "L": "exposures (L)",
    "V": "events (V)",
    "J": "columns (J)",
    "K": "rows (K)",
}


def appended_pages(tif: tifffile.TiffFile) -> bool:
    """Whether a TIFF's series are single pages of one shape and dtype (a stack written page by page)."""
    first = tif.series[0]
    return (
        len(tif.series) > 1
        and first.axes.upper() in ("YX", "YXS")
        and all(s.shape == first.shape and s.dtype == first.dtype and s.axes == first.axes for s in tif.series)
    )


def arrange_axes(array: np.ndarray, axes: str, path: Path, channel: int | None) -> tuple[np.ndarray, str]:
    """The array as (frames, Y, X[, S]) and the frame axis letter, from the series axes (any order).

    Axes of length 1 are dropped; samples (S) of 3 / 4 are colour, of 2 grey + alpha; a channel axis
    (C, or S of another length) is indexed by ``channel`` or refused; one frame axis (T, Z, Q, I)
    is allowed: time and z together are refused. Views only: a memory map stays one."""
    shape, original = array.shape, axes
    described = f"axes {axes}, shape {tuple(shape)}"
    keep = [i for i, (axis, size) in enumerate(zip(axes, shape)) if size > 1 or axis in "YX"]
    array, axes = array.reshape([shape[i] for i in keep]), "".join(axes[i] for i in keep)
    if "S" in axes and array.shape[axes.index("S")] == 2:  # grey + alpha
        array, axes = np.take(array, 0, axis=axes.index("S")), axes.replace("S", "")
    if "S" in axes and array.shape[axes.index("S")] not in (3, 4):
        axes = axes.replace("S", "C")  # several samples per pixel that are not colour: channels
    if "C" in axes:
        count = array.shape[axes.index("C")]
        if channel is None:
            raise FmscopeError(
                f"{path} has a channel axis: {count} channels (C) ({described}); fmscope tracks "
                "one channel, and never takes channels for time points.",
                f"Choose the channel to track (--channel 0..{count - 1}; batch: the 'channel' column), "
                "or save it on its own.",
            )
        if not 0 <= channel < count:
            raise FmscopeError(
                f"{path} has {count} channels ({described}); there is no channel {channel}.",
                f"Give --channel between 0 and {count - 1}.",
            )
        array, axes = np.take(array, channel, axis=axes.index("C")), axes.replace("C", "")
    elif channel is not None:
        raise FmscopeError(
            f"--channel {channel} was given, but {path} has no channel axis ({described}).", "Leave out --channel."
        )
    if "S" in axes:
        array, axes = np.moveaxis(array, axes.index("S"), -1), axes.replace("S", "") + "S"
    stacked = [axis for axis in axes if axis not in "YXS"]
    if not stacked:
        raise FmscopeError(
            f"{path} holds a single 2D image {tuple(shape)} (axes {original}).",
            "Use 'fmscope segment' for one image; a time-lapse is a multi-page TIFF (T, Y, X).",
        )
    if len(stacked) > 1:
        names = {**FRAME_AXES, **OTHER_AXES}
        what = " and ".join(f"{array.shape[axes.index(a)]} {names.get(a, f'{a!r} planes')}" for a in stacked)
        if {"T", "Z"} <= set(stacked):
            raise FmscopeError(
                f"{path} is a {''.join(stacked)} stack of {what} ({described}): time and z together.",
                "Save one z plane (or a projection) per time point, then track that.",
            )
        if "T" in stacked:  # a time-lapse of several positions, tiles, angles ...: one sequence is tracked
            extra = next(axis for axis in stacked if axis != "T")
            index = ", ".join("0" if axis == extra else ":" for axis in original[: original.index(extra) + 1])
            raise FmscopeError(
                f"{path} is a time-lapse of {what} ({described}): besides time (T) it has a second stack axis, "
                f"{names.get(extra, repr(extra))}; fmscope tracks one (T, Y, X) sequence and does not pick one.",
                f"Save the sequence to track as its own file, e.g. tifffile.imwrite('one.tif', "
                f"tifffile.imread('{path.name}')[{index}]) for the first of the {array.shape[axes.index(extra)]}, "
                "or in Fiji 'Image > Duplicate' it.",
            )
        raise FmscopeError(
            f"{path} is a stack of {what} ({described}) without a named time axis.",
            "Save one (T, Y, X) sequence, or name the axes (TIFF 'axes' metadata such as TYX, TZYX, "
            "TCYX) so fmscope can tell time from z and channels.",
        )
    frame_axis = stacked[0]
    array = np.moveaxis(array, axes.index(frame_axis), 0)
    if axes.replace(frame_axis, "").replace("S", "") != "YX":
        array = np.swapaxes(array, 1, 2)  # X before Y in the file
    return array, frame_axis


def series_axes(series: tifffile.TiffPageSeries) -> str:
    """The upper-case axes of a TIFF series, planar samples of a plain ``tifffile.imwrite`` file read as pages (Q):
    it stores (..., 3 | 4, Y, X) arrays as planar RGB(A) pages, the user's planes, not colour."""
    axes = series.axes.upper()
    if series.kind == "shaped" and axes.endswith("SYX"):
        axes = axes.replace("S", "Q")
    return axes
