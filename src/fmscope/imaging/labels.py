"""The label-image reader: instance ids for training (``train-segmenter``) and evaluation (one reader).

A label image holds one integer id per pixel, 0 = background. People bring them in several forms
(docs/formats.md, "Label images"), each read here or refused by name:

- grey integer images (uint8 / uint16 / uint32 / int, TIFF, PNG, NIfTI ...): ids as stored;
- palette (indexed) PNG / TIFF: the palette *indices* are the ids (never the colours);
- binary masks (bool, 0/1, 0/255, 0/65535: one nonzero value): for instances, the separate
  regions (8-connected in 2D, 26 in 3D) become objects 1..N, and a note says so;
- huge or sparse ids (stitched tiles, hashed ids, up to 2**32 - 1): for instances, relabelled 1..N
  in the order of the ids (ids are names; memory does not grow with the largest id);
- float images whose values are whole numbers: read as ids;
- lossy pictures (JPEG, lossy WebP, JPEG-compressed TIFF): a binary mask with compression noise is
  thresholded at the midpoint, with a note; anything else refused (:mod:`fmscope.imaging.lossy_labels`);
- refused: RGB colour-coded labels (unless grey, R = G = B), negative ids, fractional values,
  NaN / infinite values.

:func:`read_label_image` reads a file; :func:`instance_labels` applies the same rules to an array
(a napari Labels layer, a Slicer segment) so every front end ends with the same ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from fmscope.atomic import file_suffix
from fmscope.errors import FmscopeError
from fmscope.imaging import complete_files, tiff_colour
from fmscope.imaging.lossy_labels import binary_mask_from_lossy, lossy_compression

FIX_COLOUR = (
    "Export the labels as one id per pixel (a grey 8/16/32-bit or an indexed PNG / TIFF: Fiji 'Image > "
    "Type > 16-bit', QuPath 'labeled image', napari 'Save Labels'), or a binary mask."
)


@dataclass(frozen=True)
class LabelImage:
    """Ids (H, W) or (Z, H, W) (uint16, or uint32 above 65,535 ids; 0 background), the file's geometry
    (:class:`fmscope.imaging.io.Geometry`, None for pictures) and what the reader did (``notes``)."""

    array: np.ndarray
    geometry: object | None = None
    notes: tuple[str, ...] = ()


def _pil_indices(path: Path) -> tuple[np.ndarray, bool] | None:
    """(array, colour) of a PNG / GIF / BMP read with Pillow, palette indices kept; None if Pillow cannot."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "P":  # indexed: the indices are the ids
                return np.asarray(image), False
            if mode == "PA":
                return np.asarray(image.getchannel(0)), False
            if mode == "1":
                return np.asarray(image, dtype=bool), False
            if mode in ("LA", "La"):
                return np.asarray(image.getchannel(0)), False
            array = np.asarray(image)
            return array, array.ndim == 3
    except OSError:
        return None


def _tiff_ids(path: Path) -> tuple[np.ndarray, bool]:
    """(array, colour) of a TIFF's first series; palette TIFFs give their indices (tifffile's default)."""
    import tifffile

    from fmscope.imaging import io

    with tifffile.TiffFile(path) as tif:
        complete_files.require_whole_ifd_chain(tif, path)  # a label stack cut short: not its first slices alone
        io.refuse_several_series(tif, path, "reads one label image")
        series = tif.series[0]
        try:
            array, axes = series.asarray(), series.axes.upper()
        except Exception:  # a file cut short is named as such; else the reader's own message
            short = complete_files.tiff_cut_short(tif, path)
            if short is None:
                raise
            raise short from None
        photometric = tif.pages[0].photometric
        if photometric not in (tifffile.PHOTOMETRIC.PALETTE, tifffile.PHOTOMETRIC.MINISWHITE):
            if tiff_colour.needs_conversion(tif.pages[0]):  # CMYK, CIELAB, raw YCbCr ...: colours, not ids
                raise tiff_colour.refuse(tif.pages[0], path, " (a colour picture, not a label image)")
    # tifffile.imwrite stores (..., 3 | 4, Y, X) arrays as planar RGB(A) pages: the user's planes, not colour
    planes = series.kind == "shaped" and axes.endswith("SYX")
    colour = "S" in axes and photometric == tifffile.PHOTOMETRIC.RGB and not planes
    if colour:
        array = np.moveaxis(array, axes.index("S"), -1)
    elif "S" in axes and array.shape[axes.index("S")] == 2 and not planes:  # grey + alpha
        array = np.take(array, 0, axis=axes.index("S"))
    return np.squeeze(array) if array.ndim > 2 else array, colour


def read_label_image(path: str | os.PathLike, instances: bool = True) -> LabelImage:
    """The label image at ``path`` (PNG, TIFF, NIfTI / NRRD / MHA, DICOM, a DICOM series folder).

    ``instances=True`` (training): binary masks become one object per separate region and ids are
    made sequential (:func:`instance_labels`). ``instances=False`` (evaluation): the ids stay as
    stored, so ``--label N`` means the file's N. Raises :class:`FmscopeError` naming the variant
    for what is not a label image.
    """
    from fmscope.imaging import io

    path = Path(path)
    if not path.exists():
        raise FmscopeError(f"No such file: {path}", "Check the path.")
    suffix = file_suffix(path)
    geometry = None
    notes: tuple[str, ...] = ()
    try:
        if suffix in io.TIFF_SUFFIXES:
            array, colour = _tiff_ids(path)
        elif path.is_dir() or suffix in io.VOLUME_SUFFIXES or suffix == ".dcm" or io.is_dicom(path):
            array, geometry = io.read_grid(path)
            colour = False
        else:
            read = _pil_indices(path)
            if read is None:
                array, colour = io.read_image(path), False  # turned by its EXIF orientation there
            else:
                array, colour = read
                array, turned = io.as_shown(array, path)  # on the picture as viewers show it, as the image is
                notes += (turned,) if turned else ()
            colour = colour or array.ndim == 3
        compression = None if path.is_dir() or suffix in io.VOLUME_SUFFIXES else lossy_compression(path)
    except FmscopeError:
        raise
    except Exception as error:  # the libraries raise many types for unreadable files
        raise FmscopeError(
            f"Cannot read {path} as a label image ({type(error).__name__}: {str(error)[:200]}).",
            "Give a PNG, TIFF, NIfTI, NRRD or DICOM label image.",
        ) from None
    if compression is not None:
        array, note = binary_mask_from_lossy(array, path.name, compression)
        notes, colour = notes + ((note,) if note else ()), False
    if colour:
        array = _grey_from_colour(array, path.name)
    if instances:
        labels = instance_labels(array, path.name)
        return LabelImage(labels.array, geometry, notes + labels.notes)
    return LabelImage(_ids(array, path.name), geometry, notes)


def _grey_from_colour(array: np.ndarray, name: str) -> np.ndarray:
    """An (H, W, 3 | 4) picture whose colour samples are equal as its grey ids; colour-coded labels refused."""
    rgb = array[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    colours = len(np.unique(rgb.reshape(-1, 3), axis=0))
    raise FmscopeError(
        f"{name} is an RGB colour image ({colours} colours), not a label image: colour-coded "
        "labels cannot be told apart from a picture, so fmscope does not guess ids from colours.",
        FIX_COLOUR,
    )


def _ids(array: np.ndarray, name: str) -> np.ndarray:
    """The array as non-negative integer ids (bool -> 0/1, whole-number floats -> integers), or refused."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise FmscopeError(f"{name} holds NaN or infinite values; a label image holds integer ids.", FIX_COLOUR)
        if not np.array_equal(array, np.round(array)):
            raise FmscopeError(
                f"{name} holds fractional values ({array.dtype}): a probability or intensity map, not integer ids.",
                "Threshold it into a mask, or give the label image.",
            )
        if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint32).max):
            raise FmscopeError(f"{name} holds ids outside 0..{np.iinfo(np.uint32).max}.", "Relabel the ids 1..N.")
        return array.astype(np.uint32)
    if array.dtype.kind not in "ui":
        raise FmscopeError(f"{name} holds {array.dtype} values, not integer ids.", FIX_COLOUR)
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise FmscopeError(
            f"{name} holds negative ids (down to {array.min()}); 0 is background, objects are 1, 2, ...",
            "Set ignored pixels (e.g. -1) to 0 and save the ids as unsigned integers.",
        )
    return array


@dataclass(frozen=True)
class InstanceLabels:
    """Sequential ids 1..N (uint16, uint32 above 65,535 objects) and what was done to get them."""

    array: np.ndarray
    notes: tuple[str, ...] = ()


def instance_labels(array: np.ndarray, name: str = "the labels") -> InstanceLabels:
    """Instance ids 1..N from a label array (H, W) or (Z, H, W): a binary mask is split into its
    separate regions (8-connected in 2D, 26 in 3D), other ids are renumbered 1..N in their order
    (ids are names; memory does not depend on the largest id). Refusals as :func:`read_label_image`."""
    ids = _ids(array, name)
    values = np.unique(ids)
    objects = values[values != 0]
    notes: list[str] = []
    if len(objects) == 1:
        structure = np.ones((3,) * ids.ndim, dtype=bool)
        regions, count = ndimage.label(ids != 0, structure=structure)
        if count > 1:
            notes.append(
                f"{name} is a binary mask (values 0 and {objects[0]}): its {count} separate regions are "
                f"taken as {count} objects (connected components, {3**ids.ndim - 1}-connected)"
            )
        return InstanceLabels(regions.astype(np.uint16 if count <= 65535 else np.uint32), tuple(notes))
    dtype = np.uint16 if len(objects) <= 65535 else np.uint32
    if not len(objects) or objects[-1] == len(objects):
        return InstanceLabels(ids.astype(dtype, copy=False), ())
    order = np.searchsorted(values, ids)  # the rank of each pixel's id; 0 keeps rank 0 (it is the smallest)
    relabelled = (order if values[0] == 0 else order + 1).astype(dtype)
    if objects[-1] > 65535:
        notes.append(
            f"{name}: ids up to {int(objects[-1])} renumbered 1..{len(objects)} in their order (ids are names)"
        )
    return InstanceLabels(relabelled, tuple(notes))
