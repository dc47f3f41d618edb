"""Start-up: each command imports only what it needs (fresh interpreters, as a user starts them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY_FOR_RESIZING = ("torchvision", "torch._dynamo")


def modules_after(code: str) -> set[str]:
    """Module names loaded in a fresh interpreter after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, encoding="utf-8", errors="replace", check=True, timeout=600
    )
    return set(out.stdout.split())


def test_help_does_not_import_torch():
    loaded = modules_after("from fmscope.cli import build_parser\nbuild_parser().format_help()")
    assert "torch" not in loaded and "napari" not in loaded


@pytest.mark.slow
def test_litemedsam_loads_without_torchvision_and_sam_still_builds():
    loaded = modules_after("from fmscope.imaging.predictor import Segmenter\nSegmenter(device='cpu')")
    assert not loaded & set(HEAVY_FOR_RESIZING), loaded & set(HEAVY_FOR_RESIZING)
    assert "zarr" not in loaded and "skimage" not in loaded
    # the SAM family still builds through segment-anything's own package afterwards
    loaded = modules_after(
        "from fmscope.imaging.models.litemedsam import LiteMedSAM\nLiteMedSAM()\n"
        "from fmscope.imaging.models.medsam import build_sam\nimport segment_anything\n"
        "sam = build_sam('vit_b')\nassert segment_anything.modeling.Sam is type(sam)"
    )
    assert "segment_anything.modeling" in loaded


@pytest.mark.slow
def test_napari_widget_module_does_not_import_torch():
    loaded = modules_after("import fmscope.napari.segment_widget")
    assert "torch" not in loaded
    assert "torch" not in modules_after("import fmscope.napari.track_panel")  # torch loads on the model thread
