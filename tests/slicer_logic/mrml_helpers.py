"""Build MRML volumes and ROIs (slicer-core) with exact geometry for the Logic tests."""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from fmscope.imaging import io

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def add_volume(scene, array_kji: np.ndarray, ijk_to_ras: np.ndarray, name: str = "ct"):
    """A scalar volume node holding ``array_kji`` with the given 4x4 IJK -> RAS matrix."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    scene.AddNode(node)
    k, j, i = array_kji.shape
    image = vtk.vtkImageData()
    image.SetDimensions(i, j, k)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = array_kji.astype(np.int16).ravel()
    node.SetAndObserveImageData(image)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, ijk_to_ras[r, c])
    node.SetIJKToRASMatrix(matrix)
    return node


def ijk_to_ras_from_volume(volume: io.Volume) -> np.ndarray:
    """Slicer's IJK -> RAS matrix for a volume read with SimpleITK (LPS)."""
    direction = np.array(volume.direction).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction @ np.diag(volume.spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.array(volume.origin)
    return matrix


def add_roi(scene, ijk_to_ras: np.ndarray, ijk_min, ijk_max):
    """A markups ROI covering the IJK box [ijk_min, ijk_max] (axis-aligned in IJK)."""
    corners = np.array(np.meshgrid(*zip(ijk_min, ijk_max))).reshape(3, -1).T
    ras = (ijk_to_ras @ np.c_[corners, np.ones(len(corners))].T).T[:, :3]
    roi = slicer.vtkMRMLMarkupsROINode()
    scene.AddNode(roi)
    low, high = ras.min(axis=0), ras.max(axis=0)
    roi.SetCenter(*((low + high) / 2))
    roi.SetSize(*(high - low))
    return roi
