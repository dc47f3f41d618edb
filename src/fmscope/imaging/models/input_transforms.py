"""How each model family turns an RGB uint8 image and prompts into model input, and masks back.

Each transform follows its model's official inference pipeline exactly (read in
bowang-lab/MedSAM and facebookresearch/segment-anything; written anew here):

- LiteMedSAM: resize the longest side to 256 with OpenCV's area interpolation, min-max
  scale to [0, 1], pad bottom/right to 256 x 256; boxes scaled by 256 / max(H, W) and
  truncated to integers; low-res logits cropped to the resized extent, then bilinearly
  resized to the original size.
- MedSAM (SAM ViT-B weights): resize to 1024 x 1024 with cubic interpolation and
  anti-aliasing (scikit-image), min-max scale to [0, 1]; boxes scaled per axis; the
  256 x 256 logits bilinearly resized to the original size.
- SAM: segment-anything's own ``ResizeLongestSide`` + ``Sam.preprocess`` (pixel mean/std,
  pad) and ``Sam.postprocess_masks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from segment_anything.modeling import Sam


@dataclass(frozen=True)
class InputGeometry:
    """Where an original (H, W) image sits inside the model's square input."""

    original: tuple[int, int]
    resized: tuple[int, int]

    @property
    def scale_xy(self) -> tuple[float, float]:
        return self.resized[1] / self.original[1], self.resized[0] / self.original[0]


class InputTransform(Protocol):
    """Model-specific pre- and post-processing."""

    size: int

    def image(self, rgb: np.ndarray) -> tuple[torch.Tensor, InputGeometry]:
        """(H, W, 3) uint8 -> ((3, size, size) float tensor, geometry)."""

    def boxes(self, boxes: np.ndarray, geometry: InputGeometry) -> np.ndarray:
        """(N, 4) x0 y0 x1 y1 in original pixels -> model input coordinates."""

    def points(self, points: np.ndarray, geometry: InputGeometry) -> np.ndarray:
        """(..., 2) x y in original pixels -> model input coordinates."""

    def masks(self, low_res: torch.Tensor, geometry: InputGeometry) -> torch.Tensor:
        """(N, 1, 256, 256) logits -> (N, H, W) logits at the original resolution."""


def _min_max(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float64)
    low = image.min()
    return (image - low) / np.clip(image.max() - low, 1e-8, None)


class LiteMedSAMTransform:
    """Official LiteMedSAM inference preprocessing (256 px, longest side, padded)."""

    size = 256

    def image(self, rgb: np.ndarray) -> tuple[torch.Tensor, InputGeometry]:
        h, w = rgb.shape[:2]
        scale = self.size / max(h, w)
        new_w, new_h = int(w * scale + 0.5), int(h * scale + 0.5)
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        padded = np.zeros((self.size, self.size, 3), dtype=np.float64)
        padded[:new_h, :new_w] = _min_max(resized)
        tensor = torch.from_numpy(padded).float().permute(2, 0, 1)
        return tensor, InputGeometry((h, w), (new_h, new_w))

    def boxes(self, boxes: np.ndarray, geometry: InputGeometry) -> np.ndarray:
        return np.trunc(boxes * (self.size / max(geometry.original))).astype(np.float32)

    def points(self, points: np.ndarray, geometry: InputGeometry) -> np.ndarray:
        return (points * (self.size / max(geometry.original))).astype(np.float32)

    def masks(self, low_res: torch.Tensor, geometry: InputGeometry) -> torch.Tensor:
        h, w = geometry.resized
        cropped = low_res[..., :h, :w]
        return F.interpolate(cropped, size=geometry.original, mode="bilinear", align_corners=False)[:, 0]


class MedSAMTransform:
    """Official MedSAM (ViT-B) inference preprocessing (1024 x 1024, no padding)."""

    size = 1024

    def image(self, rgb: np.ndarray) -> tuple[torch.Tensor, InputGeometry]:
        from skimage.transform import resize as skimage_resize  # only MedSAM needs scikit-image's resize

        h, w = rgb.shape[:2]
        resized = skimage_resize(
            rgb, (self.size, self.size), order=3, preserve_range=True, mode="constant", anti_aliasing=True
        )
        tensor = torch.from_numpy(_min_max(resized)).float().permute(2, 0, 1)
        return tensor, InputGeometry((h, w), (self.size, self.size))

    def boxes(self, boxes: np.ndarray, geometry: InputGeometry) -> np.ndarray:
        sx, sy = geometry.scale_xy
        return (boxes * np.array([sx, sy, sx, sy])).astype(np.float32)

    def points(self, points: np.ndarray, geometry: InputGeometry) -> np.ndarray:
        return (points * np.array(geometry.scale_xy)).astype(np.float32)

    def masks(self, low_res: torch.Tensor, geometry: InputGeometry) -> torch.Tensor:
        return F.interpolate(low_res, size=geometry.original, mode="bilinear", align_corners=False)[:, 0]


class SamTransform:
    """segment-anything's own preprocessing, used through its public helpers."""

    size = 1024

    def __init__(self, sam: Sam) -> None:
        # segment-anything's resize helper imports torchvision; only the SAM models need it.
        from segment_anything.utils.transforms import ResizeLongestSide

        self._sam = sam
        self._resize = ResizeLongestSide(sam.image_encoder.img_size)

    def image(self, rgb: np.ndarray) -> tuple[torch.Tensor, InputGeometry]:
        resized = self._resize.apply_image(rgb)
        tensor = torch.as_tensor(resized).permute(2, 0, 1).float()
        device = self._sam.pixel_mean.device
        normalised = self._sam.preprocess(tensor[None].to(device))[0].cpu()
        return normalised, InputGeometry(rgb.shape[:2], resized.shape[:2])

    def boxes(self, boxes: np.ndarray, geometry: InputGeometry) -> np.ndarray:
        return self._resize.apply_boxes(boxes, geometry.original).astype(np.float32)

    def points(self, points: np.ndarray, geometry: InputGeometry) -> np.ndarray:
        return self._resize.apply_coords(points, geometry.original).astype(np.float32)

    def masks(self, low_res: torch.Tensor, geometry: InputGeometry) -> torch.Tensor:
        return self._sam.postprocess_masks(low_res, geometry.resized, geometry.original)[:, 0]
