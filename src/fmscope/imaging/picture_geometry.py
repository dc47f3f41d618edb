"""The pixel size and position of microscopy pictures, read from OME-TIFF, ImageJ TIFF and OME-Zarr and written to
fmscope's OME-Zarr and TIFF label images, so labels lie on their image in any viewer (napari/napari#5512: labels at
scale 1 over an image with a pixel size land on the wrong pixels; ome/napari-ome-zarr#32: a label image carries its
image's scale and translation).

Numbers are kept as :class:`fmscope.imaging.io.Geometry` keeps them (SimpleITK's conventions: x first, mm), with the
unit the file stated in ``Geometry.unit`` (an OME-NGFF unit name, e.g. ``"micrometer"``; ``""`` for an OME-Zarr
that names none, whose numbers are then kept as stored): a NIfTI output of such a picture gets its pixel size in mm,
an OME-Zarr or TIFF output in the input's own unit.

Read: an OME-TIFF's first image ``PhysicalSizeX`` / ``PhysicalSizeY`` (unit µm unless named); an ImageJ TIFF's
``unit`` with its XResolution / YResolution (pixels per unit); an OME-Zarr's first multiscale, level 0: its own and
the multiscale's ``scale`` and ``translation`` on y and x, the units of its axes. A plain TIFF's or PNG's resolution
(dots per inch, set by every picture editor) is not a pixel size and is not read.

Written: OME-Zarr labels get, on every level k, ``scale`` = pixel size x 2**k and ``translation`` = the origin, in
the input's unit on the axes (:func:`ngff_placement`); TIFF labels get the pixel size as resolution tags (pixels
per centimetre) and as OME-XML ``PhysicalSizeX`` / ``PhysicalSizeY`` (:func:`tiff_calibration`); a TIFF holds no
position. :func:`output_note` says what an output leaves out.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmscope.atomic import file_suffix

if TYPE_CHECKING:
    from fmscope.imaging.io import Geometry

# OME-NGFF unit names (the ones microscopy uses) and their length in mm; OME-XML / ImageJ symbols mapped to them.
MM_PER_UNIT = {
    "angstrom": 1e-7,
    "nanometer": 1e-6,
    "micrometer": 1e-3,
    "millimeter": 1.0,
    "centimeter": 10.0,
    "meter": 1000.0,
}
UNIT_NAMES = {
    "å": "angstrom",
    "a": "angstrom",
    "nm": "nanometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "um": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    **{name: name for name in MM_PER_UNIT},
}
# Calibration = (spacing x, y in mm, origin x, y in mm, unit name): what a reader hands io.Geometry.
Calibration = tuple[tuple[float, float], tuple[float, float], str]


def unit_name(text: str) -> str | None:
    """The NGFF unit name of an OME / ImageJ / NGFF unit text, None when fmscope does not know it as a length."""
    return UNIT_NAMES.get(text.strip().lower().replace("\\u00b5", "µ"))


def from_tiff(tiff: Any) -> Calibration | None:
    """The pixel size of an open TIFF (tifffile.TiffFile) from its OME-XML or ImageJ metadata, None without one."""
    if tiff.is_ome:
        try:
            pixels = ElementTree.fromstring(tiff.ome_metadata).find(".//{*}Image/{*}Pixels")
        except ElementTree.ParseError:
            pixels = None
        if pixels is not None and pixels.get("PhysicalSizeX") and pixels.get("PhysicalSizeY"):
            sizes = []
            for axis in "XY":
                unit = unit_name(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
                if unit is None:
                    return None
                sizes.append(float(pixels.get(f"PhysicalSize{axis}")) * MM_PER_UNIT[unit])
            return (sizes[0], sizes[1]), (0.0, 0.0), unit
    metadata = tiff.imagej_metadata or {}
    unit = unit_name(str(metadata.get("unit", "")))
    if unit is None:
        return None
    tags = tiff.pages[0].tags
    try:
        per_unit = [tags[name].value[0] / tags[name].value[1] for name in ("XResolution", "YResolution")]
    except (KeyError, ZeroDivisionError, TypeError):
        return None
    if min(per_unit) <= 0:
        return None
    return (MM_PER_UNIT[unit] / per_unit[0], MM_PER_UNIT[unit] / per_unit[1]), (0.0, 0.0), unit


def tiff_z_spacing(tiff: Any) -> float | None:
    """The z step (mm) of an open TIFF z-stack (tifffile.TiffFile): an OME-TIFF's ``PhysicalSizeZ`` (µm unless
    named), an ImageJ TIFF's ``spacing`` in its ``unit``; None when the file states none (or in no length unit)."""
    if tiff.is_ome:
        try:
            pixels = ElementTree.fromstring(tiff.ome_metadata).find(".//{*}Image/{*}Pixels")
        except ElementTree.ParseError:
            return None
        if pixels is None or not pixels.get("PhysicalSizeZ"):
            return None
        unit, step = unit_name(pixels.get("PhysicalSizeZUnit", "µm")), float(pixels.get("PhysicalSizeZ"))
    else:
        metadata = tiff.imagej_metadata or {}
        unit, step = unit_name(str(metadata.get("unit", ""))), float(metadata.get("spacing", 0) or 0)
    return step * MM_PER_UNIT[unit] if unit is not None and step > 0 else None


def from_ngff(multiscale: dict) -> Calibration | None:
    """The level-0 pixel size and origin of an OME-NGFF multiscale, None when it holds no scale or translation on y
    and x. Axes without a unit keep their numbers as stored (unit "")."""
    names = [axis["name"] if isinstance(axis, dict) else axis for axis in multiscale.get("axes", ["y", "x"])]
    scale = {name: 1.0 for name in names}
    shift = {name: 0.0 for name in names}
    transforms = [*multiscale["datasets"][0].get("coordinateTransformations", [])]
    transforms += multiscale.get("coordinateTransformations", [])  # the multiscale's own apply after the level's
    for transform in transforms:
        values = transform.get(transform.get("type", ""))
        if not isinstance(values, list) or len(values) != len(names):
            continue
        for name, value in zip(names, values):
            if transform["type"] == "scale":
                scale[name], shift[name] = scale[name] * float(value), shift[name] * float(value)
            elif transform["type"] == "translation":
                shift[name] += float(value)
    lowered = [name.lower() for name in names]
    if "y" not in lowered or "x" not in lowered:
        return None
    y, x = names[lowered.index("y")], names[lowered.index("x")]
    if (scale[y], scale[x], shift[y], shift[x]) == (1.0, 1.0, 0.0, 0.0):
        return None
    axes = {axis.get("name"): axis for axis in multiscale.get("axes", []) if isinstance(axis, dict)}
    units = {unit_name(str(axes.get(name, {}).get("unit", ""))) or "" for name in (y, x)}
    unit = units.pop() if len(units) == 1 else ""
    factor = MM_PER_UNIT.get(unit, 1.0)
    return (scale[x] * factor, scale[y] * factor), (shift[x] * factor, shift[y] * factor), unit


def _in_unit(geometry: Geometry) -> tuple[str, float]:
    """(unit name written, mm per unit): the input's own unit, millimetre for medical files, "" (as stored)."""
    unit = "millimeter" if geometry.unit is None else geometry.unit
    return unit, MM_PER_UNIT.get(unit, 1.0)


def _axis_aligned(geometry: Geometry) -> bool:
    """Rows and columns run along the y and x axes of its space (no rotation in the plane, no oblique slice)."""
    n = len(geometry.spacing)
    return all(
        math.isclose(geometry.direction[row * n + col], float(row == col), abs_tol=1e-6)
        for row in range(2)
        for col in range(n)
    )


def ngff_placement(geometry: Geometry | None) -> tuple[list[dict], list[float], list[float]] | None:
    """(axes, level-0 scale (y, x), translation (y, x)) for an OME-NGFF label image on ``geometry``'s pixels; None
    without a geometry, or when its rows and columns are not along y and x (an oblique DICOM slice: NGFF 0.4 holds
    no rotation; :func:`output_note` says so)."""
    if geometry is None or not _axis_aligned(geometry):
        return None
    unit, factor = _in_unit(geometry)
    axes = [{"name": name, "type": "space", **({"unit": unit} if unit else {})} for name in "yx"]
    scale = [geometry.spacing[1] / factor, geometry.spacing[0] / factor]
    return axes, scale, [geometry.origin[1] / factor, geometry.origin[0] / factor]


def tiff_calibration(geometry: Geometry | None, shape: tuple[int, ...]) -> dict:
    """tifffile.imwrite keywords giving a TIFF of ``shape`` (H, W[, S]) the pixel size of a calibrated picture:
    resolution tags (pixels per centimetre, read by Fiji, QuPath, tifffile) and OME-XML PhysicalSizeX / Y (read by
    Bio-Formats and fmscope); {} for a medical file's or no geometry (a TIFF label image of a CT slice stays as it
    was: its note says to write .nii.gz)."""
    if geometry is None or geometry.unit is None or geometry.unit not in MM_PER_UNIT:
        return {}
    unit, factor = _in_unit(geometry)
    size_x, size_y = geometry.spacing[0] / factor, geometry.spacing[1] / factor
    symbol = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m"}
    return {
        "resolution": (10.0 / geometry.spacing[0], 10.0 / geometry.spacing[1]),
        "resolutionunit": "CENTIMETER",
        "ome": True,
        "metadata": {
            "axes": "YXS" if len(shape) == 3 else "YX",
            "PhysicalSizeX": size_x,
            "PhysicalSizeY": size_y,
            "PhysicalSizeXUnit": symbol.get(unit, "Å"),
            "PhysicalSizeYUnit": symbol.get(unit, "Å"),
        },
    }


def output_note(geometry: Geometry | None, output: Path, volume_suffixes: tuple[str, ...]) -> str:
    """What the label output ``output`` leaves out of the input's ``geometry`` ("" when it keeps it all)."""
    if geometry is None:
        return ""
    suffix = file_suffix(output)
    if suffix in volume_suffixes:
        return ""
    if suffix == ".zarr":
        if ngff_placement(geometry) is None:
            return f"{output.name} keeps no pixel size or position: the input's pixels are not along its y and x axes"
        return ""
    if suffix in (".tif", ".tiff") and tiff_calibration(geometry, (1, 1)):
        if any(geometry.origin[:2]):
            return f"{output.name} keeps the pixel size, not the position; write .ome.zarr to keep both"
        return ""
    if geometry.unit is not None:  # a calibrated picture
        return f"{output.name} keeps no pixel size or position; write .ome.zarr (or .tif) to keep them"
    return f"{output.name} keeps no pixel size or position; write .nii.gz to keep the input's geometry"
