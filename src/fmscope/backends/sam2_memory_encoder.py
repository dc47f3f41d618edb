"""The memory encoder of a sam2 model (MedSAM2 / SAM2.1) on OpenVINO.

After each tracked frame sam2 encodes the frame's features and its predicted masks into memory: sam2's
``MemoryEncoder`` (the mask downsampler's strided convolutions on the S x S mask, the fuser's ConvNeXt blocks on
the features, a sine position encoding). Inputs ``pix_feat`` (B, C, S / 16, S / 16) and ``masks``
(B, 1, S, S) already passed through the sigmoid (sam2 calls it with ``skip_mask_sigmoid=True``); outputs
``vision_features`` (B, C_mem, S / 16, S / 16) and one position encoding of the same shape. B (objects) is a
dynamic dimension, so one conversion serves any number of objects. :class:`Sam2MemoryEncoding` is that call as a
module with a tuple out, converted once per weights and kept in :mod:`fmscope.backends.openvino_model`'s cache.
"""

from __future__ import annotations

import torch
from sam2.modeling.memory_encoder import MemoryEncoder
from torch import nn

from fmscope.threads import ThreadPolicy


class Sam2MemoryEncoding(nn.Module):
    """(pix_feat (B, C, H, W), sigmoid masks (B, 1, S, S)) -> (memory features, position encoding), each
    (B, C_mem, H, W): sam2's ``MemoryEncoder.forward`` with ``skip_mask_sigmoid=True``."""

    def __init__(self, memory_encoder: nn.Module) -> None:
        super().__init__()
        self.memory_encoder = memory_encoder

    def forward(self, pix_feat: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = MemoryEncoder.forward(self.memory_encoder, pix_feat, masks, skip_mask_sigmoid=True)
        return out["vision_features"], out["vision_pos_enc"][0]


class OpenVINOSam2MemoryEncoder:
    """:class:`Sam2MemoryEncoding` on OpenVINO at ``precision`` (``fp32`` / ``fast``), called as sam2 calls
    ``memory_encoder``; returns its dict of float32 tensors. ``threads``: None = fmscope's thread policy."""

    backend = "openvino"

    def __init__(self, predictor: nn.Module, weights_sha256: str, precision: str, threads: int | None = None) -> None:
        from fmscope.backends.openvino_model import OpenVINOModule, module_identity

        module = Sam2MemoryEncoding(predictor.memory_encoder).eval()
        size, grid = predictor.image_size, predictor.sam_image_embedding_size
        shapes = [(-1, predictor.hidden_dim, grid, grid), (-1, 1, size, size)]
        example = (torch.zeros(1, predictor.hidden_dim, grid, grid), torch.zeros(1, 1, size, size))
        identity = module_identity(module, weights_sha256, shapes, parts=tuple(predictor.memory_encoder.modules()))
        self.network = OpenVINOModule(module, shapes, identity, precision, example)
        self.thread_policy = ThreadPolicy(threads)

    def prepare(self) -> None:
        """Compile now (from the disk cache: ~0.2 s; converting it the first time on a machine: ~10 s)."""
        self.network.compiled(self.thread_policy.apply())

    def __call__(self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = False) -> dict:
        """``{"vision_features": (B, C_mem, H, W), "vision_pos_enc": [(B, C_mem, H, W)]}`` for ``pix_feat``
        (B, C, H, W) and ``masks`` (B, 1, S, S) (logits, or probabilities when ``skip_mask_sigmoid``)."""
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        arrays = (pix_feat.detach().cpu().numpy(), masks.detach().cpu().numpy())
        features, position = self.network.infer(arrays, self.thread_policy.apply())
        return {"vision_features": torch.from_numpy(features), "vision_pos_enc": [torch.from_numpy(position)]}
