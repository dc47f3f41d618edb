"""Reading and writing images and volumes; volumes keep their geometry (SimpleITK).

Every write goes to a temporary file beside the target that is renamed into place, so a
failed or interrupted write never leaves a half-written file under the user's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import SimpleITK as sitk
import tifffile

from fmscope.atomic import atomic_write, file_suffix
from fmscope.errors import FmscopeError

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Volume:
    """A 3D array in (z, y, x) order with its physical geometry (SimpleITK conventions, LPS)."""

    array: np.ndarray
    spacing: tuple[float, float, float]  # x, y, z in mm
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 numbers, row-major

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        return self.spacing[2], self.spacing[1], self.spacing[0]


def _require_file(path: Path) -> None:
    if not path.exists():
        raise FmscopeError(f"No such file: {path}", "Check the path.")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D image (TIFF, PNG, JPEG, single-slice NIfTI/NRRD, DICOM) as a numpy array."""
    path = Path(path)
    _require_file(path)
    suffix = file_suffix(path)
    try:
        if suffix in TIFF_SUFFIXES:
            array = tifffile.imread(path)
        elif suffix in VOLUME_SUFFIXES or suffix in (".dcm", ""):
            array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        else:
            array = iio.imread(path)
    except Exception as error:  # the libraries raise many types for unreadable files
        raise FmscopeError(f"Cannot read {path} as an image ({type(error).__name__}: {str(error)[:200]}).",
                           "Give a TIFF, PNG, JPEG, NIfTI, NRRD or DICOM file.") from None
    array = np.asarray(array)
    return array[0] if array.ndim == 3 and array.shape[0] == 1 else array


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D volume (NIfTI, NRRD, MHA, or a DICOM series folder) with its geometry."""
    path = Path(path)
    _require_file(path)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(path))
            if not files:
                raise ValueError("no DICOM series in this folder")
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except Exception as error:
        raise FmscopeError(f"Cannot read {path} as a volume ({type(error).__name__}: {str(error)[:200]}).",
                           "Give a NIfTI (.nii/.nii.gz), NRRD, MHA file or a DICOM series folder.") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise FmscopeError(f"{path} is not a single-channel 3D volume (dimension {image.GetDimension()}, "
                           f"{image.GetNumberOfComponentsPerPixel()} components).",
                           "Use 'fmscope segment' for 2D images; split multi-channel volumes first.")
    return Volume(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), image.GetDirection())


def write_volume(labels: np.ndarray, like: Volume, path: str | os.PathLike) -> None:
    """Write a (z, y, x) label volume on the grid and geometry of ``like`` (atomic)."""
    if labels.shape != like.array.shape:
        raise FmscopeError(f"Label shape {labels.shape} differs from the volume's {like.array.shape}.")

    def write(target: Path) -> None:
        image = sitk.GetImageFromArray(labels)
        image.SetSpacing(like.spacing)
        image.SetOrigin(like.origin)
        image.SetDirection(like.direction)
        sitk.WriteImage(image, str(target), useCompression=True)

    atomic_write(Path(path), write)


def write_image(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write a 2D mask / label image or an RGB picture (TIFF, PNG, NIfTI/NRRD...), atomically."""
    path = Path(path)
    suffix = file_suffix(path)

    def write(target: Path) -> None:
        if suffix in TIFF_SUFFIXES:
            tifffile.imwrite(target, array, compression="zlib")
        elif suffix in VOLUME_SUFFIXES:
            sitk.WriteImage(sitk.GetImageFromArray(array), str(target), useCompression=True)
        else:
            iio.imwrite(target, array, extension=suffix)

    atomic_write(path, write)
