"""The SAM mask decoder of a MedSAM-family model on the chosen backend, one call per batch of prompts.

In: the image embedding (1, C, h, w) and the prompt encoder's sparse embeddings (B, N, C) of B prompts with N
tokens each (boxes: 2 corners; points: one per point, plus a padding point without a box), float32 torch
tensors on the model's device. Out: low-resolution mask logits (B, M, 4h, 4w) and IoU estimates (B, M) as
float32 torch tensors on that device, M = 3 with ``multimask`` (the three alternative masks), else 1.

Both classes compute segment-anything's ``MaskDecoder.forward`` with the prompt encoder's positional encoding
and its "no mask" dense embedding (fmscope never gives a mask prompt), so the caller
(:class:`fmscope.imaging.predictor.Segmenter`) does not know which backend ran. The OpenVINO network is
converted once per weights (``openvino.convert_model`` on :class:`PromptDecoder`, batch and token count
dynamic) and kept in the disk cache of :mod:`fmscope.backends.openvino_model`; it always returns all four of
the decoder's masks, and the single / multiple choice is the same slice ``MaskDecoder.forward`` takes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class PromptDecoder(nn.Module):
    """``MaskDecoder.predict_masks`` for prompts without a mask input: (embedding, sparse) -> (all masks, IoUs).

    ``embedding``: (1, C, h, w); ``sparse``: (B, N, C). Returns logits (B, 4, 4h, 4w) and IoUs (B, 4): index 0
    is the single-mask output, 1-3 the multimask ones.
    """

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder, self.mask_decoder = prompt_encoder, mask_decoder

    def forward(self, embedding: torch.Tensor, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = self.prompt_encoder.image_embedding_size
        # PromptEncoder._embed... with masks=None: the learned "no mask" embedding at every position
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, height, width)
        return self.mask_decoder.predict_masks(embedding, self.prompt_encoder.get_dense_pe(), sparse, dense)


def _select(masks: torch.Tensor, scores: torch.Tensor, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.forward``'s output choice: masks 1-3 with ``multimask``, else mask 0."""
    chosen = slice(1, None) if multimask else slice(0, 1)
    return masks[:, chosen], scores[:, chosen]


class TorchMaskDecoder:
    """segment-anything's modules themselves (the reference; the GPU path)."""

    backend = "torch"

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> None:
        self.prompt_encoder, self.mask_decoder = prompt_encoder, mask_decoder

    def prepare(self, threads: int) -> None:
        """Nothing to prepare: torch runs the modules as they are."""

    def __call__(
        self, embedding: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool, threads: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``dense``: the prompt encoder's dense embeddings (B, C, h, w); ``threads`` is torch's (set by the caller)."""
        with torch.inference_mode():
            return self.mask_decoder(
                image_embeddings=embedding,
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )


class OpenVINOMaskDecoder:
    """:class:`PromptDecoder` converted to OpenVINO, at ``precision`` (``fp32``: masks identical to torch's;
    ``fast``: the CPU's reduced precision, as the image encoder's)."""

    backend = "openvino"

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module, weights_sha256: str, precision: str) -> None:
        from fmscope.backends.openvino_model import OpenVINOModule, module_identity

        module = PromptDecoder(prompt_encoder, mask_decoder).eval()
        channels = int(prompt_encoder.no_mask_embed.weight.shape[1])
        height, width = prompt_encoder.image_embedding_size
        shapes = [(1, channels, height, width), (-1, -1, channels)]
        example = (torch.zeros(shapes[0]), torch.zeros(2, 2, channels))  # two box prompts
        identity = module_identity(module, weights_sha256, shapes, parts=(mask_decoder, prompt_encoder))
        self.network = OpenVINOModule(module, shapes, identity, precision, example)

    def prepare(self, threads: int) -> None:
        """Compile the network for ``threads`` threads now (from the disk cache: ~0.1-0.3 s; converting it the
        first time on a machine: ~20-60 s)."""
        self.network.compiled(threads)

    def __call__(
        self, embedding: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool, threads: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``dense`` is the "no mask" embedding the network holds (the prompt encoder's, for ``masks=None``)."""
        masks, scores = self.network.infer((embedding.detach().cpu().numpy(), sparse.detach().cpu().numpy()), threads)
        device = embedding.device
        return _select(torch.from_numpy(masks).to(device), torch.from_numpy(np.asarray(scores)).to(device), multimask)


def mask_decoder(
    prompt_encoder: nn.Module, mask_decoder: nn.Module, weights_sha256: str, backend: str, precision: str = "fp32"
) -> TorchMaskDecoder | OpenVINOMaskDecoder:
    """The decoder on ``backend`` (``torch`` or ``openvino``: the one the image encoder resolved to).

    ``precision``: ``fp32`` or ``fast`` (OpenVINO only: the torch decoder stays fp32 in both, as before).
    """
    if backend == "openvino":
        return OpenVINOMaskDecoder(prompt_encoder, mask_decoder, weights_sha256, precision)
    return TorchMaskDecoder(prompt_encoder, mask_decoder)
