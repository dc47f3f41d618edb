"""Build MRML volumes and ROIs (slicer-core) with exact geometry for the Logic tests."""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from fmscope.imaging import io

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def volume_node(array_kji: np.ndarray, ijk_to_ras: np.ndarray, name: str = "ct", vtk_type: int = vtk.VTK_SHORT):
    """A scalar (or, for (k, j, i, 3) arrays, vector) volume node holding ``array_kji``, in no scene."""
    array_kji = np.asarray(array_kji)
    components = array_kji.shape[3] if array_kji.ndim == 4 else 1
    node = slicer.vtkMRMLScalarVolumeNode() if components == 1 else slicer.vtkMRMLVectorVolumeNode()
    node.SetName(name)
    k, j, i = array_kji.shape[:3]
    image = vtk.vtkImageData()
    image.SetDimensions(i, j, k)
    image.AllocateScalars(vtk_type, components)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = array_kji.reshape(-1, components).squeeze()
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras))
    return node


def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, array[r, c])
    return matrix


def add_volume(scene, array_kji: np.ndarray, ijk_to_ras: np.ndarray, name: str = "ct"):
    """A scalar volume node holding ``array_kji`` with the given 4x4 IJK -> RAS matrix, added to ``scene``."""
    node = volume_node(np.asarray(array_kji).astype(np.int16), ijk_to_ras, name)
    scene.AddNode(node)
    return node


def add_frame_sequence(scene, frames: np.ndarray, ijk_to_ras: np.ndarray, name: str = "cine", step: float = 0.04):
    """A Sequence of one-slice volume nodes (uint8 frames (T, j, i) or (T, j, i, 3)), index = time in s."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode")
    sequence.SetName(name)
    for index, frame in enumerate(frames):
        node = volume_node(frame[None], ijk_to_ras, f"{name} {index}", vtk.VTK_UNSIGNED_CHAR)
        sequence.SetDataNodeAtValue(node, f"{index * step:g}")
    return sequence


def labelmap_ijk_to_ras(segmentation_node, segment_id: str) -> np.ndarray:
    """The 4x4 image -> RAS matrix of a segment's binary labelmap (where its voxels lie in space)."""
    image = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, image
    )
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


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
