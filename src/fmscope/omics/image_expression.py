"""Expression from H&E, BLEEP-style: a joint embedding of image patches and spot expression.

Two small projection heads (each: linear, GELU, linear, dropout, residual, layer norm) map the
frozen encoder's patch features (:mod:`fmscope.omics.image_patches`) and the spots'
standardised log-normalised expression into one space. Training uses BLEEP's contrastive loss
(Xie et al., NeurIPS 2023): the image-to-spot similarity logits are pulled towards soft
targets, the softmax of the mean of the image-image and spot-spot similarities, in both
directions; here the embeddings are L2-normalised and divided by a temperature. A patch's
expression is predicted as the mean expression of the ``k`` reference spots whose expression
embeddings are nearest (cosine) to its image embedding (BLEEP's "average" prediction).

The model file (``torch.save`` of tensors, numbers and strings, read back with
``weights_only=True``) carries the gene list, the patch size in microns, the encoder's scale
and weights sha256, both heads and the reference spots (their embeddings and expression), and, for a
model kept from one held-out fold, the ids of the training slide's spots it never saw.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fmscope
from fmscope.checkpoint_files import read_checkpoint, write_checkpoint
from fmscope.errors import FmscopeError
from fmscope.models import IMAGE_EXPRESSION_ENCODER
from fmscope.omics.gene_match import columns, require_genes

MIN_SPOTS = 100  # fewer reference spots cannot train the heads nor be a useful reference
EMBEDDING_DIM = 128
FORMAT = "fmscope-image-expression-1"

EpochCallback = Callable[[int, int], None]


class ProjectionHead(nn.Module):
    """in_dim -> dim: linear, GELU, linear, dropout, plus the first linear's output, then layer norm."""

    def __init__(self, in_dim: int, dim: int = EMBEDDING_DIM, dropout: float = 0.1) -> None:
        super().__init__()
        self.project = nn.Linear(in_dim, dim)
        self.mix = nn.Sequential(nn.GELU(), nn.Linear(dim, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.project(x)
        return self.norm(projected + self.mix(projected))


def contrastive_loss(image: torch.Tensor, spot: torch.Tensor, temperature: float) -> torch.Tensor:
    """BLEEP's symmetric loss on L2-normalised (B, D) embeddings of matching patches and spots."""
    image, spot = F.normalize(image, dim=1), F.normalize(spot, dim=1)
    logits = spot @ image.T / temperature
    targets = F.softmax((image @ image.T + spot @ spot.T) / 2 / temperature, dim=1)
    spot_loss = -(targets * F.log_softmax(logits, dim=1)).sum(1)
    image_loss = -(targets.T * F.log_softmax(logits.T, dim=1)).sum(1)
    return ((spot_loss + image_loss) / 2).mean()


@dataclass
class Standardiser:
    """Per-column mean and standard deviation (fitted on the training spots)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardiser:
        return cls(values.mean(axis=0), np.where(values.std(axis=0) > 1e-8, values.std(axis=0), 1.0))

    def __call__(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((values - self.mean) / self.std, dtype=torch.float32)


@dataclass
class ImageExpressionModel:
    """Trained heads + reference spots; ``predict(features)`` gives (N, genes) log1p(CP10k) expression."""

    genes: list[str]
    patch_um: float
    encoder_um_per_px: float
    encoder_sha256: str
    image_head: ProjectionHead
    spot_head: ProjectionHead
    features: Standardiser
    expression: Standardiser
    reference_embedding: torch.Tensor  # (spots, D) L2-normalised expression embeddings of the reference spots
    reference_expression: np.ndarray  # (spots, genes) log1p(counts per 10,000)
    k: int = 100
    temperature: float = 0.1
    seed: int = 0
    held_out_spots: list[str] = field(default_factory=list)  # ids of the training slide's spots it never saw

    def image_embedding(self, features: np.ndarray) -> torch.Tensor:
        """(N, D) L2-normalised image embeddings of (N, 256) patch features."""
        self.image_head.eval()
        with torch.inference_mode():
            return F.normalize(self.image_head(self.features(features)), dim=1)

    def predict(self, features: np.ndarray, genes: list[str] | None = None, chunk: int = 4096) -> np.ndarray:
        """(N, len(genes)) predicted expression: the mean over the k nearest reference spots in the joint space.

        ``genes`` defaults to all the model's genes; a gene it was not trained on is refused.
        """
        columns = self.gene_columns(genes)
        reference = self.reference_expression[:, columns]
        k = min(self.k, len(reference))
        out = np.zeros((len(features), len(columns)), dtype=np.float32)
        for start in range(0, len(features), chunk):
            similarity = self.image_embedding(features[start : start + chunk]) @ self.reference_embedding.T
            index = similarity.topk(k, dim=1).indices.numpy()
            out[start : start + chunk] = reference[index].mean(axis=1)
        return out

    def gene_columns(self, genes: list[str] | None) -> np.ndarray:
        """Column indices of ``genes`` (all when None); refuses genes the model was not trained on."""
        if genes is None:
            return np.arange(len(self.genes))
        require_genes(
            genes,
            self.genes,
            "The model was not trained on",
            f"Choose among its {len(self.genes)} genes (e.g. {', '.join(self.genes[:3])}), "
            "or train a model with --genes including them.",
        )
        return columns(self.genes, genes)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model file atomically."""
        state = {
            "format": FORMAT,
            "fmscope_version": fmscope.__version__,
            "genes": list(self.genes),
            "patch_um": self.patch_um,
            "encoder": IMAGE_EXPRESSION_ENCODER,
            "encoder_um_per_px": self.encoder_um_per_px,
            "encoder_sha256": self.encoder_sha256,
            "k": self.k,
            "temperature": self.temperature,
            "seed": self.seed,
            "image_head": self.image_head.state_dict(),
            "spot_head": self.spot_head.state_dict(),
            "feature_mean": torch.as_tensor(self.features.mean),
            "feature_std": torch.as_tensor(self.features.std),
            "expression_mean": torch.as_tensor(self.expression.mean),
            "expression_std": torch.as_tensor(self.expression.std),
            "reference_embedding": self.reference_embedding,
            "reference_expression": torch.as_tensor(self.reference_expression),
            "held_out_spots": list(self.held_out_spots),
        }
        write_checkpoint(path, state)


def load_model_file(path: str | os.PathLike) -> ImageExpressionModel:
    """Read a model written by :meth:`ImageExpressionModel.save` (``weights_only=True``)."""
    if not os.path.isfile(path):
        raise FmscopeError(f"No such model file: {path}", "Train one with `fmscope image-expression train`.")
    try:
        state = read_checkpoint(path, "image-expression model", "`fmscope image-expression train`")
        if state.get("format") != FORMAT:
            raise ValueError("not an image-expression model")
        image_head = ProjectionHead(state["feature_mean"].numel())
        spot_head = ProjectionHead(len(state["genes"]))
        image_head.load_state_dict(state["image_head"])
        spot_head.load_state_dict(state["spot_head"])
    except Exception as error:
        raise FmscopeError(
            f"{path} is not an fmscope image-expression model ({type(error).__name__}: {str(error)[:120]}).",
            "Give a file written by `fmscope image-expression train`.",
        ) from None
    return ImageExpressionModel(
        list(state["genes"]),
        float(state["patch_um"]),
        float(state["encoder_um_per_px"]),
        state["encoder_sha256"],
        image_head.eval(),
        spot_head.eval(),
        Standardiser(state["feature_mean"].numpy(), state["feature_std"].numpy()),
        Standardiser(state["expression_mean"].numpy(), state["expression_std"].numpy()),
        state["reference_embedding"],
        state["reference_expression"].numpy(),
        int(state["k"]),
        float(state["temperature"]),
        int(state["seed"]),
        list(state.get("held_out_spots", [])),
    )


def check_spot_count(n_spots: int, what: str = "The slide") -> None:
    """Refuse training on fewer than ``MIN_SPOTS`` spots (called before any feature is computed)."""
    if n_spots < MIN_SPOTS:
        raise FmscopeError(
            f"{what} has {n_spots} spots with expression; training needs at least {MIN_SPOTS}.",
            "Use a slide with more spots (or fewer held-out blocks).",
        )


def train_model(
    features: np.ndarray,
    expression: np.ndarray,
    genes: list[str],
    *,
    patch_um: float,
    encoder_um_per_px: float,
    encoder_sha256: str,
    epochs: int = 15,
    batch_size: int = 256,
    k: int = 100,
    temperature: float = 0.1,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
) -> ImageExpressionModel:
    """Train both heads on (N, F) patch features and (N, G) log-normalised expression of the same spots.

    Seeded (``seed``): the same inputs give the same model. ``on_epoch(done, total)`` may raise
    :class:`fmscope.errors.Cancelled` to stop.
    """
    check_spot_count(len(features))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only wait on each other (minutes vs seconds on a busy CPU)
    try:
        return _train(
            features,
            expression,
            genes,
            patch_um,
            encoder_um_per_px,
            encoder_sha256,
            epochs,
            batch_size,
            k,
            temperature,
            seed,
            on_epoch,
        )
    finally:
        torch.set_num_threads(threads)


def _train(
    features,
    expression,
    genes,
    patch_um,
    encoder_um_per_px,
    encoder_sha256,
    epochs,
    batch_size,
    k,
    temperature,
    seed,
    on_epoch,
) -> ImageExpressionModel:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    feature_scale, expression_scale = Standardiser.fit(features), Standardiser.fit(expression)
    x_image, x_spot = feature_scale(features), expression_scale(expression)
    image_head, spot_head = ProjectionHead(features.shape[1]), ProjectionHead(expression.shape[1])
    parameters = [*image_head.parameters(), *spot_head.parameters()]
    optimiser = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=1e-3)
    image_head.train()
    spot_head.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x_image), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            if len(batch) < 2:
                continue
            loss = contrastive_loss(image_head(x_image[batch]), spot_head(x_spot[batch]), temperature)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs)
    spot_head.eval()
    image_head.eval()
    with torch.inference_mode():
        reference = F.normalize(spot_head(x_spot), dim=1)
    return ImageExpressionModel(
        list(genes),
        float(patch_um),
        float(encoder_um_per_px),
        encoder_sha256,
        image_head,
        spot_head,
        feature_scale,
        expression_scale,
        reference,
        np.asarray(expression, dtype=np.float32),
        k,
        temperature,
        seed,
    )
