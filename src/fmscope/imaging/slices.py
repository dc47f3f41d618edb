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


def read_slices(path: str | os.PathLike) -> np.ndarray:
    """The pixels of the image or stack at ``path``: grey (H, W), RGB (H, W, 3), or slices (N, Y, X) / (N, Y, X, 3)
    (a volume's z slices; a TIFF stack's planes in file order), in the file's dtype. Raises
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
            return np.stack([frames[index] for index in range(frames.n_frames)])
    return io.read_grid(path)[0]  # a volume (several slices, or a DICOM folder) by read_volume, else load_image
