"""SAM-architecture models (MedSAM ViT-B, SAM ViT-B/L/H) built with segment-anything's registry."""

from __future__ import annotations

from segment_anything import sam_model_registry
from segment_anything.modeling import Sam


def build_sam(kind: str) -> Sam:
    """An untrained SAM of ``kind`` ('vit_b', 'vit_l', 'vit_h'); weights are loaded afterwards."""
    return sam_model_registry[kind](checkpoint=None)
