"""scGPT's value binning, made deterministic.

The official ``scgpt.preprocess.binning`` digitises each cell's nonzero values into
``n_bins - 1`` quantile bins and breaks ties at bin edges at random. fmscope gives a value
on a run of equal edges the ceiling of the middle of that run (the random rule's expectation),
so a cell always gets the same tokens; values between edges bin exactly as the official code.
"""

from __future__ import annotations

import numpy as np


def bin_values(row: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin one cell's expression values (zeros stay 0; nonzero -> 1..n_bins-1), as float64."""
    row = np.asarray(row, dtype=np.float64)
    out = np.zeros_like(row)
    nonzero = row > 0
    if not nonzero.any():
        return out
    values = row[nonzero]
    edges = np.quantile(values, np.linspace(0, 1, n_bins - 1))
    left = np.digitize(values, edges)
    right = np.digitize(values, edges, right=True)
    out[nonzero] = np.ceil((left + right) / 2)
    return out
