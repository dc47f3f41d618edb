"""Training the image encoder's last stage, in full or through low-rank adapters (LoRA).

The encoder is split where its last stage begins: ``head(x)`` (frozen) is computed once per
view before the first epoch and kept, and ``tail(features)`` (the last stage and the neck) runs
in every step, so an epoch costs the tail and the decoder, not the whole encoder.

- LiteMedSAM (TinyViT): head = ``patch_embed`` + ``layers[:-1]``; tail = ``layers[-1]`` + ``neck``
  (features: (B, 64, 64, 160) for a 256 px input).
- MedSAM / SAM (ViT): head = ``patch_embed`` + ``pos_embed`` + ``blocks[:-LAST_VIT_BLOCKS]``; tail
  = the last ``LAST_VIT_BLOCKS`` blocks (one global-attention group of ViT-B) + ``neck``.

LoRA (Hu et al., ICLR 2022): every ``nn.Linear`` of the tail gets ``W + (alpha / r) B A`` with
``A`` (r, in) random and ``B`` (out, r) zero, through ``torch.nn.utils.parametrize``; only ``A``
and ``B`` are trained. :func:`plain_state` merges them into ``W``, so the model file holds plain
weights of the tail, loaded like a last-stage model. Design: fmscope's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

ENCODER_MODES = ("none", "last-stage", "lora")
LAST_VIT_BLOCKS = 3


class LowRankDelta(nn.Module):
    """The LoRA parametrization of a weight (out, in): ``W + scale * B @ A``."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        bound = 1 / in_features**0.5
        self.A = nn.Parameter((torch.rand(rank, in_features, generator=generator) * 2 - 1) * bound)
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.B @ self.A)


@dataclass
class EncoderSplit:
    """The frozen head and the trained tail of an image encoder; ``parts``: the tail's state-dict prefixes."""

    encoder: nn.Module
    parts: list[str]

    def _stages(self) -> nn.ModuleList:
        return self.encoder.layers if hasattr(self.encoder, "layers") else self.encoder.blocks

    def _split(self) -> int:
        return len(self._stages()) - (1 if hasattr(self.encoder, "layers") else LAST_VIT_BLOCKS)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Features entering the last stage, for a preprocessed input batch (B, 3, S, S)."""
        x = self.encoder.patch_embed(x)
        if getattr(self.encoder, "pos_embed", None) is not None:
            x = x + self.encoder.pos_embed
        for stage in list(self._stages())[: self._split()]:
            x = stage(x)
        return x

    def tail(self, features: torch.Tensor) -> torch.Tensor:
        """The image embedding (B, 256, 64, 64) from :meth:`head`'s features."""
        x = features
        for stage in list(self._stages())[self._split() :]:
            x = stage(x)
        return self.encoder.neck(x.permute(0, 3, 1, 2))

    def tail_modules(self) -> list[nn.Module]:
        return [*list(self._stages())[self._split() :], self.encoder.neck]


def split_encoder(net: nn.Module) -> EncoderSplit:
    """The head / tail split of ``net.image_encoder`` (LiteMedSAM's TinyViT or SAM's ViT)."""
    encoder = net.image_encoder
    if hasattr(encoder, "layers"):
        last = len(encoder.layers) - 1
        parts = [f"image_encoder.layers.{last}", "image_encoder.neck"]
    else:
        first = len(encoder.blocks) - LAST_VIT_BLOCKS
        parts = [f"image_encoder.blocks.{i}" for i in range(first, len(encoder.blocks))] + ["image_encoder.neck"]
    return EncoderSplit(encoder, parts)


def add_lora(split: EncoderSplit, rank: int, alpha: float, seed: int) -> list[nn.Parameter]:
    """Put LoRA on every linear layer of the tail; returns the adapters' parameters (the only ones to train)."""
    generator = torch.Generator().manual_seed(seed)
    adapters = []
    for module in split.tail_modules():
        for layer in module.modules():
            if isinstance(layer, nn.Linear) and not parametrize.is_parametrized(layer, "weight"):
                delta = LowRankDelta(layer.weight.detach(), rank, alpha, generator)
                parametrize.register_parametrization(layer, "weight", delta)
                adapters += [delta.A, delta.B]
    return adapters


def remove_lora(net: nn.Module) -> None:
    """Take the adapters off ``net`` and put back its original weights (what the Segmenter keeps using)."""
    for module in net.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def plain_state(net: nn.Module, parts: list[str]) -> dict[str, torch.Tensor]:
    """Copies of the tensors of ``parts`` under the network's plain key names, adapters merged into weights."""
    prefixes = tuple(f"{part}." for part in parts)
    state = {
        key: value.detach().clone()
        for key, value in net.state_dict().items()
        if key.startswith(prefixes) and ".parametrizations." not in key
    }
    for name, module in net.named_modules():
        if f"{name}.".startswith(prefixes) and parametrize.is_parametrized(module, "weight"):
            state[f"{name}.weight"] = module.weight.detach().clone()
    return state
