"""Reading and writing images and volumes; medical files keep their geometry (SimpleITK).

Pictures are read as files carry them and handed on as grey (H, W) or RGB (H, W, 3): an alpha
channel is dropped (grey + alpha -> grey, RGBA -> RGB), palettes are expanded, 1-bit pictures
become 0 / 255, 16-bit colour stays 16-bit. Only a real third axis (z, time, channels of a
TIFF stack) makes an array that is not one image.

Every write goes to a temporary file beside the target that is renamed into place, so a
failed or interrupted write never leaves a half-written file under the user's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import imageio.v3 as iio
import numpy as np
import SimpleITK as sitk
import tifffile

from fmscope.atomic import atomic_write, file_suffix
from fmscope.errors import FmscopeError
from fmscope.imaging import (
    complete_files,
    dicom_objects,
    lazy_image,
    nifti_header,
    nrrd_plane,
    picture_geometry,
    tiff_axes,
    tiff_colour,
)
from fmscope.imaging.lazy_image import LazyImage

if TYPE_CHECKING:
    from fmscope.imaging.dicom_series import Stack

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
TIFF_SUFFIXES = (".tif", ".tiff")
TIFF_AXES = {"Z": "z slices", "T": "time points", "C": "channels", "I": "pages", "Q": "planes", "R": "tiles"}


@dataclass(frozen=True)
class Geometry:
    """Where a pixel grid lies in patient space (SimpleITK conventions: x first, LPS, mm).

    ``spacing`` and ``origin`` have one number per axis of the file (2 or 3), ``direction``
    the square of that, row-major. A one-slice volume or a DICOM slice keeps all three axes.
    ``nifti``: a NIfTI input's raw header (:mod:`fmscope.imaging.nifti_header`), whose qform, sform and codes
    NIfTI outputs carry as they are (None for other files); not part of the comparison.
    ``unit``: None for medical files (mm); for a microscopy picture's pixel size and position (OME-TIFF, ImageJ
    TIFF, OME-Zarr: :mod:`fmscope.imaging.picture_geometry`) the OME-NGFF name of the unit the file stated them in
    (numbers still in mm; "" when the file named no unit: numbers as stored), which its OME-Zarr / TIFF outputs use.
    ``file_axes``: for a one-slice 3D file whose one slice lies along its first or second axis (a sagittal slice of
    shape (1, 512, 512) as nibabel stores it), the file's axis (x, y, z order) that each of this geometry's three
    axes is: (columns, rows, the slice), as :meth:`one_slice` orders them; None when they are the file's own order.
    Writers put a 2D mask back in the file's axis order (:meth:`as_stored`).
    ``plane_in_space``: the file is a 2D NRRD placed in 3D space (:mod:`fmscope.imaging.nrrd_plane`), read as the
    one-slice 3D image it equals; ``.nrrd`` outputs keep its layout (2D, 3-vector space directions).
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    nifti: bytes | None = field(default=None, compare=False, repr=False)
    unit: str | None = field(default=None, compare=False)
    file_axes: tuple[int, ...] | None = field(default=None, compare=False)
    plane_in_space: bool = field(default=False, compare=False)

    @classmethod
    def of_picture(cls, calibration: picture_geometry.Calibration | None) -> Geometry | None:
        """A picture's pixel size and position ((spacing x, y), (origin x, y), unit), rows and columns along y and
        x; None for a picture that states none."""
        if calibration is None:
            return None
        spacing, origin, unit = calibration
        return cls(tuple(spacing), tuple(origin), (1.0, 0.0, 0.0, 1.0), unit=unit)

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))

    @property
    def spacing_yx(self) -> tuple[float, float]:
        """In-plane pixel size (row, column) in mm."""
        return self.spacing[1], self.spacing[0]

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def one_slice(self, slice_axis: int) -> Geometry:
        """This 3D geometry with its axes ordered (columns, rows, slice) for a one-slice file whose one slice lies
        along ``slice_axis`` (0, 1, 2: x, y, z as SimpleITK orders them): the other two keep their order, columns the
        faster. The voxels stay where they are in space; ``file_axes`` records the order for the writers."""
        if slice_axis == 2:
            return self
        order = tuple(axis for axis in range(3) if axis != slice_axis) + (slice_axis,)
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)[:, order]
        spacing = tuple(self.spacing[axis] for axis in order)
        return replace(self, spacing=spacing, direction=tuple(direction.ravel().tolist()), file_axes=order)

    def as_stored(self, array: np.ndarray, rgb: bool = False) -> sitk.Image:
        """A 2D mask or picture (H, W[, 3]) on this geometry as a SimpleITK image of the file's own dimension and
        axis order: 2D; a one-slice 3D file's (1, H, W), or (H, 1, W) / (H, W, 1) (numpy order) when its slice lies
        along its second / first axis (``file_axes``)."""
        image = self.apply_to(sitk.GetImageFromArray(array[None] if len(self.spacing) == 3 else array, isVector=rgb))
        if self.file_axes is None:
            return image
        return sitk.PermuteAxes(image, [int(axis) for axis in np.argsort(self.file_axes)])

    def matches(self, other: Geometry, tolerance_mm: float = 1e-3) -> bool:
        """Same grid in patient space (a 2D geometry is compared with a 3D one's first two axes)."""
        n = min(len(self.spacing), len(other.spacing))

        def plane(g: Geometry) -> np.ndarray:
            d = np.asarray(g.direction).reshape(len(g.spacing), len(g.spacing))[:n, :n]
            return np.concatenate([np.asarray(g.spacing[:n]), np.asarray(g.origin[:n]), d.ravel()])

        return bool(np.abs(plane(self) - plane(other)).max() <= tolerance_mm)


@dataclass(frozen=True)
class Volume:
    """A 3D array in (z, y, x) order with its physical geometry (SimpleITK conventions, LPS)."""

    array: np.ndarray
    spacing: tuple[float, float, float]  # x, y, z in mm
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 numbers, row-major
    source: str = ""  # what was read, when a folder held a choice (a DICOM series)
    nifti: bytes | None = field(default=None, repr=False)  # a NIfTI input's raw header (see Geometry)
    notes: tuple[str, ...] = ()  # what the reader mended, for the front ends to show (dicom_series.Stack.notes)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        return self.spacing[2], self.spacing[1], self.spacing[0]

    @property
    def geometry(self) -> Geometry:
        return Geometry(tuple(self.spacing), tuple(self.origin), tuple(self.direction), self.nifti)


@dataclass(frozen=True)
class Image2D:
    """One 2D image as fmscope segments it: grey (H, W) or RGB (H, W, 3), in the file's dtype.

    ``geometry`` is the file's own (2D, or 3D for a one-slice volume or DICOM slice) for
    medical formats; for pictures the pixel size and position an OME-TIFF, ImageJ TIFF or OME-Zarr states
    (``Geometry.unit`` set), else None (PNG, JPEG, plain TIFF...).
    """

    array: np.ndarray
    geometry: Geometry | None
    note: str = ""  # what fmscope did to show the pixels as viewers do (e.g. an EXIF orientation applied)


def _require_file(path: Path) -> None:
    if not path.exists():
        raise FmscopeError(f"No such file: {path}", "Check the path.")


def _grey_or_rgb(array: np.ndarray, path: Path, bgr: bool = False) -> np.ndarray:
    """(H, W) or (H, W, 3) from a decoded picture whose last axis, if any, holds its samples."""
    if array.dtype == bool:  # 1-bit pictures: black and white as 0 and 255
        array = array.astype(np.uint8) * 255
    if array.ndim == 3 and array.shape[-1] in (1, 2):  # grey, grey + alpha
        return array[..., 0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):  # RGB, RGBA
        return array[..., 2::-1] if bgr else array[..., :3]
    if array.ndim == 2:
        return array
    raise FmscopeError(
        f"{path} holds an array of shape {array.shape}, not one 2D picture.", "Save one grey or colour image per file."
    )


def refuse_several_series(tiff: tifffile.TiffFile, path: Path, purpose: str) -> None:
    """Raise FmscopeError when the TIFF holds several series whose planes are as large as the first's: the
    positions / scenes of a multi-position acquisition (Micro-Manager, NIS-Elements, ZEN; cgohlke/tifffile#54) or
    images saved one after another, of which tifffile's first series is only one. Thumbnails, slide labels and
    reduced levels (smaller planes) pass. ``purpose``: what fmscope does with one ("tracks one")."""

    def plane(series) -> tuple[int, int]:
        sizes = dict(zip(series.axes.upper(), series.shape))
        return sizes.get("Y", 0), sizes.get("X", 0)

    first = tiff.series[0]
    alike = [index for index, series in enumerate(tiff.series) if index and plane(series) == plane(first)]
    if alike:
        names = ", ".join(
            f"{index}: {tiff.series[index].name or 'unnamed'} ({tiff.series[index].axes} "
            f"{tuple(tiff.series[index].shape)})"
            for index in [0, *alike][:6]
        )
        raise FmscopeError(
            f"{path} holds {len(alike) + 1} series of the same image size (positions / scenes of a multi-position "
            f"acquisition, or images saved one after another: {names}{', ...' if len(alike) > 5 else ''}); "
            f"fmscope {purpose} and does not pick the first for you.",
            f"Save the series you mean as its own file, e.g. tifffile.imwrite('pos1.tif', tifffile.imread("
            f"'{path.name}', series=1)), or open it in Fiji (Bio-Formats asks which series) and save that.",
        )


def _tiff_pixels(tiff: tifffile.TiffFile, path: Path) -> tuple[np.ndarray, str]:
    """An open TIFF's first series, with its samples axis (RGB, grey + alpha) last, in the colours viewers show
    (:mod:`fmscope.imaging.tiff_colour`: CMYK, palette, MINISWHITE converted, with a note); other axes refused."""
    refuse_several_series(tiff, path, "segments one image")
    series = tiff.series[0]
    array, axes = series.asarray(), series.axes
    if "S" in axes:
        array, axes = np.moveaxis(array, axes.index("S"), -1), axes.replace("S", "") + "S"
    extra = [(axis, size) for axis, size in zip(axes, array.shape) if axis not in "YXS" and size > 1]
    if extra:
        what = ", ".join(f"{size} {TIFF_AXES.get(axis, f'{axis!r} planes')}" for axis, size in extra)
        raise FmscopeError(
            f"{path} holds a stack ({what}; axes {axes}, shape {array.shape}), not one 2D image.",
            "Save the plane or channel to segment as its own file; for a z-stack with voxel "
            "sizes use 'fmscope volume' on a NIfTI / NRRD.",
        )
    plane = array.reshape([size for axis, size in zip(axes, array.shape) if axis in "YXS"])
    plane, note = tiff_colour.as_picture(plane, series.keyframe, path)
    return _grey_or_rgb(plane, path), note


# EXIF Orientation tag (0x0112) -> how the stored pixels become the picture viewers show (as Pillow's
# ImageOps.exif_transpose does; tests/test_realworld_imaging.py compares every value with it).
EXIF_ORIENTATION = 0x0112
ORIENTATIONS = {
    2: ("mirrored left-right", lambda a: a[:, ::-1]),
    3: ("rotated 180 degrees", lambda a: a[::-1, ::-1]),
    4: ("mirrored top-bottom", lambda a: a[::-1]),
    5: ("transposed", lambda a: a.swapaxes(0, 1)),
    6: ("rotated 90 degrees clockwise", lambda a: np.rot90(a, -1)),
    7: ("transversed", lambda a: a[::-1, ::-1].swapaxes(0, 1)),
    8: ("rotated 90 degrees counter-clockwise", lambda a: np.rot90(a, 1)),
}


def _exif_orientation(path: Path) -> int:
    """The picture's EXIF Orientation (1 = as stored) from its header; 1 when it has none or it is unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            value = picture.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # not a format Pillow reads: no EXIF to apply
        return 1
    return value if value in ORIENTATIONS else 1


ANIMATED_FORMATS = {"GIF": "animated GIF", "PNG": "APNG", "WEBP": "animated WebP"}  # Pillow format -> name


def picture_animation(path: Path) -> tuple[int, str]:
    """(frames, kind) of an animated GIF, APNG or animated WebP as Pillow counts them (``n_frames``), e.g.
    (4, "animated GIF"); (1, "") for a still picture, another format (an MPO JPEG's second picture is a preview,
    not a frame) or a file Pillow cannot open."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            frames = int(getattr(picture, "n_frames", 1))
            kind = ANIMATED_FORMATS.get(picture.format or "")
    except Exception:  # not a format Pillow reads: no animation
        return 1, ""
    return (frames, kind) if kind and frames > 1 else (1, "")


def _read_picture(path: Path) -> tuple[np.ndarray, str]:
    """PNG, JPEG, BMP... via OpenCV (keeps 16-bit colour), else imageio (GIF and the rest); turned as its EXIF
    Orientation says (phone and camera JPEGs store pixels sideways), so prompts and masks are on the picture as
    viewers show it. Returns (pixels (H, W) or (H, W, 3), a note when turned). A PNG / JPEG cut short is refused
    (:func:`fmscope.imaging.complete_files.require_complete_picture`), never read with its missing rows grey."""
    complete_files.require_complete_picture(path)
    frames, kind = picture_animation(path)
    if frames > 1:
        raise FmscopeError(
            f"{path} is an {kind} of {frames} frames, not one 2D image.",
            f"Track its frames with 'fmscope track {path.name}', or save the frame to segment as a picture of "
            "its own (Pillow: im = Image.open(path); im.seek(k); im.save('frame.png')).",
        )
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # UNCHANGED: OpenCV leaves the orientation to us
    array = (
        _grey_or_rgb(array, path, bgr=True)
        if array is not None
        else _grey_or_rgb(np.asarray(iio.imread(path, index=0)), path)
    )
    return as_shown(array, path)


def as_shown(array: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """Pixels (H, W[, S]) read from the picture file ``path`` turned as its EXIF Orientation says (as viewers show
    it); a label image drawn on a picture turns with it. Returns (pixels, a note when turned, else "")."""
    orientation = _exif_orientation(path)
    if orientation == 1:
        return array, ""
    what, turn = ORIENTATIONS[orientation]
    turned = np.ascontiguousarray(turn(array))
    return turned, (
        f"{path.name} is stored {array.shape[1]}x{array.shape[0]} with EXIF orientation {orientation}; "
        f"read {what} as viewers show it ({turned.shape[1]}x{turned.shape[0]}): boxes and masks are on "
        "that picture"
    )


def is_dicom(path: Path) -> bool:
    """A DICOM Part 10 file (the 'DICM' marker after the 128-byte preamble), whatever its name."""
    try:
        with open(path, "rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _slice_axis(size: tuple[int, ...]) -> int | None:
    """The axis (0, 1, 2: x, y, z as SimpleITK orders them) along which a 3D image of ``size`` voxels is one slice
    thick: z first (an axial slice), then y (coronal), then x (sagittal: nibabel's ``img.slicer[i:i+1]``,
    ``fslroi x 100 1``); None when every axis holds several voxels (a volume)."""
    return next((axis for axis in (2, 1, 0) if size[axis] == 1), None)


def _nrrd_plane_in_space(path: Path) -> bool:
    """Whether ``path`` is a 2D NRRD placed in 3D space (:mod:`fmscope.imaging.nrrd_plane`)."""
    if file_suffix(path) not in NRRD_SUFFIXES:
        return False
    header = nrrd_plane.read_header(path)
    return header is not None and header.is_plane_in_space


def _read_medical(path: Path) -> Image2D:
    """A 2D NIfTI / NRRD / MHA, a one-slice volume (its one slice along any of its three axes: (H, W) are the other
    two, the faster one the columns), or one DICOM file, with its geometry (a DICOM SEG, RTSTRUCT ... refused:
    :mod:`fmscope.imaging.dicom_objects`)."""
    dicom_objects.require_image(path)
    image, nifti = (
        read_medical_image(path) if file_suffix(path) in VOLUME_SUFFIXES else (sitk.ReadImage(str(path)), None)
    )
    array = sitk.GetArrayFromImage(image)
    components = image.GetNumberOfComponentsPerPixel()
    geometry = replace(Geometry.of(image), nifti=nifti, plane_in_space=_nrrd_plane_in_space(path))
    if image.GetDimension() == 3:
        size = image.GetSize()
        slice_axis = _slice_axis(size)
        if slice_axis is None:
            raise FmscopeError(
                f"{path} is a volume of {size[2]} slices ({size[0]} x {size[1]} x {size[2]} voxels, none of its "
                "axes one voxel thick), not one 2D image.",
                "Use 'fmscope volume' for volumes, or save the slice to segment on its own.",
            )
        array = np.take(array, 0, axis=2 - slice_axis)  # numpy order is (z, y, x)
        geometry = geometry.one_slice(slice_axis)
    if image.GetDimension() not in (2, 3) or (components > 1 and array.ndim != 3):
        raise FmscopeError(
            f"{path} is a {image.GetDimension()}D image with {components} components per pixel.",
            "Give a 2D image or a single slice.",
        )
    if components > 1:
        array = _grey_or_rgb(array, path)
    return Image2D(array, geometry)


def load_image(path: str | os.PathLike) -> Image2D:
    """Read one 2D image with its geometry: TIFF, PNG, JPEG, BMP, GIF (no geometry), 2D or one-slice
    NIfTI / NRRD / MHA, or one DICOM file (geometry kept). Raises FmscopeError for unreadable
    files and for stacks (a TIFF with z / time / channel planes, a volume of several slices)."""
    path = Path(path)
    _require_file(path)
    if path.is_dir():
        raise FmscopeError(
            f"{path} is a folder, not an image file.",
            "Give one image file; for a DICOM series folder use 'fmscope volume'.",
        )
    suffix = file_suffix(path)
    try:
        if suffix in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tiff:
                try:
                    pixels, note = _tiff_pixels(tiff, path)
                except FmscopeError:
                    raise
                except Exception as error:
                    raise complete_files.tiff_cut_short(tiff, path) or _unreadable(path, error, EAGER_FIX) from None
                return Image2D(pixels, Geometry.of_picture(picture_geometry.from_tiff(tiff)), note)
        if suffix in VOLUME_SUFFIXES or suffix == ".dcm" or is_dicom(path):
            return _read_medical(path)
        pixels, note = _read_picture(path)
        return Image2D(pixels, None, note)
    except FmscopeError:
        raise
    except Exception as error:  # the libraries raise many types for unreadable files
        raise _unreadable(path, error, EAGER_FIX) from None


EAGER_FIX = "Give a TIFF, PNG, JPEG, NIfTI, NRRD or DICOM file."
LAZY_FIX = "Give a tiled TIFF, an OME-Zarr image folder (OME-NGFF multiscales), or a smaller image."


def _unreadable(path: Path, error: Exception, fix: str) -> FmscopeError:
    """The error for a file a library failed to read (they raise many types for damaged files)."""
    return FmscopeError(f"Cannot read {path} as an image ({type(error).__name__}: {str(error)[:200]}).", fix)


def _open_tiff(path: Path, eager_max_pixels: int) -> Image2D | LazyImage:
    """:func:`open_image` for a TIFF, opened once: read whole when its first series has at most
    ``eager_max_pixels`` pixels per plane, else lazily (:func:`_open_lazy_tiff`)."""
    try:
        tiff = tifffile.TiffFile(path)
    except Exception:  # not a TIFF tifffile reads: the eager reader names the problem
        return load_image(path)
    huge = False
    try:
        sizes = dict(zip(tiff.series[0].axes, tiff.series[0].shape))
        huge = sizes.get("Y", 1) * sizes.get("X", 1) > eager_max_pixels
        if huge:
            return _open_lazy_tiff(tiff, path)
        with tiff:
            pixels, note = _tiff_pixels(tiff, path)
            return Image2D(pixels, Geometry.of_picture(picture_geometry.from_tiff(tiff)), note)
    except FmscopeError:
        tiff.close()
        raise
    except Exception as error:
        short = complete_files.tiff_cut_short(tiff, path)
        tiff.close()
        raise short or _unreadable(path, error, LAZY_FIX if huge else EAGER_FIX) from None


def _open_lazy_tiff(tiff: tifffile.TiffFile, path: Path) -> LazyImage:
    """The first series of an open TIFF / BigTIFF / OME-TIFF as a :class:`LazyImage` (tifffile's zarr store); the
    LazyImage closes ``tiff`` (closed here on an error)."""
    import zarr

    try:
        series = tiff.series[0]
        page = series.pages[0]
        axes, shape = series.axes, tuple(series.shape)
        lazy_image.check_axes(axes, shape, path)
        if tiff_colour.needs_conversion(page):
            raise tiff_colour.refuse(page, path, " in a huge image read in parts")
        chunk_bytes = int(np.prod(page.chunks)) * np.dtype(series.dtype).itemsize
        geometry = Geometry.of_picture(picture_geometry.from_tiff(tiff))
        if page.is_memmappable and not page.is_tiled and page.compression == 1 and len(series.pages) == 1:
            return LazyImage(
                tiff.asarray(out="memmap"),
                axes,
                str(path),
                (page.imagelength, page.imagewidth),
                tiff.close,
                geometry=geometry,
            )
        if chunk_bytes > lazy_image.MAX_CHUNK_BYTES:
            raise FmscopeError(
                f"{path} is stored in chunks of {'x'.join(map(str, page.chunks))} pixels ({chunk_bytes / 2**20:.0f} MB "
                "decoded each): such a large image cannot be read in parts, and is too large to read whole.",
                "Save it as a tiled TIFF, e.g. tifffile.imwrite(out, image, tile=(256, 256), compression='zlib'), "
                "or with 'vips tiffsave in.tif out.tif --tile --compression deflate'.",
            )
        array = zarr.open(series.aszarr(level=0), mode="r")  # a pyramid's full-resolution level
        coarser = tuple(zarr.open(series.aszarr(level=index), mode="r") for index in range(1, len(series.levels)))
        rows, cols = (page.tilelength, page.tilewidth) if page.is_tiled else (page.rowsperstrip, page.imagewidth)
        rows = min(rows, page.imagelength)
        return LazyImage(array, axes, str(path), (int(rows), int(cols)), tiff.close, coarser, geometry)
    except BaseException:
        tiff.close()
        raise


def open_image(path: str | os.PathLike, eager_max_pixels: int | None = None) -> Image2D | LazyImage:
    """:func:`load_image`, except for huge images: a TIFF / BigTIFF / OME-TIFF or an OME-Zarr folder of more than
    ``eager_max_pixels`` pixels (default ``lazy_image.EAGER_MAX_PIXELS``) comes back as a
    :class:`~fmscope.imaging.lazy_image.LazyImage` (read region by region; close it when done). An OME-Zarr of at
    most that size is read whole into an :class:`Image2D`. Raises FmscopeError as :func:`load_image` does, and for
    huge TIFFs that cannot be read in parts."""
    path = Path(path)
    _require_file(path)
    limit = lazy_image.EAGER_MAX_PIXELS if eager_max_pixels is None else eager_max_pixels
    if file_suffix(path) in TIFF_SUFFIXES and path.is_file():
        return _open_tiff(path, limit)
    if not lazy_image.is_ome_zarr(path):
        return load_image(path)
    try:
        lazy = lazy_image.open_ome_zarr(path)
        lazy.geometry = Geometry.of_picture(picture_geometry.from_ngff(lazy_image.first_multiscale(path)))
    except FmscopeError:
        raise
    except Exception as error:  # zarr raises many types for damaged stores
        raise _unreadable(path, error, LAZY_FIX) from None
    if lazy.pixels > limit:
        return lazy
    with lazy:
        return Image2D(_grey_or_rgb(lazy.read_all(), path), lazy.geometry, lazy.note)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The pixels of :func:`load_image` alone: grey (H, W) or RGB (H, W, 3)."""
    return load_image(path).array


def read_volume(path: str | os.PathLike, series: str | None = None) -> Volume:
    """Read a 3D volume (NIfTI, NRRD, MHA, a TIFF z-stack, or a DICOM folder) with its geometry.

    For a DICOM folder, ``series`` picks one of the series it lists (see
    :mod:`fmscope.imaging.dicom_series`); without it the one volumetric series is read, and
    a folder with several, or a series with unevenly spaced slices, is refused with a list.
    A TIFF is read by its axes (:func:`_read_tiff_volume`); a 4D file (x, y, z, t) is refused.
    """
    from fmscope.imaging import dicom_series

    path = Path(path)
    _require_file(path)
    if path.is_dir():
        return volume_of_stack(dicom_series.choose(dicom_series.list_stacks(path), series, path), path)
    if series is not None:
        raise FmscopeError(
            f"--series picks a series in a DICOM folder, but {path} is a file.",
            "Leave out --series, or give the folder.",
        )
    if file_suffix(path) in TIFF_SUFFIXES:
        return _read_tiff_volume(path)
    dicom_objects.require_image(path)
    image, nifti = read_medical_image(path)
    return _volume(image, path, "", nifti, ())


def volume_of_stack(stack: Stack, folder: Path) -> Volume:
    """The :class:`Volume` of a DICOM folder's stack (a :class:`fmscope.imaging.dicom_series.Stack` chosen from the
    folder's listing); raises FmscopeError as :func:`fmscope.imaging.dicom_series.read_stack` does."""
    from fmscope.imaging import dicom_series

    return _volume(dicom_series.read_stack(stack), folder, stack.summary(), None, stack.notes)


def _volume(image: sitk.Image, path: Path, source: str, nifti: bytes | None, notes: tuple[str, ...]) -> Volume:
    """A single-channel 3D SimpleITK image as a :class:`Volume` (z, y, x); a 4D image (x, y, z, t) or another
    dimension / several components refused by name."""
    if image.GetDimension() == 4 and image.GetNumberOfComponentsPerPixel() == 1:
        size = image.GetSize()
        raise FmscopeError(
            f"{path} is a 4D image of {size[0]} x {size[1]} x {size[2]} x {size[3]} voxels (x, y, z, t): its fourth "
            f"axis is time ({size[3]} time points, as cine MR and fMRI store it), not one volume.",
            "For one slice through time (z = 1) use 'fmscope track' on the file; else save the time point to "
            "segment as its own 3D file (e.g. 'fslroi in.nii.gz t0.nii.gz 0 1').",
        )
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise FmscopeError(
            f"{path} is not a single-channel 3D volume (dimension {image.GetDimension()}, "
            f"{image.GetNumberOfComponentsPerPixel()} components).",
            "Use 'fmscope segment' for 2D images; split multi-channel volumes first.",
        )
    return Volume(
        sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), image.GetDirection(), source, nifti, notes
    )


def _read_tiff_volume(path: Path) -> Volume:
    """A TIFF z-stack read by its first series' axes (:mod:`fmscope.imaging.tiff_axes`, as the time-lapse reader reads
    them; pages written one at a time are stacked): Z (or unnamed pages, Q / I) x Y x X -> (z, y, x). Pixel size from
    OME / ImageJ metadata (:func:`picture_geometry.from_tiff`), z step from OME ``PhysicalSizeZ`` / ImageJ ``spacing``
    (one unit of the pixel size's when only that is stated), else 1; origin 0, no rotation. A channel (C, samples S)
    or time (T) axis, or two stack axes, are refused by name, never read as more slices (SimpleITK reads an ImageJ
    ZCYX hyperstack as 2 x Z interleaved slices). Raises FmscopeError for damaged or cut-short files."""
    tif = None
    try:
        tif = tifffile.TiffFile(path)
        complete_files.require_whole_ifd_chain(tif, path)
        if tiff_axes.appended_pages(tif):  # a z-stack written page by page: one series per slice
            array = np.stack([series.asarray() for series in tif.series])
            axes = "Q" + tif.series[0].axes.upper()
        else:
            refuse_several_series(tif, path, "reads one volume")
            array, axes = tif.series[0].asarray(), tiff_axes.series_axes(tif.series[0])
        array, colour_note = tiff_colour.as_picture(array, tif.series[0].keyframe, path)  # palette, MINISWHITE
        axes += "S" * (array.ndim - len(axes))
        calibration, z_step = picture_geometry.from_tiff(tif), picture_geometry.tiff_z_spacing(tif)
    except FmscopeError:
        raise
    except Exception as error:
        short = complete_files.tiff_cut_short(tif, path) if tif is not None else None
        raise short or _unreadable(path, error, "Give a multi-page TIFF z-stack (Z, Y, X).") from None
    finally:
        if tif is not None:
            tif.close()
    _refuse_tiff_non_z(array.shape, axes, path)
    if all(axis in "YXS" for axis, size in zip(axes, array.shape) if size > 1):
        raise FmscopeError(
            f"{path} is a single 2D image {array.shape} (axes {axes}), not a single-channel 3D volume.",
            "Use 'fmscope segment' for 2D images; a volume is a multi-page TIFF z-stack (Z, Y, X).",
        )
    array, _ = tiff_axes.arrange_axes(array, axes, path, None)  # (z, y, x)
    (x, y), unit = (calibration[0], calibration[2]) if calibration else ((1.0, 1.0), "")
    notes = (colour_note,) if colour_note else ()
    if z_step is None and calibration:
        z_step = picture_geometry.MM_PER_UNIT.get(unit, 1.0)
        notes += (
            f"{path.name} states its pixel size but no z step: slices taken as 1 {unit} apart (ImageJ's default)",
        )
    return Volume(
        np.ascontiguousarray(array), (x, y, z_step or 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), notes=notes
    )


def _refuse_tiff_non_z(shape: tuple[int, ...], axes: str, path: Path) -> None:
    """Raise FmscopeError when a TIFF series of ``axes`` (tifffile's letters) and ``shape`` holds more than one z-stack
    of one channel: a channel (C, or samples S other than grey + alpha), time (T) or a second stack axis."""
    sizes = {axis: size for axis, size in zip(axes, shape) if size > 1 and axis not in "YX"}
    described = f"axes {axes}, shape {tuple(shape)}"
    index = ", ".join("0" if axis in "CT" else ":" for axis in axes.rstrip("YXS"))
    example = (
        f"tifffile.imwrite('one.tif', tifffile.imread('{path.name}')[{index}], imagej=True, metadata={{'axes': 'ZYX'}})"
    )
    if "C" in sizes or sizes.get("S", 2) != 2:
        count = sizes.get("C", sizes.get("S"))
        raise FmscopeError(
            f"{path} has {count} channels ({described}); a volume is one channel, and fmscope never reads channels "
            "as z slices.",
            "Save the channel to segment as its own z-stack: in Fiji 'Image > Color > Split Channels' and save one, "
            + (f"or {example}." if "C" in sizes else "or convert it to grey ('Image > Type > 8-bit')."),
        )
    if "T" in sizes:
        raise FmscopeError(
            f"{path} has a time axis: {sizes['T']} time points (T) ({described}); a volume is one time point, and "
            "fmscope never reads time points as z slices.",
            "Use 'fmscope track' for a time-lapse (T, Y, X)"
            + (
                f"; for one time point's z-stack save it on its own (Fiji 'Image > Duplicate'), or {example}."
                if len(sizes) > 1
                else "."
            ),
        )
    stacked = [axis for axis in sizes if axis != "S"]
    if len(stacked) > 1:
        names = {**tiff_axes.FRAME_AXES, **tiff_axes.OTHER_AXES}
        what = " and ".join(f"{sizes[axis]} {names.get(axis, f'{axis!r} planes')}" for axis in stacked)
        raise FmscopeError(
            f"{path} is a stack of {what} ({described}); a volume has one stack axis, z.",
            "Save the z-stack to segment as its own file (Fiji 'Image > Duplicate').",
        )


def read_medical_image(path: Path) -> tuple[sitk.Image, bytes | None]:
    """A NIfTI / NRRD / MHA file as SimpleITK reads it, with a NIfTI's raw header (None for other formats).

    A NIfTI's header is checked first (:func:`fmscope.imaging.nifti_header.read_header`: a sheared sform, or a qform
    and sform of other voxel sizes, are refused by name); a NIfTI that SimpleITK does not read (NIfTI-2) is read by
    nibabel, placed by the transform nibabel uses. A 2D NRRD placed in 3D space (which ITK refuses) is read as the
    one-slice 3D image it equals (:mod:`fmscope.imaging.nrrd_plane`). Raises :class:`FmscopeError` for unreadable files,
    for files cut short (:mod:`fmscope.imaging.complete_files`: a NIfTI / MetaImage / NRRD whose voxels stop early),
    for a gzip-compressed NIfTI named ``.nii`` and for other NRRD layouts of fewer or more axes than their space."""
    if path.name.lower().endswith(".nii"):
        with open(path, "rb") as file:
            if file.read(2) == b"\x1f\x8b":  # the gzip magic: a .nii.gz saved under a .nii name
                raise FmscopeError(
                    f"{path} is gzip-compressed (a .nii.gz file) but named .nii, so NIfTI readers (ITK, nibabel) "
                    "take it for an uncompressed NIfTI and cannot read it.",
                    f"Rename it to {path.name}.gz (or decompress it: gunzip -c {path.name} > plain.nii).",
                )
    nifti = nifti_header.read_header(path) if nifti_header.is_nifti(path) else None
    if nifti is not None:
        complete_files.require_complete_nifti(path, nifti)  # ITK reads missing voxels as 0
    elif file_suffix(path) in (".mha", ".mhd"):
        complete_files.require_complete_metaimage(path)  # ITK calls a short one "No such file or directory"
    elif file_suffix(path) in NRRD_SUFFIXES and (header := nrrd_plane.read_header(path)) is not None:
        if header.is_plane_in_space:  # ITK refuses a 2D image placed in 3D space: read as the one-slice 3D it equals
            return nrrd_plane.read_plane(path, header), None
        nrrd_plane.refuse_other_layouts(path, header)
    try:
        return sitk.ReadImage(str(path)), nifti
    except Exception as error:
        short = complete_files.itk_short_read(path, error)
        if short is not None:
            raise short from None
        if nifti is not None and nifti_header.version(nifti) == 2:
            try:
                array = nifti_header.read_pixels(path)
            except Exception as damaged:  # nibabel raises many types for files cut short
                raise FmscopeError(
                    f"Cannot read the voxels of the NIfTI-2 file {path} ({type(damaged).__name__}: "
                    f"{str(damaged)[:200]}).",
                    "Copy the file again from its source; fmscope reads only complete files.",
                ) from None
            image = sitk.GetImageFromArray(array, isVector=False)  # a 4D (t, z, y, x) stays 4D, as ITK reads NIfTI-1
            ndim = image.GetDimension()
            spacing, origin, direction = nifti_header.lps_geometry(nifti, min(ndim, 3))
            if ndim <= 3:
                image.SetSpacing(spacing[:ndim])
                image.SetOrigin(origin[:ndim])
                image.SetDirection(np.asarray(direction).reshape(3, 3)[:ndim, :ndim].ravel().tolist())
            elif ndim == 4:  # time: pixdim[4] spacing, origin 0, no rotation with space (ITK's NIfTI-1 4D geometry)
                rotation = np.eye(4)
                rotation[:3, :3] = np.asarray(direction).reshape(3, 3)
                image.SetSpacing((*spacing, nifti_header.time_step(nifti)))
                image.SetOrigin((*origin, 0.0))
                image.SetDirection(rotation.ravel().tolist())
            return image, nifti
        raise FmscopeError(
            f"Cannot read {path} as a volume ({type(error).__name__}: {str(error)[:200]}).",
            "Give a NIfTI (.nii/.nii.gz), NRRD, MHA file or a DICOM series folder.",
        ) from None


def _header(path: str | os.PathLike) -> sitk.ImageFileReader | None:
    """SimpleITK's reader of a medical file with its header read (no voxels), None when it cannot read it."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader


def file_dimension(path: str | os.PathLike) -> int:
    """Axes of a single-component NIfTI / NRRD / MHA file from its header (2, 3, 4), 0 when SimpleITK cannot read
    its header or it holds several components per voxel."""
    reader = _header(path)
    if reader is None and nifti_header.is_nifti(path):  # NIfTI-2, which SimpleITK does not read: read as 1 component
        try:
            return len(nifti_header.header_of(nifti_header.raw_header(path)).get_data_shape())
        except Exception:  # damaged: the reader names the problem
            return 0
    return reader.GetDimension() if reader is not None and reader.GetNumberOfComponents() == 1 else 0


def _slice_count(path: Path) -> int:
    """Slices of a 3D medical file from its header (1 for 2D files and for 3D files one voxel thick along any axis,
    which :func:`load_image` reads as one 2D image; 0 when unreadable)."""
    if nifti_header.is_nifti(path):  # NIfTI-2 too, which SimpleITK does not read
        try:
            shape = nifti_header.header_of(nifti_header.raw_header(path)).get_data_shape()
        except Exception:  # damaged: the reader names the problem
            return 0
        if len(shape) == 3 and _slice_axis(shape) is not None:
            return 1
        return shape[2] if len(shape) >= 3 else 1
    reader = _header(path)
    if reader is None:
        return 0
    return reader.GetSize()[2] if reader.GetDimension() == 3 and _slice_axis(reader.GetSize()) is None else 1


def read_grid(path: str | os.PathLike) -> tuple[np.ndarray, Geometry | None]:
    """Any image, mask or volume fmscope reads, with its geometry (None for pictures): a volume
    (file or DICOM folder) as (z, y, x), a 2D image or one-slice volume as (H, W)."""
    path = Path(path)
    if path.is_dir() or (file_suffix(path) in VOLUME_SUFFIXES and path.exists() and _slice_count(path) > 1):
        volume = read_volume(path)
        return volume.array, volume.geometry
    image = load_image(path)
    return image.array, image.geometry


def write_sitk(image: sitk.Image, target: Path) -> None:
    """``sitk.WriteImage`` (compressed), its file errors (a RuntimeError in SimpleITK) raised as :class:`OSError`."""
    try:
        sitk.WriteImage(image, str(target), useCompression=True)
    except RuntimeError as error:
        raise OSError(f"SimpleITK could not write the file: {str(error).strip().splitlines()[-1][:200]}") from error


def write_volume(labels: np.ndarray, like: Volume, path: str | os.PathLike) -> None:
    """Write a (z, y, x) label volume on the grid and geometry of ``like`` (atomic)."""
    if labels.shape != like.array.shape:
        raise FmscopeError(f"Label shape {labels.shape} differs from the volume's {like.array.shape}.")
    geometry = like.geometry
    check_geometry_output(geometry, Path(path))

    def write(target: Path) -> None:
        if geometry.nifti is not None and nifti_header.is_nifti(target):
            nifti_header.write_labels(labels, geometry.nifti, target)
        else:
            write_sitk(geometry.apply_to(sitk.GetImageFromArray(labels)), target)

    atomic_write(Path(path), write)


def check_geometry_output(geometry: Geometry | None, path: Path) -> None:
    """Refuse an output that cannot lie where viewers put its input: a NIfTI input whose qform and sform place
    the voxels differently (each read by other tools) written to another format, which holds one transform."""
    if geometry is None or geometry.nifti is None or nifti_header.is_nifti(path):
        return
    if file_suffix(path) in VOLUME_SUFFIXES and nifti_header.transforms_differ(geometry.nifti):
        raise FmscopeError(
            "The input's qform and sform place its voxels differently "
            f"({nifti_header.describe_transforms(geometry.nifti)}): ITK-based tools use one, nibabel / FSL the "
            f"other, and {path.name} can hold only one of them.",
            "Write the labels as .nii.gz (they then carry both transforms, as the input), or make the input's "
            "two agree first (e.g. 'fslorient -copysform2qform FILE').",
        )


def write_image(array: np.ndarray, path: str | os.PathLike, geometry: Geometry | None = None) -> None:
    """Write a 2D mask / label image or an RGB picture (TIFF, PNG, NIfTI/NRRD...), atomically.

    NIfTI / NRRD / MHA outputs take ``geometry`` (the input's, from :func:`load_image`): same
    dimension (a one-slice volume stays 3D), pixel size, origin and direction. A TIFF takes a calibrated
    picture's pixel size (:func:`fmscope.imaging.picture_geometry.tiff_calibration`); PNG / JPEG cannot hold
    geometry and ignore it.
    """
    path = Path(path)
    suffix = file_suffix(path)
    check_geometry_output(geometry, path)

    def write(target: Path) -> None:
        if suffix in TIFF_SUFFIXES:
            tifffile.imwrite(
                target, array, compression="zlib", **picture_geometry.tiff_calibration(geometry, array.shape)
            )
        elif suffix in VOLUME_SUFFIXES:
            rgb = array.ndim == 3 and array.shape[-1] in (3, 4)  # a picture's samples; else a third axis
            if geometry is None:
                write_sitk(sitk.GetImageFromArray(array, isVector=rgb), target)
                return
            if geometry.plane_in_space and suffix == ".nrrd" and array.ndim == 2:  # the input's 2D-in-3D layout
                nrrd_plane.write_plane(array, geometry.spacing, geometry.origin, geometry.direction, target)
                return
            image = geometry.as_stored(array, rgb)  # the input's dimension and axis order
            if geometry.nifti is not None and nifti_header.is_nifti(target) and not rgb:
                nifti_header.write_labels(sitk.GetArrayFromImage(image), geometry.nifti, target)
                return
            write_sitk(image, target)
        else:
            iio.imwrite(target, array, extension=suffix)

    atomic_write(path, write)
