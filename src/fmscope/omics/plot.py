"""PNGs of per-cell / per-spot results (domains, values, embeddings) drawn on the tissue image, in microns."""

from __future__ import annotations

import os

import numpy as np

from fmscope.atomic import atomic_write
from fmscope.omics.io import Slide


def _figure(slide: Slide):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 7), dpi=110)
    if slide.image is not None and slide.image_microns_per_pixel:
        h, w = slide.image.shape[:2]
        extent = (0, w * slide.image_microns_per_pixel, h * slide.image_microns_per_pixel, 0)
        image = np.asarray(slide.image)
        axes.imshow(image, extent=extent, cmap="gray" if image.ndim == 2 else None)  # grey tissue images in grey
    else:
        axes.invert_yaxis()
    axes.set_aspect("equal")
    axes.set_xlabel("x (µm)")
    axes.set_ylabel("y (µm)")
    return plt, figure, axes


def _save(plt, figure, path: str | os.PathLike) -> None:
    figure.tight_layout()
    try:
        atomic_write(path, lambda temporary: figure.savefig(temporary, format="png"))
    finally:
        plt.close(figure)


def _size(slide: Slide) -> float:
    """Marker area: large for Visium spots (55 um), small for cells and HD bins (their size is known too now)."""
    return 18 if (slide.spot_diameter_um or 0) > 30 else 8


def save_domain_png(slide: Slide, column: str, path: str | os.PathLike, title: str = "") -> None:
    """Scatter of the categories in ``slide.adata.obs[column]`` over the tissue image (if any), written atomically."""
    plt, figure, axes = _figure(slide)
    xy = np.asarray(slide.adata.obsm["spatial"], dtype=float)[:, :2]
    labels = slide.adata.obs[column].astype(str).to_numpy()
    names = sorted(np.unique(labels), key=lambda v: (len(v), v))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(names), 2)))
    for colour, name in zip(colours, names):
        chosen = labels == name
        axes.scatter(xy[chosen, 0], xy[chosen, 1], s=_size(slide), color=colour, label=name, linewidths=0, alpha=0.85)
    axes.set_title(title or column)
    axes.legend(markerscale=2, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    _save(plt, figure, path)


def save_values_png(
    slide: Slide, values: np.ndarray, path: str | os.PathLike, title: str = "", colormap: str = "viridis"
) -> None:
    """Scatter of per-cell values (N,) with a colour bar, or colours (N, 3) in [0, 1], over the tissue image."""
    plt, figure, axes = _figure(slide)
    xy = np.asarray(slide.adata.obsm["spatial"], dtype=float)[:, :2]
    values = np.asarray(values, dtype=float)
    if values.ndim == 2:
        axes.scatter(xy[:, 0], xy[:, 1], s=_size(slide), c=np.clip(values, 0, 1), linewidths=0)
    else:
        points = axes.scatter(xy[:, 0], xy[:, 1], s=_size(slide), c=values, cmap=colormap, linewidths=0)
        figure.colorbar(points, ax=axes, shrink=0.7)
    axes.set_title(title)
    _save(plt, figure, path)


def embedding_colours(embedding: np.ndarray) -> np.ndarray:
    """(N, 3) colours in [0, 1] from the first three principal components of an embedding."""
    centred = embedding - embedding.mean(axis=0)
    _, _, axes = np.linalg.svd(centred[: min(len(centred), 50_000)], full_matrices=False)
    components = centred @ axes[:3].T
    if components.shape[1] < 3:
        components = np.pad(components, ((0, 0), (0, 3 - components.shape[1])))
    low, high = np.percentile(components, 2, axis=0), np.percentile(components, 98, axis=0)
    return (components - low) / np.where(high > low, high - low, 1)
