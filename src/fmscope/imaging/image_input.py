"""Checks and conversion for the images users hand to the segmenter."""

from __future__ import annotations

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.imaging.intensity import Intensity, finite_values


def is_blank(plane: np.ndarray) -> bool:
    """Whether a plane holds no picture: every finite pixel the same value (padding, air outside the field of view,
    a shutter that did not fire, a dropped frame filled with zeros), or no finite pixel at all. What
    :func:`validate_image` refuses to segment; propagation and tracking pass over such planes instead."""
    finite = finite_values(plane)
    return finite.size == 0 or bool(finite.min() == finite.max())


def require_real(dtype: np.dtype) -> None:
    """Raise FmscopeError unless ``dtype`` holds real numbers (bool, integers, floats): what every image must hold,
    checked from the dtype alone (a lazy image's too)."""
    if np.dtype(dtype).kind not in "biuf":
        raise FmscopeError(f"Images must hold real numbers, got dtype {dtype}.", "Convert to a numeric array.")


def validate_image(image: np.ndarray) -> np.ndarray:
    """Return a read-only view of a 2D grayscale or (H, W, 3|4) colour image, or raise.

    Any real dtype (bool, integers, floats) is accepted; NaN and infinite pixels are allowed
    (the intensity mapping puts them at the ends of its range) as long as the finite ones vary.
    Rejects empty, constant, complex, 3D-volume and 4D+ arrays with a message saying what to
    do instead. The caller's array is never modified.
    """
    array = np.asarray(image)
    require_real(array.dtype)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3]
    elif array.ndim == 3 and array.shape[-1] == 2:
        raise FmscopeError(
            f"Got an array of shape {array.shape}: grey + alpha, or a stack of 2D images?",
            "Pass image[..., 0] for a grey + alpha picture (or read the file with "
            "fmscope.imaging.io.read_image, which does); for a volume, put z first.",
        )
    elif array.ndim == 3:
        raise FmscopeError(
            f"Got a 3D array of shape {array.shape}; the 2D segmenter takes one image.",
            "Pass a single slice (volume[z]), or use segment_volume / 'fmscope volume' for volumes.",
        )
    elif array.ndim != 2:
        raise FmscopeError(
            f"Got a {array.ndim}D array of shape {array.shape}; expected (H, W) or (H, W, 3).",
            "Select one channel / time point / slice before segmenting.",
        )
    if array.size == 0:
        raise FmscopeError(f"The image is empty (shape {array.shape}).", "Pass an image with at least 2x2 pixels.")
    if min(array.shape[:2]) < 2:
        raise FmscopeError(
            f"The image is too small or thin to segment (shape {array.shape}).",
            "Pass an image with at least 2 pixels along each side.",
        )
    finite = finite_values(array)
    if finite.size == 0:
        raise FmscopeError(
            "The image holds no finite values (all NaN or infinite).",
            "Check that the right image or channel was loaded.",
        )
    if finite.min() == finite.max():
        raise FmscopeError(
            f"The image is constant (every finite pixel is {finite.flat[0]}); there is nothing to segment.",
            "Check that the right image or channel was loaded.",
        )
    view = array.view()
    view.flags.writeable = False
    return view


def to_rgb_uint8(image: np.ndarray, intensity: Intensity) -> np.ndarray:
    """A new (H, W, 3) uint8 array: the image mapped through ``intensity`` (grayscale repeated)."""
    scaled = intensity.to_uint8(image)
    if scaled.ndim == 2:
        scaled = np.repeat(scaled[:, :, None], 3, axis=2)
    return np.ascontiguousarray(scaled)
