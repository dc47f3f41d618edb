"""A random-weight MedSAM2 checkpoint in the official layout, for tests (needs the sam2 package).

``{"model": state_dict}`` of SAM2.1 Hiera-T at 512 px (MedSAM2's layout) with random weights
built by the sam2 package; its mask decoder and prompt encoder are re-drawn with a fixed seed
so that the masks follow the image (neither empty nor the whole box).
"""

from __future__ import annotations

from pathlib import Path

import torch

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
DECODER_SEED = 1020  # re-drawn decoder whose masks follow the test images (checked in test_tracking_medsam2)


def write_random_medsam2_checkpoint(path: str | Path) -> str:
    """Write the checkpoint to ``path`` (e.g. .../MedSAM2_latest.pt); returns the path."""
    from sam2.build_sam import build_sam2

    from fmscope.imaging.tracking.sam2_model import sam2_overrides

    torch.manual_seed(0)
    model = build_sam2(CONFIG, None, device="cpu", hydra_overrides_extra=sam2_overrides(512))
    torch.manual_seed(DECODER_SEED)
    for module in list(model.sam_mask_decoder.modules())[1:] + list(model.sam_prompt_encoder.modules()):
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    torch.save({"model": model.state_dict()}, path)
    return str(path)
