"""fmscope: biomedical foundation models where people look at their data (napari, 3D Slicer).

The engine lives in ``fmscope.imaging`` (MedSAM-family segmentation), the front ends in
``fmscope.cli`` and ``fmscope.napari``. Heavy modules are imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["FmscopeError", "Segmenter", "segment_volume", "__version__"]


def __getattr__(name: str):
    if name == "Segmenter":
        from fmscope.imaging.predictor import Segmenter

        return Segmenter
    if name == "segment_volume":
        from fmscope.imaging.volume import segment_volume

        return segment_volume
    if name == "FmscopeError":
        from fmscope.errors import FmscopeError

        return FmscopeError
    raise AttributeError(f"module 'fmscope' has no attribute {name!r}")
