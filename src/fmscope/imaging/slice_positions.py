"""Whether slices at given positions along their normal form a regular grid (DICOM series and multi-frame files).

A regular volume grid places slice k at first + k * step; slices that are not evenly spaced (a lost file or frame,
uneven reconstruction gaps) or that repeat positions (echoes, phases) read on such a grid would lie where they were
not scanned, so the readers refuse them with what :func:`uneven_positions` says.

Positions are Decimal Strings, often written to a fixed number of decimals (exporters, anonymisers and converters
keep two: a 0.625 mm series reads -99.38, -98.75, -98.12 ..., gaps 0.62 / 0.63 mm). As dicom2nifti's
``numpy.allclose(step, gap, rtol, atol)`` (icometrix/dicom2nifti#36), a gap is even within a relative tolerance
plus an absolute one; here the absolute one is the positions' written precision (:func:`written_precision`: one
unit of the last decimal written, the most rounding can move a gap), capped at a tenth of the step so a lost
slice is never taken for rounding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

# Slices are evenly spaced when every gap is within this fraction of the median gap (plus the written precision).
SPACING_TOLERANCE = 0.01
# The written precision allowed is at most this fraction of the median gap.
PRECISION_CAP = 0.1
# A DS number: its decimals (group 1) and exponent (group 2).
DECIMAL_STRING = re.compile(r"[+-]?\d*(?:\.(\d*))?(?:[eE]([+-]?\d+))?")


def written_precision(texts: Iterable[str], normal: Iterable[float]) -> float:
    """The most rounding can move a gap along ``normal`` (mm) for positions written as ``texts`` (each an
    ImagePositionPatient value, "x\\y\\z" as a DS string): per coordinate one unit of the last decimal the series
    writes anywhere ("-99.38": 0.01 mm; writers drop trailing zeros, so "-100" in the same series says nothing),
    weighted by the normal's share of that coordinate. 0 for unparsable text."""
    decimals = np.full(3, -np.inf)
    for text in texts:
        values = str(text).replace("\\", " ").split()
        if len(values) != 3:
            return 0.0
        for axis, value in enumerate(values):
            number = DECIMAL_STRING.fullmatch(value)
            if number is None:
                return 0.0
            written = len(number.group(1) or "") - int(number.group(2) or 0)
            decimals[axis] = max(decimals[axis], written)
    if not np.isfinite(decimals).all():
        return 0.0
    return float(np.abs(np.asarray(list(normal), dtype=np.float64)) @ (10.0**-decimals))


def grid_step(positions: list[float]) -> float:
    """The step of the regular grid through sorted ``positions`` (mm): first to last over the gaps between, so
    rounding in the positions does not add up along the series as a median gap's would."""
    return (positions[-1] - positions[0]) / (len(positions) - 1)


def uneven_positions(positions: list[float], item: str, precision: float = 0.0) -> str | None:
    """Why slices at ``positions`` (mm along the slice normal, sorted; ``item``: what holds each slice, "file" or
    "frame"; ``precision``: :func:`written_precision`, mm) do not form a regular grid, or None when they do: every gap
    within ``SPACING_TOLERANCE`` of the median gap plus ``precision`` (at most ``PRECISION_CAP`` of it), and every
    slice that close to its place on the grid of :func:`grid_step`. A refusal names the gaps that are off."""
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
    tolerance = SPACING_TOLERANCE * median + min(precision, PRECISION_CAP * median)
    uneven = np.nonzero(np.abs(steps - median) > tolerance)[0]
    if not len(uneven):
        step = grid_step(positions)
        offsets = np.asarray(positions) - (positions[0] + step * np.arange(len(positions)))
        worst = int(np.argmax(np.abs(offsets)))
        if abs(offsets[worst]) <= tolerance:
            return None
        return (
            f"its slices drift from an even grid: the {item} at {positions[worst]:.6g} mm lies "
            f"{abs(offsets[worst]):.3g} mm from its place {step:.6g} mm apart (gaps {steps.min():.6g} to "
            f"{steps.max():.6g} mm; more than the {tolerance:.2g} mm the tolerance and the positions' written "
            "precision allow)"
        )
    gaps = []
    for i in uneven[:3]:
        gap = f"{steps[i]:.4g} mm between slices at {positions[i]:.4g} and {positions[i + 1]:.4g} mm"
        missing = round(steps[i] / median) - 1
        if missing >= 1 and abs(steps[i] - (missing + 1) * median) <= (missing + 1) * tolerance:
            gap += f" ({missing} {item}{'s' if missing > 1 else ''} missing?)"
        gaps.append(gap)
    more = f" and {len(uneven) - 3} more" if len(uneven) > 3 else ""
    return (
        f"its slices are unevenly spaced: {median:.4g} mm apart except "
        + "; ".join(gaps)
        + more
        + f" (more than the {tolerance:.2g} mm the tolerance and the positions' written precision allow). Read as "
        f"a regular grid they would be spread {float(np.mean(steps)):.4g} mm apart, away from where they were scanned"
    )
