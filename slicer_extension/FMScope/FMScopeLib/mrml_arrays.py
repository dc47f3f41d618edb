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
    return volume_view(volume_node).copy()


def volume_view(volume_node) -> np.ndarray:
    """The voxels of a scalar volume node, shape (k, j, i), without a copy: a numpy view of its vtkImageData's
    scalars (kept alive by the view), read range by range for volumes too large to copy whole."""
    if volume_node is None:
        raise FmscopeError("No volume is selected.", "Choose the input volume.")
    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise FmscopeError(f"The volume '{volume_node.GetName()}' has no voxels.", "Load the image data first.")
    if image.GetNumberOfScalarComponents() != 1:
        raise FmscopeError(
            f"The volume '{volume_node.GetName()}' has {image.GetNumberOfScalarComponents()} components.",
            "Use a single-component (grayscale) scalar volume.",
        )
    i, j, k = image.GetDimensions()
    if min(i, j, k) < 2:
        raise FmscopeError(
            f"'{volume_node.GetName()}' is a 2D image ({i} x {j} x {k} voxels); this module segments 3D volumes.",
            "Select a volume with several slices.",
        )
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return scalars.reshape(k, j, i)


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
    if not logic.SetBinaryLabelmapToSegment(
        _oriented_image(mask_kji, volume_node), segmentation_node, segment_id, logic.MODE_REPLACE
    ):
        raise FmscopeError(
            f"Slicer could not write segment '{segment_id}'.",
            "Check the segmentation node is in the scene and editable.",
        )


def read_segment(segmentation_node, segment_id: str, volume_node) -> np.ndarray:
    """The segment as a (k, j, i) bool array on the grid of ``volume_node`` (which it was written on).

    Segments share labelmap layers (one label value each): the node's GetBinaryLabelmapRepresentation gives this
    segment's voxels alone, where the module logic's GetSegmentBinaryLabelmapRepresentation gives the whole
    shared layer (every segment of it)."""
    ensure_segmentation_converters()
    image = slicer.vtkOrientedImageData()
    if not segmentation_node.GetBinaryLabelmapRepresentation(segment_id, image):
        raise FmscopeError(f"Segment '{segment_id}' has no binary labelmap.", "Choose another segment.")
    i, j, k = volume_node.GetImageData().GetDimensions()
    out = np.zeros((k, j, i), dtype=bool)
    x0, x1, y0, y1, z0, z1 = image.GetExtent()
    if x1 < x0:  # empty segment
        return out
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(
        z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1
    )
    out[z0 : z1 + 1, y0 : y1 + 1, x0 : x1 + 1] = values > 0
    return out


# Sequences (cine): 2D frames in, segmentation nodes out ---------------------------------------------
def frame_array(volume_node) -> np.ndarray:
    """A copy of a one-slice volume node's pixels: (j, i) for scalars, (j, i, 3) for RGB(A) vector volumes."""
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None or image.GetPointData().GetScalars() is None:
        name = volume_node.GetName() if volume_node is not None else "a frame"
        raise FmscopeError(f"'{name}' has no pixels.", "Load the frames' image data first.")
    i, j, k = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    if k != 1:
        raise FmscopeError(
            f"'{volume_node.GetName()}' has {k} slices; a cine frame has one.",
            "Use a Sequence of 2D frames (for a 3D volume use the volume controls).",
        )
    if components not in (1, 3, 4):
        raise FmscopeError(f"'{volume_node.GetName()}' has {components} components.", "Use grayscale or RGB frames.")
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(j, i, components)
    return (pixels[..., 0] if components == 1 else pixels[..., :3]).copy()


def sequence_frames(sequence_node) -> np.ndarray:
    """The (T, j, i[, 3]) stack of a Sequence of one-slice volume nodes, in the sequence's order."""
    if sequence_node is None:
        raise FmscopeError("No sequence is selected.", "Choose the cine Sequence (loaded as a sequence).")
    n = sequence_node.GetNumberOfDataNodes()
    if n == 0:
        raise FmscopeError(f"The sequence '{sequence_node.GetName()}' is empty.", "Choose a sequence with frames.")
    frames = []
    for index in range(n):
        node = sequence_node.GetNthDataNode(index)
        if node is None or not node.IsA("vtkMRMLVolumeNode"):
            kind = node.GetClassName() if node is not None else "nothing"
            raise FmscopeError(
                f"Item {index} of '{sequence_node.GetName()}' is {kind}, not an image.",
                "Choose a Sequence of 2D image frames.",
            )
        frame = frame_array(node)
        if frames and frame.shape != frames[0].shape:
            raise FmscopeError(
                f"Frame {index} of '{sequence_node.GetName()}' is {frame.shape}, frame 0 {frames[0].shape}.",
                "Give frames of one size.",
            )
        frames.append(frame)
    return np.stack(frames)


def new_sequence_like(sequence_node, name: str):
    """An empty Sequence (not yet in a scene) with the index name, unit and type of ``sequence_node``."""
    output = slicer.vtkMRMLSequenceNode()
    output.SetName(name)
    output.SetIndexName(sequence_node.GetIndexName())
    output.SetIndexUnit(sequence_node.GetIndexUnit())
    output.SetIndexType(sequence_node.GetIndexType())
    return output


def segmentation_for_frame(frame_node, mask_ji: np.ndarray, segment_id: str, color) -> slicer.vtkMRMLSegmentationNode:
    """A segmentation node (in no scene) on ``frame_node``'s grid with one segment ``segment_id`` = ``mask_ji``."""
    segmentation_node = slicer.vtkMRMLSegmentationNode()
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(frame_node)
    segmentation_node.GetSegmentation().AddEmptySegment(segment_id, segment_id, list(color))
    write_segment(segmentation_node, segment_id, mask_ji[None], frame_node)
    return segmentation_node


def add_to_browsers(scene, sequence_node, output) -> int:
    """Add ``output`` to every Sequence browser that plays ``sequence_node`` (so it follows the frame slider)
    with a proxy node; returns how many. None exist in a bare slicer-core scene."""
    count = 0
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if browser.IsSynchronizedSequenceNodeID(sequence_node.GetID(), True):
            browser.AddSynchronizedSequenceNodeID(output.GetID())
            count += 1
    return count
