"""Two grids holding the same voxel centres in another storage order (an axis flipped, axes swapped).

MONAI's ``Orientationd(axcodes="RAS")``, nibabel's ``as_closest_canonical`` or ITK's ``Flip`` store a mask in
another axis order than the image it was made on (MONAI#1333, MONAI#6465): the same voxels in patient space, with
the direction and origin changed to match. :func:`onto_grid` tells such a pair apart from masks on different grids
and puts one onto the other's storage order by nearest-neighbour resampling, which on the same voxel centres moves
each voxel's value to where the other grid stores it (no value is interpolated).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from fmscope.imaging.io import Geometry

# Voxel centres are the same when they lie within this share of a voxel of each other.
CENTRE_TOLERANCE = 1e-3


def _steps(geometry: Geometry) -> np.ndarray:
    """(n, n) matrix whose column j is one step along axis j in mm (LPS)."""
    n = len(geometry.spacing)
    return np.asarray(geometry.direction, dtype=np.float64).reshape(n, n) * np.asarray(geometry.spacing)


def _image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    n = len(geometry.spacing)
    held = array.reshape((1,) * (n - array.ndim) + array.shape) if array.ndim < n else array
    return geometry.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(held)))


def onto_grid(
    array: np.ndarray, geometry: Geometry, target_shape: tuple[int, ...], target: Geometry
) -> np.ndarray | None:
    """``array`` (numpy order, on ``geometry``) stored on the ``target`` grid of ``target_shape`` when both grids hold
    the same voxel centres in patient space, else None (they are different grids)."""
    n = len(geometry.spacing)
    if len(target.spacing) != n or int(np.prod(array.shape)) != int(np.prod(target_shape)):
        return None
    steps, target_steps = _steps(geometry), _steps(target)
    if abs(np.linalg.det(steps)) < 1e-12:
        return None
    # each target axis must be one source axis, forwards or backwards: a signed permutation of whole voxels
    mapping = np.linalg.solve(steps, target_steps)
    if np.abs(mapping - np.round(mapping)).max() > CENTRE_TOLERANCE or not np.allclose(
        np.abs(np.round(mapping)).sum(axis=0), 1
    ):
        return None
    if not np.allclose(np.abs(np.round(mapping)).sum(axis=1), 1):
        return None
    source = _image(array, geometry)
    size = np.asarray(source.GetSize())
    target_size = np.asarray(tuple(reversed(target_shape)) + (1,) * (n - len(target_shape)))[:n]
    start = np.linalg.solve(steps, np.subtract(target.origin, geometry.origin))  # target voxel 0 in source indices
    end = start + np.round(mapping) @ (target_size - 1)
    corners = np.stack([start, end])
    if np.abs(corners - np.round(corners)).max() > CENTRE_TOLERANCE:
        return None
    if (np.round(corners) < 0).any() or (np.round(corners) > size - 1).any():
        return None
    if not np.array_equal(np.abs(np.round(mapping)).astype(int) @ target_size, size):
        return None
    reference = _image(np.zeros(tuple(int(v) for v in reversed(target_size)), array.dtype), target)
    moved = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, source.GetPixelID())
    return sitk.GetArrayFromImage(moved).reshape(target_shape)


def on_grid(
    array: np.ndarray, geometry: Geometry | None, target_shape: tuple[int, ...], target: Geometry | None
) -> tuple[np.ndarray | None, bool]:
    """(``array`` on the ``target`` grid, whether it was reordered): as it is when either geometry is unknown (None:
    pictures, TIFF stacks; their shapes are the caller's to compare) or the grids match; stored in the target's axis
    order when both hold the same voxel centres (:func:`onto_grid`); (None, False) when they lie on different grids
    in patient space. ``target_shape`` is the target's grid (an RGB image's samples left out)."""
    if geometry is None or target is None:
        return array, False
    if array.shape == tuple(target_shape) and target.matches(geometry):
        return array, False
    reordered = onto_grid(array, geometry, tuple(target_shape), target)
    return reordered, reordered is not None
