"""scGPT's cell embedding (gene and value encoders + transformer stack, <cls> output) on OpenVINO.

:class:`CellEmbeddingNetwork` is ``ScGPT.cell_embedding`` as a network of float32 inputs (OpenVINOModule feeds
float32): gene ids as floats (exact below 2^24; vocabularies hold ~60,000 genes) and the padding mask as
1.0 / 0.0, both cast back inside. Batch and length are dynamic, so one conversion per weights serves every batch
and every cell's gene count. Tracing runs an example with padding: ``ScGPT.encode`` branches in Python on
``padding.any()``, and the masked branch is also right for batches without padding (an all-attend mask).
The disk-cache key hashes the state dict's tensors (:func:`state_dict_sha256`), so a fine-tuned model is its
own entry.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from fmscope.threads import ThreadPolicy

EXAMPLE_BATCH, EXAMPLE_LENGTH = 2, 16


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over ``module``'s state dict (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class CellEmbeddingNetwork(nn.Module):
    """(genes (B, L) ids as float32, values (B, L) float32, padding (B, L) 1.0 at padding) -> (B, d_model)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, genes: torch.Tensor, values: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        return self.model.cell_embedding(genes.long(), values, padding > 0.5)


class OpenVINOCellEmbedding:
    """:class:`CellEmbeddingNetwork` on OpenVINO at ``precision`` (``fp32``: within fp32 rounding of torch;
    ``fast``: the CPU's reduced precision), called with the torch tensors ``ScGPT.cell_embedding`` takes.
    ``threads``: None = fmscope's thread policy per batch."""

    backend = "openvino"

    def __init__(self, model: nn.Module, precision: str = "fp32", threads: int | None = None) -> None:
        from fmscope.backends.openvino_model import OpenVINOModule, module_identity

        network = CellEmbeddingNetwork(model).eval()
        shapes = [(-1, -1)] * 3
        padding = torch.zeros(EXAMPLE_BATCH, EXAMPLE_LENGTH)
        padding[0, EXAMPLE_LENGTH // 2 :] = 1.0
        example = (torch.ones(EXAMPLE_BATCH, EXAMPLE_LENGTH), torch.ones(EXAMPLE_BATCH, EXAMPLE_LENGTH), padding)
        identity = module_identity(network, state_dict_sha256(model), shapes, parts=(model,))
        self.network = OpenVINOModule(network, shapes, identity, precision, example)
        self.thread_policy = ThreadPolicy(threads)

    def prepare(self) -> None:
        """Compile now (from the disk cache; converting it the first time on a machine: ~1-4 min)."""
        self.network.compiled(self.thread_policy.apply())

    def __call__(self, genes: torch.Tensor, values: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """(B, d_model) float32 <cls> outputs for (B, L) gene ids, values and padding (True at padding)."""
        arrays = (
            genes.detach().cpu().numpy().astype(np.float32),
            values.detach().cpu().numpy().astype(np.float32),
            padding.detach().cpu().numpy().astype(np.float32),
        )
        (embedding,) = self.network.infer(arrays, self.thread_policy.apply())
        return torch.from_numpy(embedding)
