"""Segmentation metrics: Dice and normalised surface distance (NSD)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from fmscope.errors import FmscopeError


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of two binary masks; 1.0 when both are empty."""
    a, b = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def _ids_text(labels: np.ndarray) -> str:
    """The nonzero ids of a label image, for messages ("1, 2"; "none" for an empty one; the first 10 of more)."""
    ids = [int(i) for i in np.unique(labels) if i != 0]
    return ", ".join(map(str, ids[:10])) + (f", ... ({len(ids)} in all)" if len(ids) > 10 else "") if ids else "none"


def label_masks(prediction: np.ndarray, truth: np.ndarray, label: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The two binary masks to score from label images of one grid: ``label``'s pixels in each, or every nonzero
    pixel when ``label`` is None.

    Raises :class:`FmscopeError` when ``label`` is in neither image, naming the ids each holds: two empty masks
    would score Dice 1 (:func:`dice`'s convention for an empty slice), so a mistyped label, or one numbered
    otherwise in the other file (1 = organ, 2 = tumour in MSD / KiTS truths), would read as a perfect result
    (nnU-Net reports such a 0 / 0 as NaN: MIC-DKFZ/nnUNet#1065)."""
    if label is None:
        return prediction > 0, truth > 0
    predicted, true = prediction == label, truth == label
    if not predicted.any() and not true.any():
        raise FmscopeError(
            f"Label {label} is in neither the prediction (labels: {_ids_text(prediction)}) nor the truth (labels: "
            f"{_ids_text(truth)}): there is nothing to score, and two empty masks are no match.",
            "Give --label a label one of them holds (the ids can differ between the files: the truth's organ may "
            "be 1 and its tumour 2), or leave out --label to compare every nonzero label.",
        )
    return predicted, true


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def nsd(
    prediction: np.ndarray, truth: np.ndarray, tolerance: float = 1.0, spacing: Sequence[float] | None = None
) -> float:
    """Normalised surface Dice: share of both surfaces within ``tolerance`` (in spacing units)
    of the other surface (Nikolov et al., 2021). 1.0 when both masks are empty."""
    a, b = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    if not a.any() and not b.any():
        return 1.0
    if not a.any() or not b.any():
        return 0.0
    sampling = spacing if spacing is not None else [1.0] * a.ndim
    surface_a, surface_b = _surface(a), _surface(b)
    distance_to_b = ndimage.distance_transform_edt(~surface_b, sampling=sampling)
    distance_to_a = ndimage.distance_transform_edt(~surface_a, sampling=sampling)
    close = (distance_to_b[surface_a] <= tolerance).sum() + (distance_to_a[surface_b] <= tolerance).sum()
    return float(close / (surface_a.sum() + surface_b.sum()))


def ari(labels_a, labels_b) -> float:
    """Adjusted Rand index of two labelings (scikit-learn)."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(labels_a, labels_b))


def nmi(labels_a, labels_b) -> float:
    """Normalised mutual information of two labelings (scikit-learn)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(labels_a, labels_b))
