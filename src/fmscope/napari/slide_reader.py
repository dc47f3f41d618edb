"""napari reader for spatial-omics slides: Visium / Xenium / MERSCOPE folders, SpatialData .zarr, .h5ad."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fmscope.errors import FmscopeError
from fmscope.napari.slide_layers import slide_layers
from fmscope.omics.io import read_slide, slide_kind


def is_slide_path(path: str | Path) -> bool:
    """True for paths fmscope reads as slides: the engine's own test (:func:`fmscope.omics.io.slide_kind`, by
    name and folder contents, without reading them), so napari opens every layout ``fmscope domains`` reads."""
    return slide_kind(path) is not None


def get_slide_reader(path: str | list[str]) -> Callable[[str], list[tuple]] | None:
    """npe2 reader hook: a reader for slide paths, else None (napari then tries other readers)."""
    if isinstance(path, list) or not is_slide_path(path):
        return None

    def read(target: str) -> list[tuple]:
        from napari.utils.notifications import show_error

        try:
            return slide_layers(read_slide(target))
        except FmscopeError as error:
            show_error(str(error))
            return []

    return read
