"""The units of a slide's coordinates: what the file states, what the user gives, one rule for every kind.

Every slide reader returns its coordinates in the file's own units (Visium full-resolution pixels,
Xenium / MERSCOPE microns, a SpatialData element's intrinsic units, an .h5ad's ``obsm["spatial"]``)
with the :class:`Units` the file states or implies. :func:`resolve` then applies one rule, whatever
the input kind (folder, store or .h5ad), for ``--microns-per-unit`` / ``microns_per_unit=``:

- the file states its units (a ``microns`` coordinate system, Space Ranger scale factors or spot
  grid, ``uns["fmscope"]["microns_per_unit"]``, the Xenium / MERSCOPE formats): a given value must
  agree (within ``AGREEMENT``), else the run is refused naming both values; never ignored;
- the units are only assumed (a SpatialData store of transcripts that states nothing): a given value
  replaces the assumption; without one the assumption is used and said in a notice;
- the file says nothing: a given value is used; without one the slide is refused, naming the units.

Affines here are 3x3 on ``(x, y, 1)`` (the order of ``obsm["spatial"]``), from file units to microns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmscope.errors import FmscopeError

AGREEMENT = 0.02  # a given --microns-per-unit within 2 % of the file's own units agrees with them
VISIUM_PITCH_UM = 100.0  # centre-to-centre distance of neighbouring spots (array columns differ by 2)
VISIUM_THEORETICAL_SPOT_UM = 65.0  # spot_diameter_fullres spans a 65 um "theoretical spot" (10x Space Ranger docs)
MIN_GRID_STEPS = 10


@dataclass(frozen=True)
class Units:
    """File units -> microns: ``to_microns`` (3x3 on x, y, 1), where they come from, whether the file states them."""

    to_microns: np.ndarray
    source: str
    stated: bool = True

    @classmethod
    def scaled(cls, microns_per_unit: float, source: str, stated: bool = True) -> "Units":
        return cls(np.diag([float(microns_per_unit), float(microns_per_unit), 1.0]), source, stated)

    @property
    def scale(self) -> float:
        """Microns per unit (the square root of the area scale)."""
        return float(np.sqrt(abs(np.linalg.det(self.to_microns[:2, :2]))))


def resolve(units: Units | None, given: float | None, name: str, unknown: str = "") -> tuple[Units, list[str]]:
    """The units to use for a slide ``name`` and notices, by the module's rule; ``unknown`` says why a file
    has no units (for the refusal). Raises :class:`FmscopeError` on a bad or disagreeing ``given``."""
    if given is not None:
        if not np.isfinite(given) or given <= 0:
            raise FmscopeError(
                f"--microns-per-unit {given:g} is not a positive number.",
                "Give how many microns one coordinate unit is (1 if the coordinates are microns).",
            )
        if units is not None and units.stated:
            if abs(given / units.scale - 1) > AGREEMENT:
                raise FmscopeError(
                    f"{name}: the file's coordinates are {units.scale:.4g} um per unit "
                    f"({units.source}); --microns-per-unit {given:g} disagrees.",
                    "Leave out --microns-per-unit (fmscope uses the file's own units), or fix the file.",
                )
            return units, []
        return Units.scaled(given, f"--microns-per-unit {given:g}"), (
            []
            if units is None
            else [
                f"Coordinates taken as {given:g} um per unit (--microns-per-unit), "
                f"not {units.scale:.4g} ({units.source})."
            ]
        )
    if units is None:
        raise FmscopeError(
            f"{name}: the coordinates have no units{f' ({unknown})' if unknown else ''}.",
            "Say how many microns one unit is: --microns-per-unit 1 if they are microns "
            "(or set uns['fmscope']['microns_per_unit'] in the file).",
        )
    notices = (
        []
        if units.stated
        else [
            f"Coordinates taken as {units.scale:.4g} um per unit ({units.source}); "
            "give --microns-per-unit if they are not."
        ]
    )
    return units, notices


def stated_microns_per_unit(value: object, where: str) -> float:
    """``uns['fmscope']['microns_per_unit']`` of ``where`` as a float, held to the rule ``--microns-per-unit`` is:
    a finite positive number (a one-element array as h5py may return it is its element). Raises
    :class:`FmscopeError` naming the key and its value otherwise (0 or a negative value would collapse or
    mirror the slide; a text or NaN placeholder says nothing)."""
    array = np.asarray(value)
    number = None
    if array.size == 1 and array.dtype.kind in "iuf":
        number = float(array.reshape(-1)[0])
    if number is None or not np.isfinite(number) or number <= 0:
        shown = f"{number:g}" if number is not None else repr(value.decode() if isinstance(value, bytes) else value)
        raise FmscopeError(
            f"{where}: uns['fmscope']['microns_per_unit'] is {shown}, not a positive number.",
            "Set uns['fmscope']['microns_per_unit'] to how many microns one coordinate unit is (1 if the "
            "coordinates are microns), or delete the key and give --microns-per-unit.",
        )
    return number


def apply(units: Units, xy: np.ndarray) -> np.ndarray:
    """(cells, 2) coordinates in file units -> microns."""
    xy = np.asarray(xy, dtype=float)[:, :2]
    return xy @ units.to_microns[:2, :2].T + units.to_microns[:2, 2]


def yx(affine_xy: np.ndarray) -> np.ndarray:
    """A 3x3 affine on (x, y, 1) as the same affine on (y, x, 1)."""
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return swap @ affine_xy @ swap


def grid_microns_per_pixel(
    rows: np.ndarray, cols: np.ndarray, xy: np.ndarray, groups: np.ndarray | None = None
) -> float | None:
    """Microns per pixel from a Visium spot grid: spots (row, col) and (row, col + 2) are 100 um apart.

    ``xy`` (spots, 2) in pixels; ``groups`` (sections) keeps spots of different sections apart.
    None when fewer than ``MIN_GRID_STEPS`` such pairs exist.
    """
    groups = np.zeros(len(rows), dtype=int) if groups is None else np.asarray(groups)
    steps = []
    for group in np.unique(groups):
        inside = groups == group
        at = {(int(r), int(c)): p for r, c, p in zip(rows[inside], cols[inside], np.asarray(xy, float)[inside])}
        steps += [float(np.hypot(*(at[(r, c + 2)] - p))) for (r, c), p in at.items() if (r, c + 2) in at]
    if len(steps) < MIN_GRID_STEPS or not np.median(steps) > 0:
        return None
    return VISIUM_PITCH_UM / float(np.median(steps))


def visium_units(scalefactors: dict, rows=None, cols=None, xy=None, groups=None, where: str = "") -> Units | None:
    """Microns per full-resolution pixel of a Visium / Visium HD table: ``microns_per_pixel`` (Visium HD scale
    factors), else the spot grid, else the 65 um theoretical spot (``spot_diameter_fullres``)."""
    if scalefactors.get("microns_per_pixel"):
        return Units.scaled(float(scalefactors["microns_per_pixel"]), f"microns_per_pixel in {where}scale factors")
    if rows is not None and cols is not None and xy is not None:
        per_px = grid_microns_per_pixel(np.asarray(rows), np.asarray(cols), np.asarray(xy), groups)
        if per_px is not None:
            return Units.scaled(per_px, f"{where}Visium spot grid, spots 100 um apart")
    if scalefactors.get("spot_diameter_fullres"):
        return Units.scaled(
            VISIUM_THEORETICAL_SPOT_UM / float(scalefactors["spot_diameter_fullres"]),
            f"spot_diameter_fullres in {where}scale factors (a 65 um spot)",
        )
    return None
