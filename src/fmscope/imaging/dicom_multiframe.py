"""One multi-frame DICOM file (Enhanced CT / MR / PET, Legacy Converted Enhanced) as a volume on its true grid.

An enhanced file keeps the geometry in functional groups, not in the classic tags: PixelMeasuresSequence
(PixelSpacing), PlaneOrientationSequence (ImageOrientationPatient) and PlanePositionSequence (ImagePositionPatient),
each in the SharedFunctionalGroupsSequence (all frames) or in each frame's PerFrameFunctionalGroupsSequence item.
GDCM / SimpleITK give such a file spacing 1 x 1 x 1 mm (Slicer#6773, ITKPythonPackage#105), so the geometry is
read here with pydicom and frames are placed by their own positions; frames not evenly spaced along the slice normal
(a lost frame, variable reconstruction gaps: OHIF#4352) are refused as a classic series with a gap is
(:mod:`fmscope.imaging.slice_positions`). A multi-frame file without functional groups is read as SimpleITK reads it.
"""

from __future__ import annotations

import numpy as np
import pydicom
import SimpleITK as sitk

from fmscope.errors import FmscopeError
from fmscope.imaging.slice_positions import SPACING_TOLERANCE, grid_step, uneven_positions, written_precision

FIX = (
    "Export the series again from its source (PACS, scanner) with every frame, or resample it to an even grid in "
    "a tool that does so (e.g. 3D Slicer) and give the NIfTI it writes."
)


def _group_value(frame: pydicom.Dataset | None, shared: pydicom.Dataset | None, sequence: str, tag: str):
    """``tag`` of the first item of ``sequence`` in the frame's functional groups, else the shared ones (None)."""
    for groups in (frame, shared):
        items = getattr(groups, sequence, None) if groups is not None else None
        if items and tag in items[0]:
            return items[0][tag].value
    return None


def plane(path: str) -> tuple[list[float] | None, tuple[float, float, float] | None]:
    """(pixel spacing [row, column] in mm, slice normal) of a multi-frame file from its shared functional groups,
    else its first frame's (None each when absent or unreadable): for the series listing."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not readable by pydicom: the listing shows what GDCM gave
        return None, None
    shared_items = getattr(header, "SharedFunctionalGroupsSequence", None)
    per_frame = getattr(header, "PerFrameFunctionalGroupsSequence", None)
    shared, first = (shared_items[0] if shared_items else None), (per_frame[0] if per_frame else None)
    pixel = _group_value(first, shared, "PixelMeasuresSequence", "PixelSpacing")
    cosines = _group_value(first, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
    normal = None
    if cosines is not None and len(cosines) == 6:
        cross = np.cross(np.asarray(cosines[:3], float), np.asarray(cosines[3:], float))
        normal = tuple(float(v) for v in cross / max(float(np.linalg.norm(cross)), 1e-12))
    return ([float(v) for v in pixel] if pixel is not None else None), normal


def read(path: str, summary: str) -> sitk.Image:
    """The multi-frame file at ``path`` as a 3D image, frames sorted along the slice normal, spacing and placement
    from its functional groups (``summary``: the series' listing line, for messages). Raises :class:`FmscopeError`
    when frames lack a position or orientation, are unevenly spaced, repeat positions or are sheared."""
    header = pydicom.dcmread(path, stop_before_pixels=True)
    per_frame = getattr(header, "PerFrameFunctionalGroupsSequence", None)
    image = sitk.ReadImage(path)
    if not per_frame or image.GetDimension() != 3:
        return image
    shared_items = getattr(header, "SharedFunctionalGroupsSequence", None)
    shared = shared_items[0] if shared_items else None
    frames = list(per_frame)
    pixel = [_group_value(f, shared, "PixelMeasuresSequence", "PixelSpacing") for f in frames]
    orientation = [_group_value(f, shared, "PlaneOrientationSequence", "ImageOrientationPatient") for f in frames]
    position = [_group_value(f, shared, "PlanePositionSequence", "ImagePositionPatient") for f in frames]
    if any(v is None for v in pixel + orientation + position):
        raise FmscopeError(
            f"Series {summary}: its frames do not all state their pixel spacing, orientation and position "
            "(PixelMeasuresSequence, PlaneOrientationSequence, PlanePositionSequence), so where they lie is unknown.",
            FIX,
        )
    pixel_mm = np.asarray(pixel, dtype=np.float64)
    cosines = np.asarray(orientation, dtype=np.float64)
    points = np.asarray(position, dtype=np.float64)
    if np.abs(pixel_mm - pixel_mm[0]).max() > 1e-4 or np.abs(cosines - cosines[0]).max() > 1e-4:
        raise FmscopeError(
            f"Series {summary}: its frames differ in pixel spacing or orientation, which one volume grid cannot hold.",
            FIX,
        )
    row, column = cosines[0, :3], cosines[0, 3:]
    normal = np.cross(row, column)
    normal /= max(np.linalg.norm(normal), 1e-12)
    along = points @ normal
    order = np.argsort(along, kind="stable")
    precision = written_precision(("\\".join(str(v) for v in p) for p in position), normal)
    problem = uneven_positions([float(v) for v in along[order]], "frame", precision)
    if problem is not None:
        raise FmscopeError(f"Series {summary}: {problem}.", FIX)
    travel = points[order[-1]] - points[order[0]]
    sideways = float(np.linalg.norm(travel - np.dot(travel, normal) * normal))
    if len(frames) > 1 and sideways > SPACING_TOLERANCE * abs(float(np.dot(travel, normal))):
        raise FmscopeError(
            f"Series {summary}: its frames are sheared ({sideways:.3g} mm sideways from first to last; gantry "
            "tilt?), which a regular volume grid cannot hold.",
            "Resample the series in a tool that corrects gantry tilt (e.g. 3D Slicer or dcm2niix) and give the "
            "NIfTI it writes.",
        )
    array = sitk.GetArrayFromImage(image)  # (frames, rows, columns) in the file's frame order
    if array.shape[0] != len(frames):
        raise FmscopeError(
            f"Series {summary}: it holds {array.shape[0]} frames of pixels but describes {len(frames)}.",
            "Copy or export the file again from its source; fmscope reads only complete files.",
        )
    volume = sitk.GetImageFromArray(np.ascontiguousarray(array[order]))
    step = grid_step([float(v) for v in along[order]]) if len(frames) > 1 else float(image.GetSpacing()[2])
    volume.SetSpacing((float(pixel_mm[0, 1]), float(pixel_mm[0, 0]), step))  # x = column spacing, y = row spacing
    volume.SetOrigin(tuple(float(v) for v in points[order[0]]))
    volume.SetDirection(tuple(float(v) for v in np.column_stack([row, column, normal]).ravel()))
    return volume
