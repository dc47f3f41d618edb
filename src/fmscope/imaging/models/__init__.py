"""Builders for the promptable segmentation models, one function per architecture."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from fmscope import checkpoints, models
from fmscope.errors import FmscopeError
from fmscope.file_hash import file_sha256
from fmscope.imaging.model_file import (
    TunedModel,
    apply_tuned,
    check_base,
    looks_like_model_file,
    read_model_file,
)
from fmscope.imaging.models.input_transforms import (
    InputTransform,
    LiteMedSAMTransform,
    MedSAMTransform,
    SamTransform,
)
from fmscope.imaging.models.litemedsam import LiteMedSAM


@dataclass
class LoadedModel:
    """A model ready for inference: network parts, its input transform, and its identity."""

    name: str
    architecture: str
    net: nn.Module  # has .image_encoder, .prompt_encoder, .mask_decoder
    transform: InputTransform
    weights_sha256: str  # of the base weights, combined with the model file's for a tuned model
    device: torch.device
    tuned: TunedModel | None = None  # set when loaded from an fmscope model file


def _litemedsam(_: str) -> tuple[nn.Module, Callable[[nn.Module], InputTransform]]:
    return LiteMedSAM(), lambda net: LiteMedSAMTransform()


def _sam(kind: str) -> Callable[[str], tuple[nn.Module, Callable[[nn.Module], InputTransform]]]:
    def build(name: str) -> tuple[nn.Module, Callable[[nn.Module], InputTransform]]:
        from fmscope.imaging.models.medsam import build_sam  # segment-anything's builder: imported for SAM only

        # MedSAM uses SAM's architecture with its own (square, min-max) preprocessing.
        transform = (lambda net: MedSAMTransform()) if name.startswith("medsam") else SamTransform
        return build_sam(kind), transform

    return build


# architecture (as the catalogue and model files name it) -> builder
ARCHITECTURES = {
    **{entry.architecture: _litemedsam for entry in models.CATALOGUE if entry.family == "tinyvit_sam"},
    **{
        entry.architecture: _sam(entry.architecture.removeprefix("sam_"))
        for entry in models.CATALOGUE
        if entry.family == "sam"
    },
}


def default_device() -> torch.device:
    """CUDA when present, else CPU; ``FMSCOPE_DEVICE`` overrides."""
    if os.environ.get("FMSCOPE_DEVICE"):
        return torch.device(os.environ["FMSCOPE_DEVICE"])
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    name: str | os.PathLike = models.DEFAULT_SEGMENTER,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Build model ``name`` and load its weights (strict, ``weights_only=True``).

    ``name`` is a registry name (``checkpoint``: its weights file, when not embedded) or the path of
    an fmscope model file (``checkpoint``: the base weights it was tuned from, for MedSAM / SAM).
    This is the one place model choices are resolved: every front end goes through it.
    """
    if str(name) not in checkpoints.CHECKPOINTS and looks_like_model_file(name):
        return _load_tuned(Path(name), checkpoint, device)
    spec = checkpoints.get_spec(str(name))
    if spec.architecture not in ARCHITECTURES:
        raise FmscopeError(
            f"'{name}' is a video tracking model, not an image segmenter.",
            f"Use it with 'fmscope track' / 'fmscope volume --model {name}' (fmscope.imaging.tracking).",
        )
    path = checkpoints.resolve(spec.name, checkpoint)
    digest = checkpoints.verify_sha256(spec, path, embedded=checkpoint is None and spec.package is not None)
    state = checkpoints.read_state_dict(path)  # a file of another kind is refused before the network is built
    net, make_transform = ARCHITECTURES[spec.architecture](spec.name)
    checkpoints.load_into(net, state, spec.architecture, path)
    target = torch.device(device) if device is not None else default_device()
    net = net.to(target).eval()
    return LoadedModel(spec.name, spec.architecture, net, make_transform(net), digest, target)


def tuned_sha256(base_sha256: str, file_sha256: str) -> str:
    """The ``weights_sha256`` of a tuned model: its base weights' sha256 combined with its model file's."""
    return hashlib.sha256(f"{base_sha256}+{file_sha256}".encode()).hexdigest()


def _load_tuned(path: Path, checkpoint: str | os.PathLike | None, device: str | torch.device | None) -> LoadedModel:
    if not path.is_file():
        raise FmscopeError(
            f"No model file at {path}.",
            f"Give a file written by `fmscope train-segmenter`, or a model name: "
            f"{', '.join(sorted(checkpoints.CHECKPOINTS))}.",
        )
    tuned = read_model_file(path)
    if tuned.base_name not in checkpoints.CHECKPOINTS:
        raise FmscopeError(
            f"{path} was tuned from '{tuned.base_name}', which this fmscope does not know.",
            "Use the fmscope version that wrote it.",
        )
    base = load_model(tuned.base_name, checkpoint, device)
    check_base(tuned, path, base.name, base.weights_sha256)
    apply_tuned(base.net, tuned, path)
    base.net.eval()
    combined = tuned_sha256(base.weights_sha256, file_sha256(path))
    return LoadedModel(base.name, base.architecture, base.net, base.transform, combined, base.device, tuned)
