"""fmscope.imaging.tracking.volume.track_volume (MedSAM2's 3D flow for fmscope volume and 3D Slicer): refusals
before any model loads. Its results are checked against fmscope volume --model medsam2 in
tests/slicer_logic/test_medsam2.py and against sam2's own predictor in test_tracking_medsam2.py."""

from __future__ import annotations

import numpy as np
import pytest

from fmscope.errors import FmscopeError
from fmscope.imaging.tracking.volume import track_volume

VOLUME = np.zeros((3, 16, 16), np.int16)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"model": "litemedsam", "boxes": [1, 1, 8, 8]}, "no 3D tracking flow"),
        ({"direction": "sideways", "boxes": [1, 1, 8, 8]}, "Unknown direction"),
        ({}, "No prompt"),
    ],
)
def test_refusals(kwargs, words):
    with pytest.raises(FmscopeError, match=words):
        track_volume(VOLUME, 1, **kwargs)


def test_no_checkpoint_is_refused(monkeypatch):
    monkeypatch.delenv("FMSCOPE_CHECKPOINT_DIR", raising=False)
    with pytest.raises(FmscopeError, match="MedSAM2_latest.pt"):
        track_volume(VOLUME, 1, [1, 1, 8, 8])
