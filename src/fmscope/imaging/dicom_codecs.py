"""Frames of a compressed multi-frame DICOM that pydicom cannot decode, decoded by GDCM (through SimpleITK).

pydicom decodes JPEG Lossless (1.2.840.10008.1.2.4.57 / .70: the usual XA / RF cine syntax), JPEG-LS and JPEG 2000
only with plugins fmscope does not install (pylibjpeg-libjpeg, python-gdcm: pydicom/pydicom#1282); SimpleITK, which
fmscope installs, carries GDCM, which decodes them. GDCM reads a file whole, so the cine is decoded once and its
frames kept (a 100-frame 1024 x 1024 8-bit XA run: 100 MB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fmscope.errors import FmscopeError


def decode_all_frames(path: Path, n_frames: int, syntax: str, pydicom_error: Exception) -> np.ndarray:
    """Every frame of the DICOM file at ``path`` as GDCM decodes it: (frames, rows, columns) or (frames, rows,
    columns, samples), in the stored pixel type (GDCM applies a Rescale Slope / Intercept where the file has one).
    ``syntax``: the file's transfer syntax name; ``pydicom_error``: why pydicom could not decode it, for the message.
    Raises :class:`FmscopeError` naming the transfer syntax and a working fix when GDCM cannot decode it either, or
    decodes another number of frames than ``n_frames``."""
    try:
        image = sitk.ReadImage(str(path), imageIO="GDCMImageIO")
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as error:
        raise FmscopeError(
            f"Cannot decode the pixel data of {path}, stored as {syntax}: pydicom cannot decode it "
            f"({type(pydicom_error).__name__}: {str(pydicom_error)[:160]}), and GDCM says: {str(error).strip()[:160]}.",
            "Install a decoder pydicom uses (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg, or "
            "python-gdcm), or save the file uncompressed (gdcmconv --raw in.dcm out.dcm, or dcmdjpeg).",
        ) from None
    if array.ndim == 2 or (array.ndim == 3 and image.GetNumberOfComponentsPerPixel() > 1):
        array = array[np.newaxis]
    if array.shape[0] != n_frames:
        raise FmscopeError(
            f"{path} ({syntax}) decodes to {array.shape[0]} frames, but its header says {n_frames}.",
            "Copy or export the file again from its source; fmscope reads only complete files.",
        )
    return array
