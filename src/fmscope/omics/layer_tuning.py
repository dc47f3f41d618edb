"""Fine-tuning the last transformer layers of an scGPT model on the cells a user annotated.

The frozen part of the model (token + value embeddings and the first layers) runs once over the
annotated training cells; its outputs are kept, and only the last ``n_layers`` layers and a
linear probe on the L2-normalised <cls> output are trained (AdamW, class-balanced
cross-entropy, seeded, mini-batches of cells). The tuned layers then replace the released ones
for the whole slide's embedding, and the usual domain head is trained on that embedding
(:mod:`fmscope.omics.finetune`). Held-out cells never take part. The design is the usual
partial fine-tuning of a pretrained transformer (train the top blocks, keep the rest frozen, cache
the frozen part's outputs), sized for a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import anndata as ad
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmscope.errors import FmscopeError
from fmscope.omics.embed import scgpt_inputs
from fmscope.omics.models.scgpt import ScGPT


def tuned_layer_keys(model: ScGPT, n_layers: int) -> list[str]:
    """State-dict keys of the last ``n_layers`` transformer layers."""
    total = len(model.transformer_encoder.layers)
    if not 1 <= n_layers <= total:
        raise FmscopeError(
            f"Cannot tune {n_layers} layers of a {total}-layer model.", f"Choose 1 to {total} layers (1 or 2 is usual)."
        )
    prefixes = tuple(f"transformer_encoder.layers.{i}." for i in range(total - n_layers, total))
    return [key for key in model.state_dict() if key.startswith(prefixes)]


def apply_tuned_layers(model: ScGPT, tuned: dict[str, torch.Tensor]) -> None:
    """Replace the model's layers by tuned ones (keys and shapes must match exactly)."""
    state = model.state_dict()
    wrong = [key for key, value in tuned.items() if key not in state or state[key].shape != value.shape]
    if wrong:
        raise FmscopeError(
            f"The tuned layers do not fit this scGPT model (first: {wrong[0]}).",
            "Use the checkpoint folder the head was trained with.",
        )
    with torch.no_grad():
        for key, value in tuned.items():
            state[key].copy_(value)


def tune_last_layers(
    model: ScGPT,
    vocab: dict[str, int],
    adata: ad.AnnData,
    labels: np.ndarray,
    train: np.ndarray,
    n_layers: int = 1,
    epochs: int = 10,
    lr: float = 1e-4,
    batch_size: int = 16,
    seed: int = 0,
    on_epoch: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Tune the last ``n_layers`` layers of ``model`` in place on the ``train`` cells' ``labels``;
    return the tuned layers' state (keys as in the checkpoint)."""
    keys = tuned_layer_keys(model, n_layers)
    layers = model.transformer_encoder.layers
    frozen, tuned = layers[: len(layers) - n_layers], layers[len(layers) - n_layers :]
    classes = sorted(set(labels[train]))
    index = {name: i for i, name in enumerate(classes)}
    device = next(model.parameters()).device
    batches = []
    with torch.no_grad():
        for cells, genes, values, padding in scgpt_inputs(adata, model, vocab, batch_size, cells=train):
            genes_t, padding_t = torch.as_tensor(genes, device=device), torch.as_tensor(padding, device=device)
            x = model.encoder(genes_t) + model.value_encoder(torch.as_tensor(values, device=device))
            mask = padding_t if padding_t.any() else None
            for layer in frozen:
                x = layer(x, mask)
            batches.append((x, mask, torch.as_tensor([index[labels[c]] for c in cells], device=device)))
    torch.manual_seed(seed)
    probe = nn.Linear(model.config.d_model, len(classes)).to(device)
    trainable = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in tuned.parameters():
        parameter.requires_grad_(True)
    optimiser = torch.optim.AdamW(
        [{"params": list(tuned.parameters()), "lr": lr}, {"params": list(probe.parameters()), "lr": lr * 100}],
        weight_decay=1e-2,
    )
    counts = torch.bincount(torch.cat([y for _, _, y in batches]), minlength=len(classes)).float()
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (len(classes) * counts.clamp(min=1)))
    generator = torch.Generator().manual_seed(seed)
    try:
        for epoch in range(epochs):
            for b in torch.randperm(len(batches), generator=generator).tolist():
                x, mask, y = batches[b]
                for layer in tuned:
                    x = layer(x, mask)
                optimiser.zero_grad()
                loss_fn(probe(F.normalize(x[:, 0, :], dim=1)), y).backward()
                optimiser.step()
            if on_epoch is not None:
                on_epoch(epoch + 1, epochs)
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(trainable[name])
    state = model.state_dict()
    return {key: state[key].detach().clone().cpu() for key in keys}
