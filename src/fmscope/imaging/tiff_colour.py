"""What a TIFF picture's samples mean (its PhotometricInterpretation), turned into grey or RGB as viewers show it.

tifffile returns the stored samples as they are: ink amounts for CMYK (``SEPARATED``), palette indices, inverted
grey (``MINISWHITE``), L*a*b* values. Read as grey / RGB those are a wrong picture (a CMYK white background
becomes near black: darktable-org/darktable#3560, opencv/opencv#10116, image-rs/image#2074), so each kind is
converted the way Pillow converts it, or refused by name. tifffile decodes JPEG-compressed YCbCr to RGB itself;
uncompressed YCbCr it returns raw (its docs: "color space transformations ... are not implemented").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from fmscope.errors import FmscopeError

PHOTOMETRIC = tifffile.PHOTOMETRIC
AS_IS = {PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.RGB}
JPEG_DECODED = {6, 7, 34892}  # (old-style) JPEG compressions: tifffile's decoder returns RGB for YCbCr
CONVERTED = {PHOTOMETRIC.SEPARATED, PHOTOMETRIC.PALETTE, PHOTOMETRIC.MINISWHITE}
FIX = (
    "Save the picture as grey or RGB, e.g. in Fiji 'Image > Type > RGB Color' then 'File > Save As > Tiff', or "
    "'magick in.tif -colorspace sRGB -type TrueColor out.tif'."
)


def needs_conversion(page: tifffile.TiffPage) -> bool:
    """Whether the page's stored samples are not the grey / RGB picture viewers show (what a lazy reader refuses)."""
    decoded = page.photometric == PHOTOMETRIC.YCBCR and page.compression in JPEG_DECODED
    return not (page.photometric in AS_IS or decoded)


def _name(page: tifffile.TiffPage) -> str:
    try:
        return PHOTOMETRIC(page.photometric).name
    except ValueError:
        return str(int(page.photometric))


def refuse(page: tifffile.TiffPage, path: Path, why: str = "") -> FmscopeError:
    """The refusal for a TIFF whose samples fmscope does not turn into a picture."""
    return FmscopeError(
        f"{path} stores its pixels as {_name(page)} (TIFF photometric {int(page.photometric)}){why}, not grey or "
        "RGB: read as they are, its colours would be wrong.",
        FIX,
    )


def as_picture(array: np.ndarray, page: tifffile.TiffPage, path: Path) -> tuple[np.ndarray, str]:
    """The first series of a TIFF (samples last, as ``(..., H, W)`` or ``(..., H, W, S)``: a picture, or a stack of
    frames or slices) as grey / RGB(A) samples viewers
    show, and a note when converted. CMYK (InkSet CMYK, 4 inks (+ alpha), 8 or 16 bits) -> RGB as Pillow's
    ``convert('RGB')`` (R = (max - C)(max - K) / max); palette -> its colours (8-bit; a 16-bit colormap's high
    bytes, as Pillow; one of values below 256 as they are, as libtiff's tiff2rgba); MINISWHITE integers -> inverted
    (max - value). Raises FmscopeError naming the interpretation for the rest (CIELAB, uncompressed YCbCr, CFA,
    LogLuv, multi-ink separations, float CMYK / MINISWHITE)."""
    if not needs_conversion(page):
        return array, ""
    photometric, kind = page.photometric, array.dtype.kind
    if photometric == PHOTOMETRIC.MINISWHITE and kind in "bu":
        top = True if kind == "b" else min(np.iinfo(array.dtype).max, 2 ** int(page.bitspersample) - 1)
        inverted = ~array if kind == "b" else (top - array).astype(array.dtype)
        return inverted, f"{path.name} stores grey as white-is-zero (MINISWHITE): read inverted, as viewers show it"
    if photometric == PHOTOMETRIC.PALETTE and page.colormap is not None and kind == "u":
        colormap = np.asarray(page.colormap)
        colours = (colormap if colormap.max() < 256 else colormap >> 8).astype(np.uint8)
        rgb = np.moveaxis(np.take(colours, array, axis=1), 0, -1)
        return rgb, f"{path.name} is a palette image: read in its colours"
    if photometric == PHOTOMETRIC.SEPARATED:
        inkset, inks = page.tags.valueof(332, 1), page.tags.valueof(334, 4)  # InkSet (1: CMYK), NumberOfInks
        if inkset != 1 or inks != 4 or array.ndim < 3 or array.shape[-1] < 4 or kind != "u":
            raise refuse(page, path, f" (InkSet {inkset}, {inks} inks, {array.dtype}: not CMYK of 8 or 16 bits)")
        top = float(np.iinfo(array.dtype).max)
        white = (top - array[..., :4].astype(np.float64)) / top  # 1 - ink, per ink
        rgb = np.rint(white[..., :3] * white[..., 3:4] * top).astype(array.dtype)
        return rgb, f"{path.name} is a CMYK TIFF: read in RGB (as Pillow converts CMYK)"
    raise refuse(page, path)
