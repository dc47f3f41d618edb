"""SAM-architecture models (MedSAM ViT-B, SAM ViT-B/L/H) built with segment-anything's registry."""

from __future__ import annotations

import segment_anything
from segment_anything.modeling import Sam

from fmscope.imaging.models.sam_parts import MODELING, sam_modeling

if not hasattr(segment_anything, "modeling"):  # loaded on its own first (sam_parts): attach it to its package
    segment_anything.modeling = sam_modeling()
    assert segment_anything.modeling.__name__ == MODELING


def build_sam(kind: str) -> Sam:
    """An untrained SAM of ``kind`` ('vit_b', 'vit_l', 'vit_h'); weights are loaded afterwards."""
    return segment_anything.sam_model_registry[kind](checkpoint=None)
