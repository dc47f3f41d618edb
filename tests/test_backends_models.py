"""OpenVINO for the other models' image encoders, against torch on random weights in the official layouts.

* SAM / MedSAM ViT: segment-anything's own ``ImageEncoderViT`` (a 2-block, 64-channel one at SAM's 1024 px input
  and 64 x 64 embedding; ViT-B is the same class with 12 blocks of 768) through fmscope's
  ``OpenVINOImageEncoder``; masks decoded by LiteMedSAM's real decoder (the same SAM decoder layout).
* MedSAM2: the Hiera image encoder + FPN neck + the decoder's high-resolution projections
  (sam2's ``forward_image``) of a random-weight MedSAM2 checkpoint, through ``load_sam2(backend=...)``.

``exact`` (fp32) must equal torch within fp32 rounding, ``fast`` (bf16 where the CPU has it) give masks within
Dice 0.99 of torch fp32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmscope.backends.image_encoder import OpenVINOImageEncoder
from fmscope.backends.openvino_model import inference_precision
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.metrics import dice

sam2 = pytest.importorskip("sam2", reason="sam2 is installed by make test (Makefile step)")

from sam2_checkpoint import write_random_medsam2_checkpoint  # noqa: E402


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def small_vit() -> torch.nn.Module:
    """segment-anything's ViT image encoder as SAM builds it (1024 px in, 256 x 64 x 64 out), 2 blocks of 64
    channels (one windowed, one global), random weights."""
    from functools import partial

    from fmscope.imaging.models.sam_parts import sam_modeling

    torch.manual_seed(0)
    return (
        sam_modeling()
        .ImageEncoderViT(
            depth=2,
            embed_dim=64,
            img_size=1024,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=2,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=(1,),
            window_size=14,
            out_chans=256,
        )
        .eval()
    )


@pytest.mark.slow
def test_sam_vit_image_encoder_on_openvino(small_vit, torch_segmenter, nuclei, nuclei_boxes):
    from fmscope.imaging.models.input_transforms import MedSAMTransform

    torch_segmenter.set_image(nuclei[0])
    batch, geometry = MedSAMTransform().image(np.array(torch_segmenter.mapped_image))
    with torch.inference_mode():
        expected = small_vit(batch[None]).numpy()
    exact = OpenVINOImageEncoder(small_vit, 1024, "test-small-vit", "fp32")(batch[None], 2)
    assert exact.shape == (1, 256, 64, 64) and _relative_error(exact, expected) <= 1e-5
    fast = OpenVINOImageEncoder(small_vit, 1024, "test-small-vit", "fast")(batch[None], 2)
    net, decoder = torch_segmenter.model.net, torch_segmenter.decoder
    boxes = torch.as_tensor(MedSAMTransform().boxes(np.stack(list(nuclei_boxes.values())[:20]), geometry))
    with torch.inference_mode():
        sparse, dense = net.prompt_encoder(points=None, boxes=boxes[:, None], masks=None)
    logits = [decoder(torch.from_numpy(each), sparse, dense, False, 2)[0] for each in (expected, exact, fast)]
    # a random encoder's embedding is foreign to the trained decoder (its logits are all negative): each prompt's
    # mask is cut at the median of torch fp32's logits instead of at 0
    cut = logits[0].flatten(1).median(dim=1).values[:, None, None, None]
    masks = [(each > cut).numpy() for each in logits]
    assert (logits[1] - logits[0]).abs().max() <= 1e-3 * logits[0].abs().max()
    assert dice(masks[1], masks[0]) >= 0.999
    # fast: bf16 / f16 where the CPU has them, else the exact network (8-bit weights until 2026-12-07: 0.971)
    assert dice(masks[2], masks[0]) >= (0.999 if inference_precision("fast") == "f32" else 0.99)


def _discs(n_frames: int = 2) -> np.ndarray:
    """uint8 (T, 96, 128) frames of two bright discs drifting right on a noisy background."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:96, :128]
    frames = np.zeros((n_frames, 96, 128)) + 40
    for t in range(n_frames):
        for cy, cx, r in ((30, 34, 14), (62, 80, 16)):
            frames[t][(yy - cy) ** 2 + (xx - cx - 4 * t) ** 2 < r * r] = 190
    return np.clip(frames + rng.integers(0, 25, frames.shape), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_medsam2_image_encoder_on_openvino(tmp_path):
    """sam2's forward_image on OpenVINO: every output within fp32 rounding (exact), the tracked masks of two
    objects through two frames within Dice 0.99 of torch's (fast)."""
    from fmscope.imaging.tracking.medsam2 import Sam2Tracker
    from fmscope.imaging.tracking.sam2_model import load_sam2

    checkpoint = write_random_medsam2_checkpoint(tmp_path / "MedSAM2_latest.pt")
    variants = {"torch": ("torch", "fp32"), "exact": ("openvino", "fp32"), "fast": ("openvino", "fast")}
    loaded = {name: load_sam2("medsam2", checkpoint, "cpu", *variant) for name, variant in variants.items()}
    assert [each.backend for each in loaded.values()] == ["torch", "openvino", "openvino"]
    frames = open_frames(_discs())
    image = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 512, 512)).astype(np.float32))
    with torch.inference_mode():
        expected = loaded["torch"].predictor.forward_image(image)
        exact = loaded["exact"].predictor.forward_image(image)
    for key in ("backbone_fpn", "vision_pos_enc"):
        for actual, reference in zip(exact[key], expected[key], strict=True):
            assert actual.shape == reference.shape and _relative_error(actual.numpy(), reference.numpy()) <= 1e-5
    labels = {}
    for name in ("torch", "fast"):
        session = TrackingSession(frames, backend=Sam2Tracker(frames, loaded=loaded[name]))
        session.add_box(0, 1, [18, 14, 50, 46])
        session.add_box(0, 2, [62, 44, 98, 80])
        list(session.propagate("forward"))
        labels[name] = session.labels()
    for obj in (1, 2):
        reference = labels["torch"] == obj
        assert 0.02 < reference.mean() < 0.5, "the test's masks must be neither empty nor everything"
        assert dice(labels["fast"] == obj, reference) >= 0.99, obj
