"""Label images stored with lossy compression (JPEG, lossy WebP, JPEG-compressed TIFF).

Lossy compression changes pixel values near every edge (JPEG's 8 x 8 block transform: "ringing"), so ids
cannot be read back from such a file. One kind can: a binary mask (0 / 255) with that noise, as medical
segmentation sets ship their masks (Kvasir-SEG, ESandML/FCBFormer#6; romi/plant-3d-vision#140: "binary mask
images ... are not binary anymore after compression by JPEG format"). :func:`lossy_compression` tells the
kind of file, :func:`binary_mask_from_lossy` recovers such a mask or refuses by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from fmscope.errors import FmscopeError

# A pixel is "near" 0 / 255 within a quarter of the range; between the two it must lie within one JPEG block
# (8 px) of both kinds of pixel: the ringing of an edge. Quality 20 leaves such pixels at most 4 px off the edge.
NEAR = 64
EDGE_PX = 8
TIFF_LOSSY = {6: "old-style JPEG", 7: "JPEG", 34892: "lossy JPEG"}
FIX = "Save label images in a lossless format (PNG or TIFF) from the tool that made them, not from the JPEG."


def lossy_compression(path: Path) -> str | None:
    """The lossy compression of the picture at ``path`` ('JPEG', 'lossy WebP', 'JPEG-compressed TIFF'), or None
    for lossless formats and files that cannot be opened (the label reader names those)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            kind = image.format
    except Exception:  # not a picture Pillow opens (NIfTI, DICOM ...): no lossy picture format
        return None
    if kind in ("JPEG", "MPO"):
        return "JPEG"
    if kind == "WEBP":
        with open(path, "rb") as file:
            return "lossy WebP" if b"VP8 " in file.read(4096) else None  # 'VP8L' chunks are lossless
    if kind == "TIFF":
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            compression = int(tiff.pages[0].compression)
        return f"{TIFF_LOSSY[compression]}-compressed TIFF" if compression in TIFF_LOSSY else None
    return None


def binary_mask_from_lossy(array: np.ndarray, name: str, compression: str) -> tuple[np.ndarray, str]:
    """A (H, W) or (H, W, 3 | 4) uint8 picture from a lossy file as the binary mask it holds: uint8 0 / 255
    (thresholded at 128, the midpoint) and a note saying so. Colour pictures count when their channels agree
    within ``NEAR`` (grey masks saved as colour JPEGs). Raises FmscopeError naming the lossy compression for
    anything else (ids, colour-coded labels, a mask whose edges are more than compression noise)."""
    values = np.asarray(array)
    levels = len(np.unique(values))

    def refuse(what: str) -> FmscopeError:
        return FmscopeError(
            f"{name} is a label image stored as {compression}, whose lossy compression changes values along "
            f"every edge ({levels} distinct values), and {what}: fmscope cannot tell the ids it was saved with.",
            FIX,
        )

    if values.dtype != np.uint8:
        raise refuse(f"holds {values.dtype} values")
    if values.ndim == 3:
        rgb = values[..., :3].astype(np.int16)
        if int((rgb.max(axis=-1) - rgb.min(axis=-1)).max()) > NEAR:
            raise refuse("is in colour (colour-coded labels)")
        values = rgb.mean(axis=-1)
    low, high = values <= NEAR, values >= 255 - NEAR
    if not high.any() and values.any():
        raise refuse("holds no values near 255 (not a 0 / 255 mask: ids saved as grey levels?)")
    between = ~(low | high)
    if between.any():
        window = np.ones((2 * EDGE_PX + 1,) * 2, dtype=bool)
        edge = ndimage.binary_dilation(low, window) & ndimage.binary_dilation(high, window)
        if (between & ~edge).any():
            raise refuse(f"holds values between {NEAR} and {255 - NEAR} away from the edges (not a 0 / 255 mask)")
    mask = np.where(values >= 128, 255, 0).astype(np.uint8)
    note = (
        f"{name} is stored as {compression} (lossy: {levels} grey levels): read as the binary mask it holds, "
        "thresholded at 128 (0 / 255); save label images as PNG or TIFF to keep them exact"
    )
    return mask, note if levels > 2 else ""
