"""The images a segmenter is trained on (``fmscope train-segmenter``): one 2D picture, or the 2D slices of a stack.

Each input family is read by its own reader, the one every other command uses for it, so a file fmscope segments,
tracks or propagates through is also one it trains on (MedSAM's recipe trains on the slices of NIfTI volumes:
bowang-lab/MedSAM ``pre_CT_MR.py``):

- a NIfTI / NRRD / MHA volume of several slices, or a DICOM series folder: :func:`fmscope.imaging.io.read_volume`,
  the reader of ``fmscope volume`` (its z slices; a 4D image refused there by name);
- a TIFF stack (z, time or pages: ``tifffile.imwrite`` of a (z, y, x) array, ImageJ / OME stacks, pages written one
  by one): the frames reader of ``fmscope track`` (:mod:`fmscope.imaging.tracking.frames`: read by its axes; a
  channel axis, or time and z together, refused by name);
- anything else (PNG, JPEG, a 2D TIFF, a one-slice volume, one DICOM file): the picture reader of
  ``fmscope segment`` (:func:`fmscope.imaging.io.load_image`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmscope.atomic import file_suffix
from fmscope.errors import FmscopeError
from fmscope.imaging import io


def read_slices(path: str | os.PathLike) -> tuple[np.ndarray, io.Geometry | None]:
    """The pixels of the image or stack at ``path``: grey (H, W), RGB (H, W, 3), or slices (N, Y, X) / (N, Y, X, 3)
    (a volume's z slices; a TIFF stack's planes in file order), in the file's dtype, with the geometry of a medical
    file or calibrated picture (None for a TIFF stack and plain pictures). Raises
    :class:`fmscope.errors.FmscopeError` as the family's reader does."""
    path = Path(path)
    if file_suffix(path) in io.TIFF_SUFFIXES and path.is_file():
        from fmscope.imaging.tracking.frames import open_frames, tiff_holds_frames

        if tiff_holds_frames(path):
            try:
                frames = open_frames(path)
            except FmscopeError as error:  # a channel axis, time and z together ...: the fix for training
                raise FmscopeError(
                    error.problem,
                    "Save the slices to train on as their own (z, y, x) TIFF stack, one channel and one time point "
                    "(e.g. Fiji 'Image > Duplicate', or tifffile.imwrite of the array you mean).",
                ) from None
            return np.stack([frames[index] for index in range(frames.n_frames)]), None
    return io.read_grid(path)  # a volume (several slices, or a DICOM folder) by read_volume, else load_image


def labels_on_image_grid(
    labels: np.ndarray,
    labels_grid: io.Geometry | None,
    image_shape: tuple[int, ...],
    image_grid: io.Geometry | None,
    name: str,
) -> tuple[np.ndarray, str | None]:
    """``labels`` (numpy order) on the grid of the image ``name`` they annotate, and a note when they were moved.

    As they are when either grid is unknown (pictures, TIFF stacks: their shapes are compared by
    :func:`fmscope.training.segmenter.labelled_images`) or the two match; stored in the image's axis order when they
    hold the same voxel centres in another (an axis flipped or swapped: MONAI ``Orientationd``, nibabel
    ``as_closest_canonical``), put in place when they are a sub-block of its grid (a 3D Slicer segmentation cropped
    to its minimum extent; :func:`fmscope.imaging.same_voxels.onto_grid`, as ``fmscope eval`` does). Raises
    :class:`FmscopeError` for labels on another grid in patient space, which would teach the model masks that miss
    their objects."""
    from fmscope.imaging.same_voxels import on_grid

    if len(image_shape) == labels.ndim + 1:  # an RGB image's samples
        image_shape = image_shape[:-1]
    placed, how = on_grid(labels, labels_grid, tuple(image_shape), image_grid)
    if placed is not None:
        return placed, f"the label volume of {name} {how}: put on the image's grid voxel by voxel" if how else None

    def described(grid: io.Geometry, shape) -> str:
        numbers = (grid.spacing, grid.origin)
        spacing, origin = (tuple(round(v, 3) for v in values) for values in numbers)
        return f"shape {tuple(shape)}, spacing {spacing}, origin {origin}"

    raise FmscopeError(
        f"The labels of {name} lie on another grid than the image in patient space (image: "
        f"{described(image_grid, image_shape)}; labels: {described(labels_grid, labels.shape)}).",
        "Give the label image drawn on that image (same grid), or resample it onto the image first with nearest "
        "neighbour (3D Slicer's Resample Scalar Volume, SimpleITK Resample with sitkNearestNeighbor).",
    )
