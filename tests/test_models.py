"""The model catalogue (fmscope/models.py) is the one place models are declared: every front end offers what it
lists, for the jobs its capabilities allow, and no source file outside it spells a model's name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from cli_runner import run_cli

from fmscope import checkpoints, models
from fmscope.batch.manifest import IMAGING_CAPABILITIES, read_manifest
from fmscope.errors import FmscopeError
from fmscope.imaging.tracking.sam2_model import SAM2_CONFIGS
from fmscope.imaging.tracking.volume import SAM2_MODELS

ROOT = Path(__file__).resolve().parents[1]


def test_engine_registries_are_read_from_the_catalogue():
    assert set(checkpoints.CHECKPOINTS) == {e.name for e in models.CATALOGUE if e.family != "omics" and e.filename}
    assert set(SAM2_CONFIGS) == set(models.names(family="sam2")) == set(SAM2_MODELS)
    assert all(models.volume_flow(name) == "slices" for name in models.names(models.SEGMENT))
    assert models.can("my/tuned.pt", models.TRACK) and not models.can("my/tuned.pt", models.EMBED)
    assert models.DEFAULT_SEGMENTER in models.names(models.SEGMENT)


def test_napari_model_boxes_offer_the_catalogue():
    from fmscope.napari import segment_widget, track_panel

    assert segment_widget.MODELS == models.names(models.SEGMENT)
    assert track_panel.MODELS == models.names(models.TRACK)


@pytest.mark.parametrize("entry", [e for e in models.CATALOGUE if e.family != "omics"], ids=lambda e: e.name)
def test_cli_and_batch_accept_a_model_exactly_for_its_capabilities(entry, tmp_path):
    """`fmscope track --model NAME` is refused before any model loads when NAME cannot track; a batch row is
    accepted for the jobs the entry's capabilities allow and refused by name for the others."""
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((2, 16, 16), np.uint8), metadata={"axes": "TYX"})
    if not entry.can(models.TRACK):
        result = run_cli(
            "track",
            stack,
            "--frame",
            "0",
            "--box",
            "2",
            "2",
            "8",
            "8",
            "--model",
            entry.name,
            "-o",
            tmp_path / "labels.tif",
        )
        assert result.returncode == 1 and "cannot track" in result.stderr and entry.name in result.stderr
        assert not (tmp_path / "labels.tif").exists()
    help_text = run_cli("track", "--help").stdout
    assert (entry.name in help_text) == entry.can(models.TRACK)
    for job, capability in IMAGING_CAPABILITIES.items():
        manifest = tmp_path / f"{job}.csv"
        manifest.write_text(f"job,input,model,box,slice\n{job},{stack},{entry.name},2 2 8 8,0\n")
        if entry.can(capability):
            assert read_manifest(manifest)[0].model == entry.name
        else:
            with pytest.raises(FmscopeError, match=f"model '{re.escape(entry.name)}' cannot {job}"):
                read_manifest(manifest)


def test_each_model_name_is_spelled_in_one_source_file():
    """Outside fmscope/models.py, source files name models through the catalogue (tests and docs may spell them)."""
    sources = [p for folder in ("src", "slicer_extension") for p in (ROOT / folder).rglob("*.py")]
    for entry in models.CATALOGUE:
        if entry.family == "omics":
            continue  # 'baseline' / 'scgpt' are also ordinary words of the omics code
        pattern = re.compile(rf"[\"']{re.escape(entry.name)}[\"']")
        spelled = sorted(str(p.relative_to(ROOT)) for p in sources if pattern.search(p.read_text(encoding="utf-8")))
        assert spelled == ["src/fmscope/models.py"], (entry.name, spelled)
