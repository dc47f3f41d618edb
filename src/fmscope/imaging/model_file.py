"""The fmscope model file: a segmentation model fine-tuned from a known base model.

``fmscope train-segmenter`` writes it; anything that takes a model name
(``Segmenter(model=...)``, ``--model``, the napari and Slicer model choices) also takes its
path, through :func:`fmscope.imaging.models.load_model`. It holds only the trained parts, so
the base weights are needed to use it, and they must be the very ones it was trained from
(same sha256). Contents (``torch.save``, read with ``weights_only=True``):

- ``format``: :data:`MODEL_FILE_FORMAT`; ``base``: registry name, architecture, sha256 of the base weights;
- ``trained_parts``: e.g. ``["mask_decoder", "prompt_encoder"]``; ``state_dict``: their tensors
  under the network's own key names;
- ``data``: what it was trained on (images, objects, sizes, intensity); ``val_dice_before`` /
  ``val_dice_after``: held-out Dice of the base and of the tuned model on the same prompts;
- ``settings``: the training settings.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from fmscope.checkpoint_files import read_checkpoint, write_checkpoint
from fmscope.errors import FmscopeError
from fmscope.imaging.intensity import resolve_intensity

MODEL_FILE_FORMAT = "fmscope-segmenter-1"
MADE_BY = "`fmscope train-segmenter`"


@dataclass
class TunedModel:
    """What a model file holds (see the module docstring)."""

    base_name: str
    base_architecture: str
    base_sha256: str
    trained_parts: list[str]
    state_dict: dict[str, torch.Tensor]
    data: dict = field(default_factory=dict)
    val_dice_before: float = float("nan")
    val_dice_after: float = float("nan")
    settings: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line for users: the base, what was trained, on what, and the held-out Dice."""
        data = self.data
        return (
            f"tuned from {self.base_name} ({', '.join(self.trained_parts)}) on {data.get('objects', '?')} "
            f"objects in {data.get('images', '?')} images; held-out Dice {self.val_dice_before:.3f} -> "
            f"{self.val_dice_after:.3f}"
        )


def foreign_image_warning(tuned: TunedModel, image: np.ndarray, window) -> str | None:
    """A warning when ``image`` looks unlike the tuned model's training images (dtype or intensity mapping).

    A tuned decoder is adapted to its own kind of image; on other kinds it may do worse than its base.
    ``window`` is what :meth:`Segmenter.set_image` takes.
    """
    dtypes = tuned.data.get("dtypes", [])
    trained = tuned.data.get("window")
    given = resolve_intensity(image, window).name
    if str(image.dtype) in dtypes and given == trained:
        return None
    return (
        f"this model was tuned on {', '.join(dtypes) or 'other'} images mapped by '{trained}'; this image is "
        f"{image.dtype} mapped by '{given}'. A tuned model is for its own kind of image: on others it can do "
        f"worse than its base ({tuned.base_name})."
    )


def looks_like_model_file(name: str | os.PathLike) -> bool:
    """Whether a model choice is a path (:func:`fmscope.models.is_model_file`)."""
    from fmscope.models import is_model_file

    return is_model_file(name)


def write_model_file(path: str | os.PathLike, tuned: TunedModel) -> None:
    """Write ``tuned`` to ``path`` atomically."""
    payload = {"format": MODEL_FILE_FORMAT, **asdict(tuned)}
    payload["state_dict"] = {key: value.detach().cpu().clone() for key, value in tuned.state_dict.items()}
    write_checkpoint(path, payload)


def read_model_file(path: str | os.PathLike) -> TunedModel:
    """The model file at ``path``; a clear error for a missing file, official weights or anything else."""
    payload = read_checkpoint(path, "fmscope model file", MADE_BY)
    if payload.get("format") != MODEL_FILE_FORMAT:
        raise FmscopeError(
            f"{path} is not an fmscope model file (no '{MODEL_FILE_FORMAT}' format tag).",
            f"Official weights go in --checkpoint with --model NAME; --model PATH takes a file written by {MADE_BY}.",
        )
    fields = {name: payload[name] for name in TunedModel.__dataclass_fields__ if name in payload}
    return TunedModel(**fields)


def trained_state(net: nn.Module, parts: list[str]) -> dict[str, torch.Tensor]:
    """Copies of the tensors (parameters and buffers) of ``net``'s ``parts``, under the network's key names."""
    prefixes = tuple(f"{part}." for part in parts)
    return {key: value.detach().clone() for key, value in net.state_dict().items() if key.startswith(prefixes)}


def apply_tuned(net: nn.Module, tuned: TunedModel, path: str | os.PathLike) -> None:
    """Put the tuned tensors into ``net`` (built and loaded as the base); every key must fit."""
    expected = net.state_dict()
    wrong = [
        key for key, value in tuned.state_dict.items() if key not in expected or expected[key].shape != value.shape
    ]
    if wrong:
        raise FmscopeError(
            f"{path} does not fit the {tuned.base_architecture} network ({len(wrong)} tensors "
            f"differ, first {wrong[0]}).",
            f"The file is damaged; train it again with {MADE_BY}.",
        )
    net.load_state_dict(tuned.state_dict, strict=False)


def check_base(tuned: TunedModel, path: str | os.PathLike, base_name: str, base_sha256: str) -> None:
    """Refuse a model file made for another base model than ``base_name`` with weights ``base_sha256``."""
    if tuned.base_name != base_name or tuned.base_sha256 != base_sha256:
        raise FmscopeError(
            f"{path} was tuned from {tuned.base_name} (weights sha256 {tuned.base_sha256[:12]}...), not from "
            f"{base_name} (sha256 {base_sha256[:12]}...).",
            f"Use it with the base weights it was made from (--model {tuned.base_name} and, for MedSAM / SAM, "
            "the same --checkpoint file), or train a new model file from this base.",
        )
