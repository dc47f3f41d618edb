"""Build MedSAM2 / SAM2.1 video predictors from the official ``sam2`` package and load weights safely.

The model classes and the predictor are sam2's own (``sam2==1.1.0``); fmscope only picks the
config (MedSAM2 is ``sam2.1_hiera_t.yaml`` at 512 px with RoPE ``feat_sizes`` 32x32), loads the
checkpoint with ``weights_only=True`` and strict keys, and fills small mask holes on the CPU
(:class:`Sam2Predictor`), which sam2 skips when its CUDA extension is absent: CPU and GPU agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy import ndimage

from fmscope import checkpoints
from fmscope.errors import FmscopeError
from fmscope.file_hash import file_sha256
from fmscope.imaging.tracking.memory_attention_forms import use_cpu_memory_attention
from fmscope.imaging.tracking.objects_side_by_side import propagate_side_by_side, side_by_side_workers
from fmscope.models import BY_NAME, DEFAULT_SEGMENTER, DEFAULT_VOLUME_TRACKER, names

# catalogue name -> (sam2 config, image size, Hiera trunk (embed dim, block count))
SAM2_CONFIGS: dict[str, tuple[str, int, tuple[int, int]]] = {
    name: BY_NAME[name].sam2_config for name in names(family="sam2")
}
HIERA_SIZES = {(96, 12): "Hiera-T", (96, 16): "Hiera-S", (112, 24): "Hiera-B+", (144, 48): "Hiera-L"}
FILL_HOLE_AREA = 8  # sam2's video-predictor setting: background specks up to 8 low-res pixels become mask


def fill_holes(logits: torch.Tensor, max_area: int = FILL_HOLE_AREA) -> torch.Tensor:
    """sam2's hole filling on the CPU: background components (logit <= 0, 8-connected) of at most
    ``max_area`` pixels get the logit 0.1. ``logits``: (N, 1, H, W); returns a new tensor."""
    background = (logits <= 0).cpu().numpy()
    holes = np.zeros_like(background)
    for index in np.ndindex(background.shape[:2]):
        components, count = ndimage.label(background[index], structure=np.ones((3, 3), dtype=bool))
        if count:
            areas = np.bincount(components.ravel())
            small = areas <= max_area
            small[0] = False
            holes[index] = small[components]
    if not holes.any():
        return logits
    return torch.where(
        torch.from_numpy(holes).to(logits.device), torch.tensor(0.1, dtype=logits.dtype, device=logits.device), logits
    )


@lru_cache(maxsize=1)
def _predictor_class():
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    class Sam2Predictor(SAM2VideoPredictor):
        """sam2's video predictor, with its hole filling done on the CPU (same rule, same place) and a frame's
        objects tracked side by side on the CPU's cores (:mod:`fmscope.imaging.tracking.objects_side_by_side`)."""

        def __init__(self, fill_hole_area: int = 0, **kwargs) -> None:
            super().__init__(fill_hole_area=0, **kwargs)
            self.cpu_fill_hole_area = fill_hole_area
            self.image_runtime = None  # set by load_sam2: the image encoder on OpenVINO
            self.objects_side_by_side = True  # False: sam2's own loop, one object after another

        def forward_image(self, img_batch: torch.Tensor) -> dict:
            if self.image_runtime is not None:
                return self.image_runtime(img_batch)
            return super().forward_image(img_batch)

        @torch.inference_mode()
        def propagate_in_video(self, inference_state, start_frame_idx=None, max_frame_num_to_track=None, reverse=False):
            workers = side_by_side_workers(inference_state) if self.objects_side_by_side else 1
            if workers == 1:
                yield from super().propagate_in_video(inference_state, start_frame_idx, max_frame_num_to_track, reverse)
                return
            yield from propagate_side_by_side(
                self, inference_state, start_frame_idx, max_frame_num_to_track, reverse, workers
            )

        def _run_single_frame_inference(self, *args, **kwargs):
            compact, masks = super()._run_single_frame_inference(*args, **kwargs)
            if self.cpu_fill_hole_area > 0:
                masks = fill_holes(masks, self.cpu_fill_hole_area)
                compact["pred_masks"] = masks.to(compact["pred_masks"].device)
            return compact, masks

    return Sam2Predictor


@dataclass
class LoadedSam2:
    """A ready predictor with where its weights came from."""

    name: str
    predictor: torch.nn.Module  # Sam2Predictor (a sam2 SAM2VideoPredictor)
    image_size: int
    weights_sha256: str
    path: str
    backend: str = "torch"  # the image encoder's runtime; the other parts run on torch
    precision: str = "fp32"  # the image encoder's precision ("fast": OpenVINO bf16 where the CPU has it)


def describe_state_dict(state: dict[str, torch.Tensor]) -> str:
    """What a checkpoint's keys look like: 'SAM2.1 Hiera-T', 'SAM (ViT-B)', 'LiteMedSAM (TinyViT)', ..."""
    keys = set(state)
    if "image_encoder.trunk.pos_embed_window" in keys:
        embed = state["image_encoder.trunk.patch_embed.proj.weight"].shape[0]
        blocks = len({k.split(".")[3] for k in keys if k.startswith("image_encoder.trunk.blocks.")})
        size = HIERA_SIZES.get((embed, blocks), f"Hiera ({embed} channels, {blocks} blocks)")
        version = "SAM2.1" if "no_obj_embed_spatial" in keys else "SAM 2 (2024, not 2.1)"
        return f"{version} {size}"
    if any(k.startswith("memory_attention.") for k in keys):
        return "a video tracker with a non-Hiera image encoder (EfficientTAM / EfficientMedSAM2 style)"
    if any(k.startswith("image_encoder.layers.") for k in keys):
        return "LiteMedSAM (TinyViT image encoder, no video memory)"
    if any(k.startswith("image_encoder.blocks.") for k in keys):
        blocks = len({k.split(".")[2] for k in keys if k.startswith("image_encoder.blocks.")})
        kind = {12: "ViT-B", 24: "ViT-L", 32: "ViT-H"}.get(blocks, f"ViT, {blocks} blocks")
        return f"SAM / MedSAM ({kind}, no video memory)"
    return f"an unknown model (first keys: {checkpoints.first_keys(sorted(keys))})"


def load_sam2(
    name: str = DEFAULT_VOLUME_TRACKER,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    backend: str | None = None,
    precision: str = "fp32",
) -> LoadedSam2:
    """Build sam2's video predictor for registry entry ``name`` and load its weights.

    Weights: ``checkpoint`` (file or folder), else ``$FMSCOPE_CHECKPOINT_DIR``. Loaded with
    ``weights_only=True`` and strict keys (wrappers and DDP / compile prefixes removed by
    :func:`fmscope.checkpoints.unwrap_state_dict`); weights in the first SAM 2 layout of the same
    Hiera size are built from sam2's SAM 2 config; a file of another architecture is refused with
    what it looks like. Building the model does not touch the global random state.
    ``backend``: the image encoder's runtime (``torch`` / ``openvino`` / ``auto``; None: ``$FMSCOPE_BACKEND`` or
    auto, :mod:`fmscope.backends`) at ``precision`` (``fp32``, or ``fast``: OpenVINO only, bf16 where the CPU
    has it); memory attention, memory encoder and mask decoder run on torch (on OpenVINO they were no faster on
    this CPU: docs/backends.md), the memory attention in the cheaper equal forms of
    :mod:`fmscope.imaging.tracking.memory_attention_forms` on the CPU.
    """
    from fmscope.backends import resolve_backend

    if name not in SAM2_CONFIGS:
        raise FmscopeError(
            f"'{name}' is not a tracking model.", f"Use one of: {DEFAULT_SEGMENTER}, {', '.join(SAM2_CONFIGS)}."
        )
    config, image_size, trunk = SAM2_CONFIGS[name]
    target = torch.device(device) if device is not None else _default_device()
    runtime = resolve_backend(backend, target)
    if precision != "fp32" and runtime != "openvino":
        raise FmscopeError(
            f"Precision '{precision}' for {name} is OpenVINO's (its image encoder); the {runtime} backend runs fp32.",
            "Leave out --fast, or use --backend openvino (CPU).",
        )
    path = checkpoints.resolve(name, checkpoint)
    state = checkpoints.read_state_dict(path)
    looks_like = describe_state_dict(state)
    expected = f"SAM2.1 {HIERA_SIZES[trunk]}"
    if looks_like == f"SAM 2 (2024, not 2.1) {HIERA_SIZES[trunk]}":
        # the first SAM 2 release's layout (no no_obj_embed_spatial / obj_ptr_tpos_proj): built from sam2's own
        # SAM 2 config of the same size (e.g. MedSAM2's 2024 weights), same image size
        config = config.replace("sam2.1/sam2.1_", "sam2/sam2_")
    elif looks_like != expected:
        raise FmscopeError(
            f"{path} looks like {looks_like}, not {expected} ('{name}').",
            f"Pass the {checkpoints.get_spec(name).filename} file ({checkpoints.get_spec(name).source}),"
            f" or choose --model to match the file ({DEFAULT_SEGMENTER}, {', '.join(SAM2_CONFIGS)}).",
        )
    predictor = _build(config, image_size)
    checkpoints.load_into(predictor, state, name, path)
    digest = file_sha256(path)
    predictor = predictor.to(target).eval()
    use_cpu_memory_attention(predictor)  # the same memory attention in fewer operations on the CPU
    if runtime == "openvino":
        from fmscope.backends.sam2_image_encoder import OpenVINOSam2ImageEncoder

        predictor.image_runtime = OpenVINOSam2ImageEncoder(predictor, image_size, digest, precision)
        predictor.image_runtime.prepare()  # compiled here (from the disk cache), not on the first frame
    return LoadedSam2(name, predictor, image_size, digest, str(path), runtime, precision)


def _default_device() -> torch.device:
    from fmscope.imaging.models import default_device

    return default_device()


def _build(config: str, image_size: int) -> torch.nn.Module:
    """sam2's predictor from its config with sam2's own video settings, random weights (to be loaded)."""
    import sam2  # noqa: F401  (registers sam2's config module with hydra)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    overrides = [
        f"++model._target_={__name__}._predictor_class_target",
        # the settings sam2.build_sam.build_sam2_video_predictor applies
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        "++model.binarize_mask_from_pts_for_mem_enc=true",
        f"++model.fill_hole_area={FILL_HOLE_AREA}",
        # a correction click makes its frame a conditioning frame (as sam2's own training configs), so
        # it is kept when propagation passes through that frame again
        "++model.add_all_frames_to_correct_as_cond=true",
    ] + sam2_overrides(image_size)
    cfg = compose(config_name=config, overrides=overrides)
    OmegaConf.resolve(cfg)
    with torch.random.fork_rng(devices=[]):
        return instantiate(cfg.model, _recursive_=True)


def _predictor_class_target(**kwargs):
    """Hydra target: the predictor class is made lazily so importing fmscope never imports sam2."""
    return _predictor_class()(**kwargs)


def sam2_overrides(image_size: int) -> list[str]:
    """The hydra overrides that turn sam2's stock config into this image size (for references and tests)."""
    feat = image_size // 16
    return [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
    ]
