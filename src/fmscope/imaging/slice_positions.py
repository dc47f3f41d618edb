"""Whether slices at given positions along their normal form a regular grid (DICOM series and multi-frame files).

A regular volume grid places slice k at first + k * step; slices that are not evenly spaced (a lost file or frame,
uneven reconstruction gaps) or that repeat positions (echoes, phases) read on such a grid would lie where they were
not scanned, so the readers refuse them with what :func:`uneven_positions` says.
"""

from __future__ import annotations

import numpy as np

# Slices are evenly spaced when every gap is within this fraction of the median gap.
SPACING_TOLERANCE = 0.01


def uneven_positions(positions: list[float], item: str) -> str | None:
    """Why slices at ``positions`` (mm along the slice normal, sorted; ``item``: what holds each slice, "file" or
    "frame") do not form a regular grid, or None when they do."""
    if len(positions) < 2:
        return None
    steps = np.diff(np.asarray(positions, dtype=np.float64))
    median = float(np.median(steps))
    if steps.min() < 1e-3:
        distinct = len(np.unique(np.round(positions, 3)))
        return (
            f"its {len(positions)} {item}s share {distinct} slice positions: the series holds several "
            "images per position (echoes, phases or time points)"
        )
    uneven = np.nonzero(np.abs(steps - median) > SPACING_TOLERANCE * median)[0]
    if not len(uneven):
        return None
    gaps = []
    for i in uneven[:3]:
        gap = f"{steps[i]:.4g} mm between slices at {positions[i]:.4g} and {positions[i + 1]:.4g} mm"
        missing = round(steps[i] / median) - 1
        if missing >= 1 and abs(steps[i] - (missing + 1) * median) <= SPACING_TOLERANCE * median:
            gap += f" ({missing} {item}{'s' if missing > 1 else ''} missing?)"
        gaps.append(gap)
    more = f" and {len(uneven) - 3} more" if len(uneven) > 3 else ""
    return (
        f"its slices are unevenly spaced: {median:.4g} mm apart except "
        + "; ".join(gaps)
        + more
        + f". Read as a regular grid they would be spread {float(np.mean(steps)):.4g} mm apart, "
        "away from where they were scanned"
    )
