"""The log base of log-normalised expression (``log_b(x + 1)``), so that fmscope undoes it as ``b^X - 1``.

scanpy records the base it used in ``uns['log1p']['base']`` (None: natural log); that record is used when
present. Matrices written elsewhere carry no record, and the base varies: R's ``log2(cpm(x) + 1)``, GEO's
processed matrices, Smart-seq pipelines and bulk-style tools use base 2, some exports base 10, Seurat / scanpy
natural log. Undone in the wrong base, every value v becomes (v + 1)^k - 1 (k = 1.44 for log2 read as ln): a
silently different expression profile. So the base is told from the evidence the values give, for each of
e, 2 and 10 (``b^X - 1`` over the first :data:`SAMPLE_CELLS` cells), by three tests in decreasing strength:

1. **same totals**: every cell's ``b^X - 1`` sums to one total (CPM, CP10k: normalised on these genes), within
   :data:`TOTAL_SPREAD` (relative standard deviation);
2. **integers**: ``b^X - 1`` are whole counts (``log1p`` of raw counts);
3. **counts scaled per cell**: each cell's values are whole multiples of its smallest one (normalised, then
   genes subset: pbmc68k_reduced's ``.raw``; a count of 1 is in nearly every cell).

Tests 2-3 look at values up to :data:`CHECKED_UP_TO` (beyond, the file's rounding of X exceeds the tolerance)
and need at least :data:`MIN_EVIDENCE` of them of 2 or more (ones alone fit any base). A test decides when
exactly one base passes it (the first test that does); when none decides, the base is not guessed: refused,
naming the problem and the fixes (the raw counts, or the base recorded in ``uns['log1p']``).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from fmscope.errors import FmscopeError

BASES = {"e": math.e, "2": 2.0, "10": 10.0}
SAMPLE_CELLS = 2_000
TOTAL_SPREAD = 0.01  # relative standard deviation of the cells' totals that counts as "the same total"
CHECKED_UP_TO = 100.0  # values (or multiples) above this are not checked for being whole
TOLERANCE = 0.05  # absolute distance to a whole number, plus RELATIVE_TOLERANCE of the value
RELATIVE_TOLERANCE = 0.002  # X rounded to 3 decimals moves b^X by up to 0.12 % (base 10)
MIN_FRACTION = 0.99  # of the checked values that must be whole
MIN_EVIDENCE = 20  # checked values of 2 or more needed for tests 2 and 3


def _whole(values: np.ndarray) -> tuple[float, int]:
    """(fraction of ``values`` <= CHECKED_UP_TO within tolerance of a whole number, how many of those are >= 2)."""
    checked = values[values <= CHECKED_UP_TO]
    if checked.size == 0:
        return 0.0, 0
    nearest = np.round(checked)
    whole = np.abs(checked - nearest) <= TOLERANCE + RELATIVE_TOLERANCE * checked
    return float(whole.mean()), int(np.count_nonzero(nearest >= 2))


def _evidence(rows: sp.csr_matrix, base: float) -> dict[str, float | bool]:
    """The three tests of the module for one base on (cells, genes) log values ``rows``."""
    values = np.expm1(rows.data * math.log(base))
    cell = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    totals = np.bincount(cell, weights=values, minlength=rows.shape[0])
    totals = totals[np.diff(rows.indptr) > 0]
    spread = float(totals.std() / totals.mean()) if totals.size > 1 and totals.mean() > 0 else math.inf
    whole, evidence = _whole(values)
    smallest = np.full(rows.shape[0], np.inf)
    np.minimum.at(smallest, cell, values)
    multiples, multiple_evidence = _whole(values / smallest[cell])
    return {
        "total": float(np.median(totals)) if totals.size else 0.0,
        "spread": spread,
        "same totals": totals.size > 1 and spread <= TOTAL_SPREAD,
        "integers": whole >= MIN_FRACTION and evidence >= MIN_EVIDENCE,
        "counts scaled per cell": multiples >= MIN_FRACTION and multiple_evidence >= MIN_EVIDENCE,
    }


def undo(base: float) -> str:
    """How values of log base ``base`` are undone, as said to users: ``exp(x) - 1``, ``2^x - 1``."""
    return "exp(x) - 1" if base == math.e else f"{base:g}^x - 1"


def recorded_base(record: object) -> float | None:
    """The base scanpy's ``uns['log1p']`` record states (its ``base``; None or absent: e), else None when there
    is no record. Raises :class:`FmscopeError` for a base that is not a number above 1."""
    if not isinstance(record, dict):
        return None
    base = record.get("base")
    if base is None:
        return math.e
    try:
        value = float(np.asarray(base).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        value = math.nan
    if not math.isfinite(value) or value <= 1:
        raise FmscopeError(
            f"uns['log1p']['base'] is {base!r}, not a log base (a number above 1).",
            "Set uns['log1p']['base'] to the base X was logged with (2, 10; None for the natural log), or give "
            "the raw counts.",
        )
    return value


def detect_base(matrix, label: str, name: str) -> tuple[float, str]:
    """(base, how it was told) of a log-normalised (cells, genes) ``matrix`` (dense or sparse) without a record,
    by the module's tests. ``label`` names the matrix (``X``, ``layers['lognorm']``), ``name`` the file. Raises
    :class:`FmscopeError` when no test tells one base."""
    rows = sp.csr_matrix(matrix[:SAMPLE_CELLS])  # the file's dtype: a dense block is not copied to float64
    rows.data = rows.data.astype(np.float64)
    rows.data[~np.isfinite(rows.data)] = 0  # NaN counts are refused by the slide reader itself
    rows.eliminate_zeros()
    found = {key: _evidence(rows, base) for key, base in BASES.items()}
    for test in ("same totals", "integers", "counts scaled per cell"):
        passing = [key for key, evidence in found.items() if evidence[test]]
        if len(passing) == 1:
            base = BASES[passing[0]]
            how = (
                f"every cell's {undo(base)} sums to {found[passing[0]]['total']:.4g}"
                if test == "same totals"
                else f"{undo(base)} gives whole counts"
                if test == "integers"
                else f"{undo(base)} gives each cell's values as whole multiples of its smallest"
            )
            return base, how
    spreads = ", ".join(f"{undo(BASES[key])}: {evidence['spread']:.2g}" for key, evidence in found.items())
    raise FmscopeError(
        f"{name}: {label} holds non-integer values that look log-normalised (all small), but fmscope cannot tell "
        f"their log base: neither exp(x) - 1, 2^x - 1 nor 10^x - 1 gives every cell the same total (relative "
        f"spread of the totals {spreads}) or whole counts, and the file has no uns['log1p'] record of the base. "
        "Undone in the wrong base, every value would be distorted (and values not logged at all, such as "
        "ambient-corrected counts, are not counts fmscope can use either).",
        "Give the raw counts (in X, or in a layer / .raw with --layer NAME), or record the base X was logged with: "
        "adata.uns['log1p'] = {'base': 2} (10; None for the natural log).",
    )
