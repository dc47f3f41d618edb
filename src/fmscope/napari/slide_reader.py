"""napari reader for spatial-omics slides: Visium / Xenium / MERSCOPE folders, SpatialData .zarr, .h5ad."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fmscope.errors import FmscopeError
from fmscope.napari.slide_layers import slide_layers
from fmscope.omics.io import read_slide

SLIDE_MARKERS = ("filtered_feature_bc_matrix.h5", "experiment.xenium", "cell_by_gene.csv")


def is_slide_path(path: str | Path) -> bool:
    """True for paths fmscope reads as slides (by name and folder contents, without reading them)."""
    path = Path(path)
    if path.suffix in (".zarr", ".h5ad"):
        return True
    return path.is_dir() and any((path / marker).is_file() for marker in SLIDE_MARKERS)


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
