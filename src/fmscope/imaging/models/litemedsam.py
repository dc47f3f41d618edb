"""LiteMedSAM: fmscope's TinyViT encoder + segment-anything's prompt encoder and mask decoder."""

from __future__ import annotations

from torch import nn

from fmscope.imaging.models.sam_parts import sam_modeling
from fmscope.imaging.models.tiny_vit import TinyViT, TinyViTConfig


class LiteMedSAM(nn.Module):
    """The three parts of LiteMedSAM under the names used by ``lite_medsam.pth``."""

    def __init__(self) -> None:
        super().__init__()
        modeling = sam_modeling()
        self.image_encoder = TinyViT(TinyViTConfig())
        self.prompt_encoder = modeling.PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16
        )
        self.mask_decoder = modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )
