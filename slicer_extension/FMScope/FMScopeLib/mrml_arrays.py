"""Numpy <-> MRML: volume voxels in, segment labelmaps out, on the volume's own grid.

Uses only MRML / vtkSegmentationCore calls that exist both in 3D Slicer and in the PyPI
package slicer-core (slicer.util's higher-level helpers need the Slicer application).
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from fmscope.errors import FmscopeError

BINARY_LABELMAP = "Binary labelmap"


def ensure_segmentation_converters() -> None:
    """Register the labelmap <-> surface conversion rules if nobody has (the Slicer app does it at
    start-up; a bare slicer-core process does not)."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.GetConverterRules():
        return
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def volume_array(volume_node) -> np.ndarray:
    """A copy of the voxels of a scalar volume node, shape (k, j, i)."""
    if volume_node is None:
        raise FmscopeError("No volume is selected.", "Choose the input volume.")
    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise FmscopeError(f"The volume '{volume_node.GetName()}' has no voxels.", "Load the image data first.")
    if image.GetNumberOfScalarComponents() != 1:
        raise FmscopeError(f"The volume '{volume_node.GetName()}' has {image.GetNumberOfScalarComponents()} "
                           "components.", "Use a single-component (grayscale) scalar volume.")
    i, j, k = image.GetDimensions()
    if min(i, j, k) < 2:
        raise FmscopeError(f"'{volume_node.GetName()}' is a 2D image ({i} x {j} x {k} voxels); "
                           "this module segments 3D volumes.", "Select a volume with several slices.")
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return scalars.reshape(k, j, i).copy()


def _oriented_image(mask_kji: np.ndarray, volume_node) -> slicer.vtkOrientedImageData:
    k, j, i = mask_kji.shape
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(i, j, k)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = mask_kji.astype(np.uint8).ravel()
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    image.SetImageToWorldMatrix(ijk_to_ras)
    return image


def write_segment(segmentation_node, segment_id: str, mask_kji: np.ndarray, volume_node) -> None:
    """Replace the content of ``segment_id`` by ``mask_kji`` (on the grid of ``volume_node``)."""
    ensure_segmentation_converters()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.SetBinaryLabelmapToSegment(_oriented_image(mask_kji, volume_node), segmentation_node, segment_id,
                                            logic.MODE_REPLACE):
        raise FmscopeError(f"Slicer could not write segment '{segment_id}'.",
                           "Check the segmentation node is in the scene and editable.")


def read_segment(segmentation_node, segment_id: str, volume_node) -> np.ndarray:
    """The segment as a (k, j, i) bool array on the grid of ``volume_node`` (which it was written on)."""
    ensure_segmentation_converters()
    image = slicer.vtkOrientedImageData()
    if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            segmentation_node, segment_id, image):
        raise FmscopeError(f"Segment '{segment_id}' has no binary labelmap.", "Choose another segment.")
    i, j, k = volume_node.GetImageData().GetDimensions()
    out = np.zeros((k, j, i), dtype=bool)
    x0, x1, y0, y1, z0, z1 = image.GetExtent()
    if x1 < x0:  # empty segment
        return out
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1)
    out[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1] = values > 0
    return out
