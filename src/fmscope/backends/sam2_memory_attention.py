"""The memory attention of a sam2 model (MedSAM2 / SAM2.1) on OpenVINO.

Per tracked frame sam2 conditions the frame's features on its memory: ``SAM2Base.memory_attention`` (sam2's
``MemoryAttention``: 4 layers of self-attention, cross-attention to the memory with RoPE, MLP), ~40 % of a
MedSAM2 frame on torch (docs/benchmarks.md). Its inputs: ``curr`` / ``curr_pos`` (HW, B, C), the frame's
features and position encodings (HW = (image size / 16)^2 tokens, B objects, C = 256), and ``memory`` /
``memory_pos`` (M * HW + P, B, C_mem), M memory frames' spatial tokens (1-7, growing with the video) then P
object-pointer tokens (0-64) that RoPE leaves out (``num_obj_ptr_tokens`` = P). The network takes the spatial
and pointer parts as separate inputs with dynamic lengths (and dynamic B), so one conversion serves every frame
and the pointer count is a shape, not a constant baked in by tracing.

OpenVINO's PyTorch converter (2026.4) refuses sam2's RoPE on keys (a complex tensor expanded then flattened), so
during conversion :class:`Sam2MemoryConditioning` has sam2's attention rotate with :func:`rotate_pairs`, the same
rotation in real arithmetic (cos / sin of sam2's own ``freqs_cis``; Su et al. 2021, RoFormer). Torch keeps sam2's
complex version; the parity test (tests/test_tracking_medsam2.py) compares the two end to end. Tracing uses an
example with pointer tokens: sam2 branches in Python on ``num_obj_ptr_tokens > 0``, and the traced branch is
also right for P = 0 (it slices off zero tokens).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from sam2.modeling.memory_attention import MemoryAttention
from sam2.modeling.sam import transformer as sam2_transformer
from torch import nn

from fmscope.threads import ThreadPolicy


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x`` (B, heads, L, D) by angles with ``cos`` / ``sin`` (L, D / 2)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    first, second = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((first * cos - second * sin, first * sin + second * cos), dim=-1)
    return rotated.flatten(3).type_as(x)


class Sam2MemoryConditioning(nn.Module):
    """sam2's ``MemoryAttention`` with its memory given in two parts:
    (curr, curr_pos (HW, B, C), spatial, spatial_pos (M * HW, B, C_mem), pointers, pointers_pos (P, B, C_mem))
    -> conditioned features (HW, B, C). Its forward rotates in real arithmetic (:func:`rotate_pairs`)."""

    def __init__(self, memory_attention: nn.Module) -> None:
        super().__init__()
        self.memory_attention = memory_attention
        self.angles = {  # id of each attention's complex freqs_cis -> its (cos, sin), computed once, untraced
            id(module.freqs_cis): (
                module.freqs_cis.real.float().contiguous(),
                module.freqs_cis.imag.float().contiguous(),
            )
            for module in memory_attention.modules()
            if isinstance(module, sam2_transformer.RoPEAttention)
        }

    def _rotate(
        self, xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor, repeat_freqs_k: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sam2's ``apply_rotary_enc`` contract: queries by the angles, keys by them repeated per memory frame."""
        cos, sin = self.angles[id(freqs_cis)]
        repeats = xk.shape[-2] // xq.shape[-2] if repeat_freqs_k else 1
        return rotate_pairs(xq, cos, sin), rotate_pairs(xk, cos.repeat(repeats, 1), sin.repeat(repeats, 1))

    @contextlib.contextmanager
    def _real_rotation(self) -> Iterator[None]:
        complex_rotation = sam2_transformer.apply_rotary_enc
        sam2_transformer.apply_rotary_enc = self._rotate
        try:
            yield
        finally:
            sam2_transformer.apply_rotary_enc = complex_rotation

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        spatial: torch.Tensor,
        spatial_pos: torch.Tensor,
        pointers: torch.Tensor,
        pointers_pos: torch.Tensor,
    ) -> torch.Tensor:
        with self._real_rotation():
            return MemoryAttention.forward(
                self.memory_attention,
                curr=curr,
                memory=torch.cat((spatial, pointers)),
                curr_pos=curr_pos,
                memory_pos=torch.cat((spatial_pos, pointers_pos)),
                num_obj_ptr_tokens=pointers.shape[0],
            )


class OpenVINOSam2MemoryAttention:
    """:class:`Sam2MemoryConditioning` on OpenVINO at ``precision`` (``fp32``: within fp32 rounding of torch;
    ``fast``: the CPU's reduced precision), called as sam2 calls ``memory_attention`` (keyword arguments; ``curr``
    and ``curr_pos`` may be one-item lists). ``threads``: None = fmscope's thread policy per call."""

    backend = "openvino"
    example_memory_frames = 2
    example_pointer_tokens = 8

    def __init__(self, predictor: nn.Module, weights_sha256: str, precision: str, threads: int | None = None) -> None:
        from fmscope.backends.openvino_model import OpenVINOModule, module_identity

        module = Sam2MemoryConditioning(predictor.memory_attention).eval()
        tokens = predictor.sam_image_embedding_size**2
        width, memory_width = predictor.hidden_dim, predictor.mem_dim
        shapes = [(tokens, -1, width)] * 2 + [(-1, -1, memory_width)] * 4
        spatial = self.example_memory_frames * tokens
        example = tuple(
            torch.zeros(length, 1, channels)
            for length, channels in [(tokens, width)] * 2
            + [(spatial, memory_width)] * 2
            + [(self.example_pointer_tokens, memory_width)] * 2
        )
        identity = module_identity(module, weights_sha256, shapes, parts=tuple(predictor.memory_attention.modules()))
        self.network = OpenVINOModule(module, shapes, identity, precision, example)
        self.thread_policy = ThreadPolicy(threads)

    def prepare(self) -> None:
        """Compile now (from the disk cache: ~0.2 s; converting it the first time on a machine: ~20 s)."""
        self.network.compiled(self.thread_policy.apply())

    def __call__(
        self,
        curr: torch.Tensor | list[torch.Tensor],
        memory: torch.Tensor,
        curr_pos: torch.Tensor | list[torch.Tensor],
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
    ) -> torch.Tensor:
        """The conditioned features (HW, B, C) float32, as sam2's ``MemoryAttention.forward`` returns them."""
        curr = curr[0] if isinstance(curr, list) else curr
        curr_pos = curr_pos[0] if isinstance(curr_pos, list) else curr_pos
        split = memory.shape[0] - num_obj_ptr_tokens
        inputs = (curr, curr_pos, memory[:split], memory_pos[:split], memory[split:], memory_pos[split:])
        arrays = tuple(each.detach().cpu().numpy() for each in inputs)
        (conditioned,) = self.network.infer(arrays, self.thread_policy.apply())
        return torch.from_numpy(conditioned)
