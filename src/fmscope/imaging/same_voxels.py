"""Two grids holding the same voxel centres in another storage order (an axis flipped, axes swapped), or one grid
a sub-block of the other (cropped).

MONAI's ``Orientationd(axcodes="RAS")``, nibabel's ``as_closest_canonical`` or ITK's ``Flip`` store a mask in
another axis order than the image it was made on (MONAI#1333, MONAI#6465): the same voxels in patient space, with
the direction and origin changed to match. 3D Slicer saves a segmentation cropped to its minimum extent (Slicer#5323,
#5093): a sub-block of the image's lattice, placed by its origin. :func:`onto_grid` tells such pairs apart from masks
on different grids and moves each voxel's value to where the other grid stores it (no value is interpolated).
"""

from __future__ import annotations

import numpy as np

from fmscope.imaging.io import Geometry

# Voxel centres are the same when they lie within this share of a voxel of each other.
CENTRE_TOLERANCE = 1e-3


def _steps(geometry: Geometry) -> np.ndarray:
    """(n, n) matrix whose column j is one step along axis j in mm (LPS)."""
    n = len(geometry.spacing)
    return np.asarray(geometry.direction, dtype=np.float64).reshape(n, n) * np.asarray(geometry.spacing)


def onto_grid(
    array: np.ndarray, geometry: Geometry, target_shape: tuple[int, ...], target: Geometry
) -> tuple[np.ndarray, str] | None:
    """``array`` (numpy order, on ``geometry``) stored on the ``target`` grid of ``target_shape`` when every one of its
    voxel centres is one of the target's, else None (a different grid).

    That holds when each of its axes steps one target axis by one voxel, forwards or backwards (the same spacing, the
    axes flipped or swapped: a signed permutation), its first voxel lies on a target voxel (the origins differ by
    whole voxels) and all of it lies inside the target's extent. The whole grid in another axis order is reordered; a
    sub-block (a 3D Slicer segmentation saved cropped to its minimum extent, Slicer#5323) is put in its place, the
    target's voxels outside it background (0). Values are moved, never interpolated. Returns (the array in
    ``target_shape``, "" when the grids match as stored, else what was done, for a note)."""
    n = len(geometry.spacing)
    held = array.reshape((1,) * (n - array.ndim) + array.shape) if array.ndim < n else array
    target_held = (1,) * (n - len(target_shape)) + tuple(target_shape)
    if len(target.spacing) != n or held.ndim != n or len(target_held) != n:
        return None
    steps, target_steps = _steps(geometry), _steps(target)
    if abs(np.linalg.det(target_steps)) < 1e-12:
        return None
    mapping = np.linalg.solve(target_steps, steps)  # column j: one step along axis j in target voxels
    rounded = np.round(mapping)
    if np.abs(mapping - rounded).max() > CENTRE_TOLERANCE:
        return None
    if not (
        np.array_equal(np.abs(rounded).sum(axis=0), np.ones(n))
        and np.array_equal(np.abs(rounded).sum(axis=1), np.ones(n))
    ):
        return None
    start = np.linalg.solve(target_steps, np.subtract(geometry.origin, target.origin))  # voxel 0 in target voxels
    if np.abs(start - np.round(start)).max() > CENTRE_TOLERANCE:
        return None
    size, target_size = np.asarray(held.shape[::-1]), np.asarray(target_held[::-1])  # (x, y[, z]) as SimpleITK
    end = np.round(start) + rounded @ (size - 1)
    low, high = np.minimum(np.round(start), end).astype(int), np.maximum(np.round(start), end).astype(int)
    if (low < 0).any() or (high > target_size - 1).any():
        return None
    source_axis = np.abs(rounded).argmax(axis=1)  # target axis t holds source axis source_axis[t] (x, y[, z] order)
    block = held.transpose(tuple(n - 1 - k for k in range(n)))  # (x, y[, z])
    block = block.transpose(tuple(source_axis))
    block = block[tuple(slice(None, None, -1) if rounded[t, source_axis[t]] < 0 else slice(None) for t in range(n))]
    placed = np.zeros(tuple(target_size), array.dtype)
    placed[tuple(slice(lo, hi + 1) for lo, hi in zip(low, high))] = block
    placed = placed.transpose(tuple(n - 1 - k for k in range(n))).reshape(target_shape)
    reordered = not np.array_equal(rounded, np.eye(n))
    cropped = not np.array_equal(size[source_axis], target_size)
    what = []
    if reordered:
        what.append("holds its voxels in another axis order (flipped or swapped axes)")
    if cropped:
        shape = " x ".join(str(v) for v in held.shape)
        corner = tuple(int(v) for v in low[::-1])  # numpy order, as the shapes
        what.append(
            f"is a {shape} block of the grid (cropped, as 3D Slicer saves a segmentation cropped to its minimum "
            f"extent) at voxel {corner}: the voxels outside it are background"
        )
    return placed, " and ".join(what)


def on_grid(
    array: np.ndarray, geometry: Geometry | None, target_shape: tuple[int, ...], target: Geometry | None
) -> tuple[np.ndarray | None, str]:
    """(``array`` on the ``target`` grid, what was done to put it there: "" when nothing): as it is when either
    geometry is unknown (None: pictures, TIFF stacks; their shapes are the caller's to compare) or the grids match;
    reordered and / or put in its place when its voxel centres are the target's in another axis order or a sub-block
    of them (:func:`onto_grid`); (None, "") when they lie on different grids in patient space. ``target_shape`` is the
    target's grid (an RGB image's samples left out)."""
    if geometry is None or target is None:
        return array, ""
    if array.shape == tuple(target_shape) and target.matches(geometry):
        return array, ""
    placed = onto_grid(array, geometry, tuple(target_shape), target)
    return (None, "") if placed is None else placed
