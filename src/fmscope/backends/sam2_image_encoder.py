"""The image encoder of a sam2 model (MedSAM2 / SAM2.1: Hiera trunk + FPN neck) on OpenVINO.

sam2's ``SAM2Base.forward_image`` runs the image encoder and then the mask decoder's two high-resolution
projections (``conv_s0`` / ``conv_s1``); :class:`Sam2ImageFeatures` is that method as a module with a tuple
out, converted once per weights (``openvino.convert_model``, fixed input (1, 3, S, S), S = 512 for MedSAM2)
and kept in the disk cache of :mod:`fmscope.backends.openvino_model`. :class:`OpenVINOSam2ImageEncoder`
answers ``forward_image`` with the same dict of float32 torch tensors (``backbone_fpn``: per level
(1, C_l, S/4/2^l, S/4/2^l), finest first; ``vision_pos_enc`` alike; ``vision_features`` = the coarsest
level), so the rest of sam2's predictor runs unchanged on torch
(:class:`fmscope.imaging.tracking.sam2_model.Sam2Predictor` calls it).
"""

from __future__ import annotations

import torch
from sam2.modeling.sam2_base import SAM2Base
from torch import nn

from fmscope.threads import ThreadPolicy


class Sam2ImageFeatures(nn.Module):
    """``predictor.forward_image`` as a module: image (1, 3, S, S) -> (*backbone_fpn, *vision_pos_enc)."""

    def __init__(self, predictor: nn.Module) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = SAM2Base.forward_image(self.predictor, image)  # sam2's own method, not fmscope's override
        return (*out["backbone_fpn"], *out["vision_pos_enc"])


class OpenVINOSam2ImageEncoder:
    """:class:`Sam2ImageFeatures` on OpenVINO at ``precision`` (``fp32``: within fp32 rounding of torch;
    ``fast``: the CPU's reduced precision). ``threads``: None = fmscope's thread policy per frame."""

    backend = "openvino"

    def __init__(
        self, predictor: nn.Module, image_size: int, weights_sha256: str, precision: str, threads: int | None = None
    ) -> None:
        from fmscope.backends.openvino_model import OpenVINOModule, module_identity

        module = Sam2ImageFeatures(predictor).eval()
        shape = (1, 3, image_size, image_size)
        identity = module_identity(
            module, weights_sha256, shape, parts=(predictor.image_encoder.trunk, predictor.image_encoder.neck)
        )
        self.precision = precision
        self.network = OpenVINOModule(module, shape, identity, precision)
        self.thread_policy = ThreadPolicy(threads)

    def prepare(self) -> None:
        """Compile now (from the disk cache: ~0.5 s; converting it the first time on a machine: ~1 min)."""
        self.network.compiled(self.thread_policy.apply())

    def __call__(self, image: torch.Tensor) -> dict:
        """``forward_image``'s dict for ``image`` (1, 3, S, S) float32 on the CPU."""
        outputs = self.network.infer((image.detach().cpu().numpy(),), self.thread_policy.apply())
        tensors = [torch.from_numpy(each) for each in outputs]
        levels = len(tensors) // 2
        fpn, positions = tensors[:levels], tensors[levels:]
        return {"vision_features": fpn[-1], "vision_pos_enc": positions, "backbone_fpn": fpn}
