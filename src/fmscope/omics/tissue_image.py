"""A tissue image in the one layout fmscope uses: (y, x) grey or (y, x, 3) colour, values as stored.

Tissue images arrive as Space Ranger PNGs (RGB, RGBA, or single-channel for immunofluorescence
and for images re-saved in ImageJ / Fiji), as 16-bit TIFFs, and as SpatialData image elements
(``c, y, x``). :func:`tissue_image` takes any of these layouts and returns the picture whole:
grey (2D, ``(1, y, x)``, ``(y, x, 1)``, grey + alpha) becomes ``(y, x)``; RGB / RGBA, channels
last or first, become ``(y, x, 3)`` (alpha dropped); the dtype and the values are kept (uint16
stays uint16). A layout that cannot be told apart (e.g. 2 or 5+ channels of a multiplexed image)
is refused naming the shape, never cut to three columns.
"""

from __future__ import annotations

import numpy as np

from fmscope.errors import FmscopeError

COLOUR = (3, 4)  # RGB, RGBA
GREY = (1, 2)  # grey, grey + alpha


def tissue_image(array, name: str) -> np.ndarray:
    """``array`` as (y, x) grey or (y, x, 3) colour; ``name`` (the file or element) for the error.

    Channels are looked for last (PNG / TIFF, ``y, x, c``), then first (``c, y, x``), and only
    along an axis of at most 4 entries that is shorter than both others.
    """
    image = np.asarray(array)
    if image.ndim == 2:
        return image
    if image.ndim == 3:
        last, first = image.shape[-1], image.shape[0]
        if last <= 4 and last < min(image.shape[:2]):
            return _channels_last(image, name)
        if first <= 4 and first < min(image.shape[1:]):
            return _channels_last(np.moveaxis(image, 0, -1), name)
    raise FmscopeError(
        f"The tissue image {name} has shape {image.shape}: not a grey (y, x) or colour (y, x, 3 / 4 channels) image.",
        "Save the tissue image as a grey or RGB(A) picture (one channel of a multiplexed image, or an RGB rendering).",
    )


def _channels_last(image: np.ndarray, name: str) -> np.ndarray:
    channels = image.shape[-1]
    if channels in GREY:
        return image[..., 0]
    if channels in COLOUR:
        return image[..., :3]
    raise FmscopeError(f"The tissue image {name} has {channels} channels.", "Give a grey or RGB(A) image.")
