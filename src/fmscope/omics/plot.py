"""PNG of per-cell / per-spot values (domains) drawn on the tissue image, in microns."""

from __future__ import annotations

import os

import numpy as np

from fmscope.atomic import atomic_write
from fmscope.omics.io import Slide


def save_domain_png(slide: Slide, column: str, path: str | os.PathLike, title: str = "") -> None:
    """Scatter of ``slide.adata.obs[column]`` over the tissue image (if any), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adata = slide.adata
    xy = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
    labels = adata.obs[column].astype(str).to_numpy()
    names = sorted(np.unique(labels), key=lambda v: (len(v), v))
    figure, axes = plt.subplots(figsize=(7, 7), dpi=110)
    if slide.image is not None and slide.image_microns_per_pixel:
        h, w = slide.image.shape[:2]
        extent = (0, w * slide.image_microns_per_pixel, h * slide.image_microns_per_pixel, 0)
        axes.imshow(slide.image, extent=extent)
    size = 18 if slide.spot_diameter_um else 8
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(names), 2)))
    for colour, name in zip(colours, names):
        chosen = labels == name
        axes.scatter(xy[chosen, 0], xy[chosen, 1], s=size, color=colour, label=name, linewidths=0, alpha=0.85)
    if slide.image is None:
        axes.invert_yaxis()
    axes.set_aspect("equal")
    axes.set_xlabel("x (µm)")
    axes.set_ylabel("y (µm)")
    axes.set_title(title or column)
    axes.legend(markerscale=2, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    figure.tight_layout()
    try:
        atomic_write(path, lambda temporary: figure.savefig(temporary, format="png"))
    finally:
        plt.close(figure)
