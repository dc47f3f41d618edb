"""Qt-free state of the Spatial widget: the open slides, the chosen one, and which layers belong to which.

A layer belongs to a slide when its metadata holds that slide object under ``SLIDE_KEY`` (tissue,
cells, results); an annotation layer holds it under ``ANNOTATION_KEY``. Ownership is by object,
never by layer name or position, so labels painted for one slide are only ever read for that
slide, whatever layers are renamed, reordered or added for other slides.
"""

from __future__ import annotations

from collections.abc import Iterable

import anndata as ad
import numpy as np
import pandas as pd

from fmscope.napari.slide_layers import SLIDE_KEY, slide_name
from fmscope.omics.io import Slide

ANNOTATION_KEY = "fmscope_annotation_of"
ANNOTATIONS = "fmscope annotations"


class SpatialState:
    """The slides open in the viewer (by display name) and the one the widget works on."""

    def __init__(self) -> None:
        self.slides: dict[str, Slide] = {}
        self.current: Slide | None = None

    def update(self, layers: Iterable) -> list[str]:
        """Re-read the open slides from the layers' metadata; the current slide stays chosen while it is open.

        Returns the slides' display names (the slide's file name, numbered when two share it).
        """
        found: dict[str, Slide] = {}
        for layer in layers:
            slide = layer.metadata.get(SLIDE_KEY)
            if slide is None or any(other is slide for other in found.values()):
                continue
            name, number = slide_name(slide), 2
            while name in found:
                name, number = f"{slide_name(slide)} ({number})", number + 1
            found[name] = slide
        self.slides = found
        if not any(slide is self.current for slide in found.values()):
            self.current = next(iter(found.values()), None)
        return list(found)

    def choose(self, name: str) -> None:
        """Work on the slide shown as ``name`` (nothing changes for an unknown name)."""
        if name in self.slides:
            self.current = self.slides[name]

    def name_of(self, slide: Slide | None) -> str | None:
        """The display name of an open slide, None when it is not open."""
        return next((name for name, open_slide in self.slides.items() if open_slide is slide), None)

    def annotation_name(self, slide: Slide) -> str:
        """The name a new annotation layer of ``slide`` gets."""
        return f"{ANNOTATIONS} ({self.name_of(slide) or slide_name(slide)})"

    @staticmethod
    def annotation_layer(slide: Slide, layers: Iterable):
        """The annotation layer painted for ``slide`` (the first, when the user made several), else None."""
        return next((layer for layer in layers if layer.metadata.get(ANNOTATION_KEY) is slide), None)


def light_table(adata: ad.AnnData) -> ad.AnnData:
    """Counts, genes and coordinates only (obsm["spatial"] as float): what the engine needs, safe to hand to the
    worker thread while the viewer keeps the full table."""
    light = ad.AnnData(X=adata.X, var=adata.var.copy(), obs=pd.DataFrame(index=adata.obs_names.copy()))
    light.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=float).copy()
    return light
