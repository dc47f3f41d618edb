"""The image encoder of a MedSAM-family model on the chosen backend: (B, 3, S, S) in -> (B, C, h, w) out.

Both classes take the model's input batch as a float32 torch tensor on the model's device and return
float32 numpy embeddings, so the caller (:class:`fmscope.imaging.predictor.Segmenter`) does not know
which backend ran.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from fmscope.backends import resolve_backend


def torch_runs_bfloat16(device: torch.device) -> bool:
    """Whether torch's ``fast`` (bfloat16 autocast) is a reduced precision on ``device``: on a GPU, and on a CPU
    whose oneDNN has bfloat16 kernels (AVX-512 / AMX). On an AVX2 CPU torch emulates bfloat16: LiteMedSAM's encoder
    ran 0.2x fp32 there (``benchmarks/backends.py --sections speed``, 2026-12-07), so ``fast`` is fp32 on it."""
    return device.type != "cpu" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class TorchImageEncoder:
    """The torch module itself; ``fast``: bfloat16 autocast and channels-last (the reference path) where
    :func:`torch_runs_bfloat16`, else fp32 (``precision`` is then what was asked for, ``bfloat16`` False)."""

    backend = "torch"

    def __init__(self, module: nn.Module, device: torch.device, precision: str) -> None:
        self.module, self.device, self.precision = module, device, precision
        self.bfloat16 = precision == "fast" and torch_runs_bfloat16(device)
        if self.bfloat16:
            module.to(memory_format=torch.channels_last)

    def prepare(self, threads: int) -> None:
        """Nothing to prepare: torch runs the module as it is."""

    def __call__(self, batch: torch.Tensor, threads: int) -> np.ndarray:
        """``threads`` is torch's (set by the caller's thread policy)."""
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
            if self.bfloat16
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            if self.bfloat16:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return self.module(batch.to(self.device)).float().cpu().numpy()


class OpenVINOImageEncoder:
    """The same module converted to OpenVINO (:class:`fmscope.backends.openvino_model.OpenVINOModule`)."""

    backend = "openvino"

    def __init__(self, module: nn.Module, input_size: int, weights_sha256: str, precision: str) -> None:
        from fmscope.backends.openvino_model import OpenVINOModule, module_identity

        shape = (1, 3, input_size, input_size)
        self.precision = precision
        self.network = OpenVINOModule(module, shape, module_identity(module, weights_sha256, shape), precision)

    def prepare(self, threads: int) -> None:
        """Compile the network for ``threads`` threads now (from the disk cache: ~0.2-0.6 s; converting it
        the first time on a machine: ~20-60 s), so the first encoder call costs what later ones do."""
        self.network.compiled(threads)

    def __call__(self, batch: torch.Tensor, threads: int) -> np.ndarray:
        return self.network(batch.detach().cpu().numpy(), threads)


def image_encoder(
    module: nn.Module,
    device: torch.device,
    input_size: int,
    weights_sha256: str,
    precision: str = "fp32",
    backend: str | None = None,
) -> TorchImageEncoder | OpenVINOImageEncoder:
    """The encoder for ``backend`` (``torch`` / ``openvino`` / ``auto``; None: ``$FMSCOPE_BACKEND`` or auto).

    ``module``: the model's image encoder (eval mode, on ``device``); ``input_size``: its square input side
    (pixels); ``weights_sha256``: identifies the weights (the OpenVINO disk cache key).
    """
    if resolve_backend(backend, device) == "openvino":
        return OpenVINOImageEncoder(module, input_size, weights_sha256, precision)
    return TorchImageEncoder(module, device, precision)
