"""Builders for the promptable segmentation models, one function per architecture."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fmscope import checkpoints
from fmscope.errors import FmscopeError
from fmscope.imaging.models.input_transforms import (
    InputTransform,
    LiteMedSAMTransform,
    MedSAMTransform,
    SamTransform,
)
from fmscope.imaging.models.litemedsam import LiteMedSAM
from fmscope.imaging.models.medsam import build_sam


@dataclass
class LoadedModel:
    """A model ready for inference: network parts, its input transform, and its identity."""

    name: str
    architecture: str
    net: nn.Module  # has .image_encoder, .prompt_encoder, .mask_decoder
    transform: InputTransform
    weights_sha256: str
    device: torch.device


def _litemedsam(_: str) -> tuple[nn.Module, Callable[[nn.Module], InputTransform]]:
    return LiteMedSAM(), lambda net: LiteMedSAMTransform()


def _sam(kind: str) -> Callable[[str], tuple[nn.Module, Callable[[nn.Module], InputTransform]]]:
    def build(name: str) -> tuple[nn.Module, Callable[[nn.Module], InputTransform]]:
        # MedSAM uses SAM's architecture with its own (square, min-max) preprocessing.
        transform = (lambda net: MedSAMTransform()) if name.startswith("medsam") else SamTransform
        return build_sam(kind), transform
    return build


ARCHITECTURES = {
    "litemedsam": _litemedsam,
    "sam_vit_b": _sam("vit_b"),
    "sam_vit_l": _sam("vit_l"),
    "sam_vit_h": _sam("vit_h"),
}


def default_device() -> torch.device:
    """CUDA when present, else CPU; ``FMSCOPE_DEVICE`` overrides."""
    if os.environ.get("FMSCOPE_DEVICE"):
        return torch.device(os.environ["FMSCOPE_DEVICE"])
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(name: str = "litemedsam", checkpoint: str | os.PathLike | None = None,
               device: str | torch.device | None = None) -> LoadedModel:
    """Build model ``name`` and load its weights (strict, ``weights_only=True``)."""
    spec = checkpoints.get_spec(name)
    if spec.architecture not in ARCHITECTURES:
        raise FmscopeError(f"'{name}' is a video tracking model, not an image segmenter.",
                           f"Use it with 'fmscope track' / 'fmscope volume --model {name}' "
                           "(fmscope.imaging.tracking).")
    path = checkpoints.resolve(name, checkpoint)
    digest = checkpoints.verify_sha256(spec, path, embedded=checkpoint is None and spec.package is not None)
    net, make_transform = ARCHITECTURES[spec.architecture](name)
    checkpoints.load_into(net, checkpoints.read_state_dict(path), spec.architecture, path)
    target = torch.device(device) if device is not None else default_device()
    net = net.to(target).eval()
    return LoadedModel(name, spec.architecture, net, make_transform(net), digest, target)
