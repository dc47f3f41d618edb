"""Where the user's box lies in a volume: the slice axis, the key slice, the in-plane box.

Volumes are handled as numpy arrays in Slicer's (k, j, i) order. A box drawn on a slice
is normal to one IJK axis; the engine segments along that axis, so the array is permuted
to put it first and permuted back afterwards. Works for any direction matrix (axial,
sagittal, coronal acquisitions, flipped axes) and anisotropic spacing, because every
conversion goes through the volume's own RAS<->IJK matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vtk

from fmscope.errors import FmscopeError

# For the slice axis (0 = I, 1 = J, 2 = K): the permutation of the (k, j, i) array that puts
# that axis first, and which IJK axes become the slice's columns (x) and rows (y).
_PERMUTATION = {2: (0, 1, 2), 1: (1, 0, 2), 0: (2, 0, 1)}
_IN_PLANE = {2: (0, 1), 1: (0, 2), 0: (1, 2)}  # (x axis, y axis) in IJK numbering


@dataclass(frozen=True)
class SliceBox:
    """A box on one slice: IJK axis normal to the slice, slice index, [x0, y0, x1, y1] in-plane,
    and an optional inclusive slice range along the axis."""

    axis: int
    index: int
    box: tuple[float, float, float, float]
    slice_range: tuple[int, int] | None = None


def numpy_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """A vtkMatrix4x4 as a 4x4 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ras_to_ijk_matrix(volume_node) -> np.ndarray:
    """4x4 world RAS -> IJK matrix of a volume node, including a linear parent transform."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(matrix)
    ras_to_ijk = numpy_matrix(matrix)
    parent = volume_node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise FmscopeError(
                "The volume is under a non-linear transform.", "Harden the transform on the volume (Data module) first."
            )
        world_to_node = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformFromWorld(world_to_node)
        ras_to_ijk = ras_to_ijk @ numpy_matrix(world_to_node)
    return ras_to_ijk


def to_ijk(volume_node, points_ras: np.ndarray) -> np.ndarray:
    """(N, 3) RAS points -> (N, 3) continuous IJK coordinates."""
    homogeneous = np.c_[np.asarray(points_ras, dtype=float), np.ones(len(points_ras))]
    return (ras_to_ijk_matrix(volume_node) @ homogeneous.T).T[:, :3]


def permute_to_axis(array_kji: np.ndarray, axis: int) -> np.ndarray:
    """View of a (k, j, i) array with the slice axis first and the in-plane axes as (rows, cols)."""
    return np.transpose(array_kji, _PERMUTATION[axis])


def slice_first_axes(axis: int) -> tuple[int, int, int]:
    """The transpose of a (k, j, i) array that :func:`permute_to_axis` applies for IJK ``axis``."""
    return _PERMUTATION[axis]


def permute_back(array: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`permute_to_axis`."""
    return np.transpose(array, np.argsort(_PERMUTATION[axis]))


def _slice_box(
    ijk_min: np.ndarray, ijk_max: np.ndarray, axis: int, dims_ijk: tuple[int, int, int], index: float | None = None
) -> SliceBox:
    x_axis, y_axis = _IN_PLANE[axis]
    box = (ijk_min[x_axis], ijk_min[y_axis], ijk_max[x_axis], ijk_max[y_axis])
    centre = (ijk_min[axis] + ijk_max[axis]) / 2 if index is None else index
    key = int(np.floor(centre + 0.5))
    if not 0 <= key < dims_ijk[axis]:
        raise FmscopeError(
            f"The box lies outside the volume (slice {key} of 0..{dims_ijk[axis] - 1}).",
            "Place the box on a slice of the selected volume.",
        )
    first, last = int(np.ceil(ijk_min[axis] - 1e-6)), int(np.floor(ijk_max[axis] + 1e-6))
    span = None
    if last - first >= 1:  # a box that spans several slices also limits the propagation
        span = (max(first, 0), min(last, dims_ijk[axis] - 1))
    return SliceBox(axis, key, tuple(float(v) for v in box), span)


def slice_box_from_roi(volume_node, roi_node) -> SliceBox:
    """The slice box described by a markups ROI: the slice axis is the ROI's thinnest side in voxels."""
    size = np.array(roi_node.GetSize(), dtype=float)
    matrix = numpy_matrix(roi_node.GetObjectToWorldMatrix())
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    corners_object = np.c_[signs * size / 2, np.ones(8)]
    corners_ras = (matrix @ corners_object.T).T[:, :3]
    corners_ijk = to_ijk(volume_node, corners_ras)
    ijk_min, ijk_max = corners_ijk.min(axis=0), corners_ijk.max(axis=0)
    dims = volume_node.GetImageData().GetDimensions()
    axis = int(np.argmin(ijk_max - ijk_min))
    return _slice_box(ijk_min, ijk_max, axis, dims)


def slice_box_from_corners(volume_node, corner_a_ras, corner_b_ras, slice_normal_ras) -> SliceBox:
    """The slice box from two opposite corners drawn in a slice view with the given normal (RAS)."""
    corners_ijk = to_ijk(volume_node, np.array([corner_a_ras, corner_b_ras]))
    normal_ijk = ras_to_ijk_matrix(volume_node)[:3, :3] @ np.asarray(slice_normal_ras, dtype=float)
    axis = int(np.argmax(np.abs(normal_ijk)))
    dims = volume_node.GetImageData().GetDimensions()
    index = float(corners_ijk[:, axis].mean())
    ijk_min, ijk_max = corners_ijk.min(axis=0), corners_ijk.max(axis=0)
    ijk_min[axis] = ijk_max[axis] = index
    return _slice_box(ijk_min, ijk_max, axis, dims, index)


def slice_at(volume_node, point_ras, normal_ras) -> tuple[int, int]:
    """(IJK axis, slice index) of the volume slice through ``point_ras`` with normal ``normal_ras``: where a
    slice view shows the volume (its SliceToRAS: normal = 3rd column, point = 4th)."""
    normal_ijk = ras_to_ijk_matrix(volume_node)[:3, :3] @ np.asarray(normal_ras, dtype=float)
    axis = int(np.argmax(np.abs(normal_ijk)))
    index = int(np.floor(to_ijk(volume_node, np.array([point_ras]))[0, axis] + 0.5))
    dims = volume_node.GetImageData().GetDimensions()
    if not 0 <= index < dims[axis]:
        raise FmscopeError(
            f"The slice view shows slice {index}, outside the volume (0..{dims[axis] - 1}).",
            "Scroll the slice view to the corrected slice of the selected volume.",
        )
    return axis, index


def frame_box_from_roi(frame_node, roi_node) -> tuple[float, float, float, float]:
    """[i0, j0, i1, j1] of a markups ROI drawn on a 2D (one-slice) frame of a cine Sequence."""
    box = slice_box_from_roi(frame_node, roi_node)
    if box.axis != 2:
        raise FmscopeError(
            "The ROI is not drawn in the frames' plane.", "Draw the box in the slice view that shows the cine frames."
        )
    return box.box
