"""Display names of files and folders: the name without its format suffix(es).

``sample.v2.tif`` is ``sample.v2`` and ``patient.01.nii.gz`` is ``patient.01``: only a suffix
fmscope knows as a format is dropped (a DICOM named ``1.2.840.113`` keeps its whole name).
"""

from __future__ import annotations

import os
from pathlib import Path

# Two-part suffixes first: each is dropped whole.
COMPOUND_SUFFIXES = (".nii.gz", ".ome.tiff", ".ome.tif", ".ome.zarr", ".ome.png")
FORMAT_SUFFIXES = (
    ".tif",
    ".tiff",
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".nii",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".dcm",
    ".dicom",
    ".mp4",
    ".avi",
    ".mov",
    ".mkv",
    ".webm",
    ".m4v",
    ".zarr",
    ".h5ad",
    ".csv",
    ".pt",
)


def display_name(path: str | os.PathLike, default: str = "") -> str:
    """``path``'s file name without its format suffix; ``default`` when nothing is left."""
    name = Path(path).name
    lower = name.lower()
    for suffix in COMPOUND_SUFFIXES + FORMAT_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name or default
