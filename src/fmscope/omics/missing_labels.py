"""Label values that mean "no label": one rule for every table of labels fmscope reads (a reference's cell types,
a slide's annotation column, an annotation CSV).

pandas reads an empty CSV field as NaN even with ``dtype=str`` (pandas-dev/pandas#10205), ``astype(str)`` turns
that NaN into the text 'nan', and annotation tools write the cells nobody annotated as 'Unassigned' (Loupe
Browser) or 'unknown': none of these is a class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING_LABELS = frozenset(
    {"", "nan", "none", "na", "n/a", "null", "unknown", "unassigned", "unlabeled", "unlabelled", "?"}
)


def missing_mask(values: pd.Series) -> np.ndarray:
    """(n,) bool: True where ``values`` holds no label (NaN / None, or one of ``MISSING_LABELS`` ignoring case and
    surrounding blanks)."""
    values = pd.Series(values)
    text = values.astype(str).str.strip().str.lower()
    return (values.isna() | text.isin(MISSING_LABELS)).to_numpy()


def as_labels(values: pd.Series) -> tuple[np.ndarray, str | None]:
    """(labels as str with '' where there is no label, a sentence naming the no-label words found, else None)."""
    values = pd.Series(values)
    missing = missing_mask(values)
    text = values.astype(str).str.strip()
    words = sorted({str(v) for v in text[missing & values.notna().to_numpy()] if str(v)})
    labels = np.where(missing, "", text.to_numpy()).astype(str)
    if not words:
        return labels, None
    return labels, (
        f"{int(missing.sum())} cells labelled {', '.join(repr(w) for w in words[:5])} or left blank are "
        "not annotated (not a class)."
    )
