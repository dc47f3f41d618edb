"""MedSAM2's input preprocessing: intensity to uint8, grey to RGB, bicubic resize, ImageNet normalisation.

As in MedSAM2's ``medsam2_infer_3D_CT.py``: clip to the CT window (or, without one, to the
0.5-99.5 percentiles of the non-zero voxels, as for MR), min-max to 0-255, truncate to uint8,
grey to RGB, PIL bicubic resize to the model size, /255, ImageNet mean and std. uint8 frames
(videos) are used as they are, as sam2's own frame loader reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fmscope.errors import FmscopeError
from fmscope.imaging.intensity import window as window_preset
from fmscope.imaging.tracking.frames import FrameSource

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLE_FRAMES = 16  # frames read to estimate percentiles of a streamed (non-volume) source


@dataclass(frozen=True)
class MinMaxTo8Bit:
    """clip(x, low, high), then (x - low) / (high - low) * 255 truncated to uint8; ``None``: uint8 as is.
    ``name``: where the limits came from (a window preset, ``L<level>/W<width>``, ``percentiles``, ``uint8``)."""

    low: float | None
    high: float | None
    name: str = ""

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.low is None:
            return np.asarray(frame, dtype=np.uint8)
        clipped = np.clip(np.asarray(frame, dtype=np.float64), self.low, self.high)
        return ((clipped - self.low) / (self.high - self.low) * 255.0).astype(np.uint8)


def sampled_frames(n_frames: int) -> np.ndarray:
    """Indices (int, ascending, unique) of up to :data:`SAMPLE_FRAMES` evenly spaced frames of ``n_frames``: the
    frames a streamed source's intensity percentiles are estimated from (the tracker's and the Segment panel's)."""
    return np.unique(np.linspace(0, n_frames - 1, min(SAMPLE_FRAMES, n_frames)).astype(int))


def intensity_for(frames: FrameSource, window: str | tuple[float, float] | None) -> MinMaxTo8Bit:
    """MedSAM2's mapping for this source: uint8 as is; a CT window; else non-zero 0.5-99.5 percentiles.

    For a volume the min-max runs over the clipped volume, exactly as MedSAM2's script; for a
    streamed sequence the clip limits are the min and max (percentiles from up to 16 frames).
    """
    if window is None and frames.dtype == np.uint8:
        return MinMaxTo8Bit(None, None, "uint8")
    if frames.volume is not None:
        data = frames.volume.array
    else:
        data = np.stack([frames[int(i)] for i in sampled_frames(frames.n_frames)])
    if window is not None:
        preset = window_preset(window)
        low, high, name = preset.low, preset.high, preset.name
    else:
        nonzero = data[data != 0]
        if nonzero.size == 0:
            raise FmscopeError(f"{frames.name} is all zeros.", "Give frames with some signal.")
        low, high = (float(v) for v in np.percentile(nonzero, [0.5, 99.5]))
        name = "percentiles"
    if frames.volume is not None:  # min-max of the clipped volume
        low, high = max(low, float(data.min())), min(high, float(data.max()))
    if not high > low:
        raise FmscopeError(
            f"{frames.name} is constant within the intensity window ({low:g}..{high:g}).",
            "Give another --window (LEVEL,WIDTH or a preset), or frames with contrast.",
        )
    return MinMaxTo8Bit(low, high, name)


def model_input(frame: np.ndarray, image_size: int, float64: bool) -> torch.Tensor:
    """(3, S, S) normalised tensor from a uint8 (H, W) or (H, W, 3) frame.

    ``float64``: normalise in double precision as MedSAM2's 3D script does (the model casts to
    float32); else as sam2's frame loader (float32 after /255).
    """
    resized = np.array(Image.fromarray(frame).convert("RGB").resize((image_size, image_size)))
    scaled = torch.from_numpy(resized / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    if not float64:
        scaled = scaled.float()
    return (scaled - mean) / std


class ModelFrames:
    """The frames as the model sees them, made on demand (never the whole sequence at once).

    Stands in for sam2's loaded-frames list: ``len()`` and ``[index]`` -> (3, S, S) tensor.
    """

    def __init__(self, frames: FrameSource, intensity: MinMaxTo8Bit, image_size: int, float64: bool) -> None:
        self.frames, self.intensity, self.image_size, self.float64 = frames, intensity, image_size, float64

    def __len__(self) -> int:
        return self.frames.n_frames

    def __getitem__(self, index: int) -> torch.Tensor:
        return model_input(self.intensity(self.frames[index]), self.image_size, self.float64)
