"""napari reader for volumes (NIfTI / NRRD / MHA files, DICOM series folders), through the engine's reader.

One reader per input family: the layer's pixels and geometry are :func:`fmscope.imaging.io.read_volume`'s, the
same ``fmscope volume``, batch rows and the Track panel's export read. :func:`volume_placement` translates the
volume's physical geometry (SimpleITK / LPS: spacing, origin, direction over x, y, z) into napari's world, whose
axes are the layer's (z, y, x): a voxel lands at its physical point written (z, y, x).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.imaging import io
from fmscope.names import display_name

LayerData = list[tuple]
DICOM_LOOK = 200  # entries of a folder looked at for a DICOM file


def volume_placement(volume: io.Volume) -> dict:
    """napari layer keywords placing ``volume``'s (z, y, x) voxels at their physical points, in mm, (z, y, x).

    A voxel at index (k, j, i) lies at ``origin + D @ (spacing * (i, j, k))`` (SimpleITK, x, y, z); in napari's
    world, axes reversed, that is ``P D P diag(spacing_zyx) @ (k, j, i) + P origin`` (P reverses three axes).
    A diagonal direction (identity, or axes flipped: RAS-stored NIfTI, dcm2niix) gives ``scale`` (negative
    along a flipped axis) and ``translate``; any other (axes swapped or oblique) adds ``affine``, the rotation
    and the origin, applied by napari after ``scale``. Returns ``{"scale": (3,), "translate": (3,)[, "affine":
    (4, 4)]}``.
    """
    spacing = np.asarray(volume.spacing_zyx, float)
    direction = np.asarray(volume.direction, float).reshape(3, 3)[::-1, ::-1]  # P D P: rows and columns z, y, x
    origin = np.asarray(volume.origin, float)[::-1]
    if np.allclose(direction, np.diag(np.diag(direction))):
        return {"scale": tuple(spacing * np.sign(np.diag(direction))), "translate": tuple(origin)}
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = direction, origin
    return {"scale": tuple(spacing), "translate": (0.0, 0.0, 0.0), "affine": affine}


def volume_layer_data(path: str) -> LayerData:
    """[(array, {name, scale, translate[, affine], metadata}, 'image')] for one volume file or DICOM folder
    ((z, y, x) order, placed by :func:`volume_placement`); the metadata keeps the
    :class:`~fmscope.imaging.io.Volume` (geometry) and axis 0 = z. Raises :class:`FmscopeError` as
    :func:`~fmscope.imaging.io.read_volume` does."""
    volume = io.read_volume(path)
    for note in volume.notes:
        _show(note, error=False)
    kwargs = {"name": display_name(path), **volume_placement(volume)}
    kwargs["metadata"] = {"fmscope_volume": volume, "fmscope_axis": "z"}
    return [(volume.array, kwargs, "image")]


def is_dicom_folder(path: str | Path) -> bool:
    """A folder holding a DICOM file (Part 10 marker) among its first :data:`DICOM_LOOK` entries: a series as
    scanners and PACS export it. Asked by napari for every folder opened (on the UI thread), so a huge folder is
    neither listed whole nor sorted."""
    path = Path(path)
    if not path.is_dir():
        return False
    return any(entry.is_file() and io.is_dicom(entry) for entry in islice(path.iterdir(), DICOM_LOOK))


def _show(message: str, error: bool = True) -> None:
    from napari.utils.notifications import show_error, show_info

    (show_error if error else show_info)(message)


def get_reader(path: str | list[str]) -> Callable[[str], LayerData] | None:
    """npe2 reader hook: a reader function for volume files and DICOM series folders, else None."""
    if isinstance(path, list):
        return None
    if not (str(path).lower().endswith(io.VOLUME_SUFFIXES) or is_dicom_folder(path)):
        return None

    def read(target: str) -> LayerData:
        try:
            return volume_layer_data(target)
        except FmscopeError as error:  # the engine's reason and fix, as the video and slide readers show theirs
            _show(str(error))
            return [(None,)]  # napari's "read, nothing to show": no other reader's traceback

    return read
