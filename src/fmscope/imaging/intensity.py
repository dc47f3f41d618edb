"""Intensity handling: CT window presets and percentile scaling to the 8-bit RGB models expect.

Nothing here modifies the caller's array; every function returns a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmscope.errors import FmscopeError

# (level, width) in Hounsfield units; the usual radiology presets.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "soft_tissue": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 150.0),
}


@dataclass(frozen=True)
class Intensity:
    """A linear map of [low, high] onto [0, 255], clipping outside; ``name`` says where it came from."""

    low: float
    high: float
    name: str

    def to_uint8(self, array: np.ndarray) -> np.ndarray:
        """A new uint8 array with ``array`` mapped through this window (+inf -> 255; NaN, -inf -> 0)."""
        if self.name == "uint8":
            return np.array(array, dtype=np.uint8, copy=True)
        scaled = (np.asarray(array, dtype=np.float32) - self.low) * (255.0 / (self.high - self.low))
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def window(spec: str | tuple[float, float]) -> Intensity:
    """An :class:`Intensity` from a preset name or a (level, width) pair."""
    if isinstance(spec, str):
        if spec not in WINDOW_PRESETS:
            raise FmscopeError(
                f"Unknown window preset '{spec}'.",
                f"Use one of: {', '.join(WINDOW_PRESETS)}, or give LEVEL,WIDTH numbers.",
            )
        level, width = WINDOW_PRESETS[spec]
        name = spec
    else:
        level, width = (float(v) for v in spec)
        name = f"L{level:g}/W{width:g}"
    if not width > 0:
        raise FmscopeError(f"Window width must be positive, got {width}.", "Give LEVEL,WIDTH with WIDTH > 0.")
    return Intensity(level - width / 2, level + width / 2, name)


def parse_window(text: str | None) -> str | tuple[float, float] | None:
    """A window as a user writes it: ``None`` or ``"auto"`` (automatic), a preset name, or
    ``"LEVEL,WIDTH"`` (HU, width > 0); raises FmscopeError for anything else."""
    if text is None or text == "auto":
        return None
    if "," in text:
        try:
            level, width = (float(v) for v in text.split(","))
        except ValueError:
            raise FmscopeError(
                f"Cannot read window '{text}'.", "Give a preset name or LEVEL,WIDTH, e.g. 40,400."
            ) from None
        window((level, width))  # checks the width
        return level, width
    window(text)  # checks the preset name
    return text


def finite_values(array: np.ndarray) -> np.ndarray:
    """The array itself for integer / bool data, else its finite values (1D)."""
    array = np.asarray(array)
    return array[np.isfinite(array)] if array.dtype.kind == "f" else array


def auto_intensity(array: np.ndarray) -> Intensity:
    """uint8 data is used as is, 1-bit (bool) as 0 / 255; anything else maps the 0.5-99.5
    percentile range of its finite values (as MedSAM does)."""
    if array.dtype == np.uint8:
        return Intensity(0.0, 255.0, "uint8")
    if array.dtype == bool:
        return Intensity(0.0, 1.0, "1-bit")
    values = finite_values(array)
    if values.size == 0:
        raise FmscopeError(
            "The image holds no finite values (all NaN or infinite).",
            "Check that the right image or channel was loaded.",
        )
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if high <= low:  # very sparse images: fall back to the full range
        low, high = float(values.min()), float(values.max())
    return Intensity(low, high, "percentile 0.5-99.5")


def resolve_intensity(array: np.ndarray, spec: str | tuple[float, float] | Intensity | None) -> Intensity:
    """The intensity mapping to use: explicit object, window preset / pair, or automatic."""
    if isinstance(spec, Intensity):
        return spec
    if spec is None:
        return auto_intensity(array)
    return window(spec)
