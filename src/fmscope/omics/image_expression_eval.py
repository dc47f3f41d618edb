"""Honest evaluation of image-to-expression: spatially blocked hold-out, per-gene Pearson r, two baselines.

The spots' bounding box is cut into a grid of square blocks, dealt (seeded) into folds of at
least ``blocks_per_fold`` whole blocks; each fold is held out in turn, and training spots whose
patch would overlap a held-out spot's patch are dropped, so neither neighbouring spots nor
shared pixels leak into the test. Every spot is predicted once, by a model that never saw its
block; per-gene r is computed over all spots. Baselines, fitted on the same training spots:

- colour: the expression of the training spot nearest in raw colour statistics of the patch
  (:func:`fmscope.omics.image_patches.colour_statistics`, standardised), and ``colour_knn``: the
  mean over the ``k`` nearest in colour (the model's ``k``; a stronger colour baseline);
- interpolation: the inverse-distance-weighted mean of the 6 nearest training spots in physical
  space (usable only where spots were measured around the target, unlike the image).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from fmscope.errors import FmscopeError

INTERPOLATION_K = 6
METHODS = ("image", "colour", "colour_knn", "interpolation")


@dataclass
class HoldoutSplit:
    """Boolean masks over spots: ``test`` (held-out blocks), ``train`` (the rest minus a patch-wide buffer)."""

    train: np.ndarray
    test: np.ndarray
    blocks: list[tuple[int, int]]  # (column, row) of the held-out blocks
    block_um: float


def blocked_folds(
    xy_um: np.ndarray, blocks_per_fold: int, patch_um: float, seed: int = 0, grid: int = 5
) -> list[HoldoutSplit]:
    """Spatially blocked cross-validation: the spots' bounding box (microns) is cut into ``grid`` x ``grid``
    blocks; the blocks holding spots are shuffled (``seed``) and dealt into folds of at least
    ``blocks_per_fold`` blocks, so every spot is held out exactly once, with its whole block."""
    xy = np.asarray(xy_um, dtype=float)[:, :2]
    low = xy.min(axis=0)
    block_um = float((xy.max(axis=0) - low).max()) / grid + 1e-6
    cell = np.floor((xy - low) / block_um).astype(int)
    occupied = sorted({(int(c), int(r)) for c, r in cell})
    n_folds = len(occupied) // max(blocks_per_fold, 1)
    if blocks_per_fold < 1 or n_folds < 2:
        raise FmscopeError(
            f"Cannot hold out {blocks_per_fold} blocks at a time: the spots fill {len(occupied)} "
            f"blocks of {block_um:.0f} µm and at least two folds are needed.",
            f"Use between 1 and {len(occupied) // 2} hold-out blocks.",
        )
    order = np.random.default_rng(seed).permutation(len(occupied))
    folds = []
    for chosen in np.array_split(order, n_folds):
        blocks = [occupied[i] for i in sorted(chosen)]
        test = np.zeros(len(xy), dtype=bool)
        for column, row in blocks:
            test |= (cell[:, 0] == column) & (cell[:, 1] == row)
        distance, _ = cKDTree(xy[test]).query(xy, k=1, p=np.inf)  # Chebyshev: square patches overlap below patch_um
        folds.append(HoldoutSplit(~test & (distance >= patch_um), test, blocks, block_um))
    return folds


def nearest_mean(
    train_keys: np.ndarray, train_values: np.ndarray, query_keys: np.ndarray, k: int, inverse_distance: bool = False
) -> np.ndarray:
    """Mean of ``train_values`` over the ``k`` nearest training keys of each query (optionally 1/d weighted)."""
    k = min(k, len(train_keys))
    distance, index = cKDTree(train_keys).query(query_keys, k=k)
    distance, index = distance.reshape(len(query_keys), k), index.reshape(len(query_keys), k)
    weights = 1.0 / np.maximum(distance, 1e-6) if inverse_distance else np.ones_like(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkg->ng", weights, train_values[index])


def pearson_per_gene(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(genes,) Pearson r between columns; NaN where either column is constant."""
    t = truth - truth.mean(axis=0)
    p = predicted - predicted.mean(axis=0)
    denominator = np.sqrt((t**2).sum(axis=0) * (p**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (t * p).sum(axis=0) / denominator, np.nan)


@dataclass
class HoldoutReport:
    """Per-gene held-out Pearson r of the image model and the baselines, genes by decreasing variance."""

    genes: list[str]
    r: dict[str, np.ndarray]  # method -> (genes,)
    n_train: int  # training spots per fold (mean)
    n_test: int
    n_blocks: int  # blocks per fold (at least)
    n_folds: int
    block_um: float
    fold_r: list[np.ndarray] = field(default_factory=list)  # per fold: (genes,) image r over its held-out spots
    fold_spots: list[int] = field(default_factory=list)  # held-out spots per fold

    def mean(self, method: str, top: int | None = None) -> float:
        """Mean r over the ``top`` most variable genes (all when None), ignoring constant genes."""
        return float(np.nanmean(self.r[method][:top]))

    def table(self, top: int = 50) -> str:
        """A plain-text table: per gene r for each method, then the means over the top 20 and all shown."""
        lines = [
            f"held-out: all {self.n_test} spots, in {self.n_folds} folds of >= {self.n_blocks} blocks of "
            f"{self.block_um:.0f} µm (each fold trained on ~{self.n_train} spots outside its blocks); "
            "Pearson r per gene, genes by decreasing variance",
            f"{'gene':<14}" + "".join(f"{m:>15}" for m in METHODS) + "  image predicts",
        ]
        for i, gene in enumerate(self.genes[:top]):
            values = [self.r[m][i] for m in METHODS]
            verdict = "yes" if values[0] >= 0.2 and values[0] > max(values[1], values[2]) else "no"
            lines.append(f"{gene:<14}" + "".join(f"{v:>15.3f}" for v in values) + f"  {verdict}")
        for n in sorted({min(20, len(self.genes)), min(top, len(self.genes))}):
            lines.append(f"{'mean top ' + str(n):<14}" + "".join(f"{self.mean(m, n):>15.3f}" for m in METHODS))
        return "\n".join(lines + self.fold_lines())

    def fold_mean(self, fold: int, top: int = 20) -> float:
        """Image r of fold ``fold`` (1-based) over its own held-out spots, mean over the ``top`` most variable genes."""
        return float(np.nanmean(self.fold_r[fold - 1][:top]))

    def fold_lines(self) -> list[str]:
        """One line per fold: its held-out spots and the image model's mean r over the top 20 genes on them."""
        top = min(20, len(self.genes))
        return [
            f"fold {i}: {n} held-out spots, image r over them (mean top {top}) {self.fold_mean(i, top):.3f}"
            for i, n in enumerate(self.fold_spots, 1)
        ]

    def summary(self) -> str:
        top = min(20, len(self.genes))
        return (
            f"held-out r over the {top} most variable genes: image {self.mean('image', top):.3f}, "
            f"colour (nearest spot) {self.mean('colour', top):.3f}, colour kNN {self.mean('colour_knn', top):.3f}, "
            f"interpolation {self.mean('interpolation', top):.3f}"
        )
