"""The small local trainer: a light domain head fitted on the cells a user annotated.

Features are the slide's embeddings smoothed over the spatial neighbour graph (the same
features the unsupervised domains cluster), standardised. The head is a two-layer MLP
trained full-batch with class-balanced cross-entropy, seeded; its class probabilities are
then smoothed over the same spatial graph (domains are contiguous regions: on the
semi-synthetic tissue this lifts whole-slide accuracy from 0.95 to 0.996). Part of every annotated
class is held out to report accuracy, next to the accuracy of the unsupervised domains
mapped to the annotation (each domain takes the majority annotated class of its training
cells), so the user sees whether the head helps.

Checkpoints (:mod:`fmscope.checkpoint_files`: tensors, numbers, strings, read back with
``weights_only=True``) are written atomically every ``save_every`` epochs and at the end;
``resume=True`` continues from the last one. The checkpoint carries the encoder (baseline PCA
basis, or the name of the scGPT folder and its fine-tuned last layers when ``tune_layers`` was
asked) and the smoothing settings, so the head applies to another slide.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import torch
from torch import nn

from fmscope.checkpoint_files import read_checkpoint, write_checkpoint
from fmscope.errors import FmscopeError
from fmscope.omics.cell_ids import require_unique
from fmscope.omics.domains import smooth_embedding
from fmscope.omics.embed import BaselineEncoder, scgpt_embedding
from fmscope.omics.missing_labels import as_labels
from fmscope.omics.sections import require_sections
from fmscope.progress import Progress, as_progress

PREDICTED_KEY = "fmscope_predicted_domain"
UNCERTAINTY_KEY = "fmscope_uncertainty"
HEAD_FORMAT = 1


class DomainHead(nn.Module):
    """features -> hidden (GELU, dropout) -> class logits; ``hidden=0``: a linear (softmax regression) head."""

    def __init__(self, n_features: int, n_classes: int, hidden: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
        self.layers = (
            nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
            if hidden
            else nn.Linear(n_features, n_classes)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


@dataclass
class SlideEncoder:
    """How a head's features are made: the embedding (baseline basis or scGPT folder) + smoothing."""

    kind: str  # "baseline" | "scgpt"
    baseline: BaselineEncoder | None = None
    scgpt_folder: str | None = None
    smoothing: float = 0.5
    hops: int = 2
    output_hops: int = 8  # class probabilities are smoothed over the same spatial graph
    tuned_layers: dict[str, torch.Tensor] | None = None  # scGPT's last layers, fine-tuned on the annotation
    genes: list[str] | None = None  # scGPT: the training slide's genes (the baseline keeps its own list)
    _loaded: tuple | None = field(default=None, init=False, repr=False, compare=False)  # (model, vocab)

    def scgpt_model(self) -> tuple:
        """(model, vocab) from ``scgpt_folder`` (loaded once), with the tuned layers in place when there are some."""
        from fmscope.omics.layer_tuning import apply_tuned_layers
        from fmscope.omics.models.scgpt import load_scgpt

        if self._loaded is None:
            if not self.scgpt_folder or not Path(self.scgpt_folder).is_dir():
                raise FmscopeError(
                    f"This head was trained on scGPT embeddings from {self.scgpt_folder!r}, "
                    "which is not a folder here.",
                    "Give that checkpoint folder with --checkpoint.",
                )
            model, vocab, _ = load_scgpt(self.scgpt_folder)
            if self.tuned_layers:
                apply_tuned_layers(model, self.tuned_layers)
            self._loaded = model, vocab
        return self._loaded

    def tune(
        self,
        adata: ad.AnnData,
        labels: np.ndarray,
        train: np.ndarray,
        n_layers: int,
        epochs: int,
        on_epoch: Callable[[int, int], None] | None = None,
    ) -> None:
        """Fine-tune scGPT's last ``n_layers`` layers on the ``train`` cells (see :mod:`layer_tuning`)."""
        from fmscope.omics.layer_tuning import tune_last_layers

        if self.kind != "scgpt":
            raise FmscopeError(
                "Layer fine-tuning needs an scGPT model.", "Give an scGPT checkpoint folder, or train the head alone."
            )
        model, vocab = self.scgpt_model()
        self.tuned_layers = tune_last_layers(model, vocab, adata, labels, train, n_layers, epochs, on_epoch=on_epoch)

    def features(self, adata: ad.AnnData) -> np.ndarray:
        """(cells, dims) smoothed embedding of ``adata``."""
        if self.kind == "baseline":
            embedding = self.baseline.transform(adata)
        else:
            embedding = scgpt_embedding(adata, *self.scgpt_model())
        coords = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
        return smooth_embedding(
            coords, embedding, weight=self.smoothing, hops=self.hops, sections=require_sections(adata, "the slide")
        )

    def smooth_probabilities(self, adata: ad.AnnData, probabilities: np.ndarray) -> np.ndarray:
        """Mix each cell's class probabilities with its spatial neighbours' (domains are contiguous)."""
        if not self.output_hops:
            return probabilities
        coords = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
        return smooth_embedding(
            coords, probabilities, weight=0.5, hops=self.output_hops, sections=require_sections(adata, "the slide")
        )

    def state(self) -> dict:
        state = {
            "kind": self.kind,
            "smoothing": float(self.smoothing),
            "hops": int(self.hops),
            "output_hops": int(self.output_hops),
            "scgpt_folder": self.scgpt_folder or "",
        }
        if self.baseline is not None:
            state["baseline"] = self.baseline.state()
        if self.tuned_layers:
            state["tuned_layers"] = dict(self.tuned_layers)
        if self.genes:
            state["genes"] = list(self.genes)
        return state

    @classmethod
    def from_state(cls, state: dict) -> "SlideEncoder":
        baseline = BaselineEncoder.from_state(state["baseline"]) if "baseline" in state else None
        return cls(
            state["kind"],
            baseline,
            state["scgpt_folder"] or None,
            float(state["smoothing"]),
            int(state["hops"]),
            int(state["output_hops"]),
            state.get("tuned_layers"),
            genes=list(state["genes"]) if state.get("genes") else None,
        )


def slide_encoder(
    adata: ad.AnnData, scgpt_folder: str | os.PathLike | None = None, smoothing: float = 0.5, hops: int = 2
) -> SlideEncoder:
    """The encoder for ``adata``: scGPT when a folder is given, else a baseline fitted on this slide."""
    if scgpt_folder is not None:
        return SlideEncoder(
            "scgpt",
            scgpt_folder=str(Path(scgpt_folder).resolve()),
            smoothing=smoothing,
            hops=hops,
            genes=list(map(str, adata.var_names)),
        )
    return SlideEncoder("baseline", baseline=BaselineEncoder.fit(adata), smoothing=smoothing, hops=hops)


@dataclass
class FinetuneResult:
    """Held-out figures and whole-slide predictions of a trained head."""

    classes: list[str]
    epochs: int
    train_accuracy: float
    holdout_accuracy: float
    domains_holdout_accuracy: float | None  # unsupervised domains mapped to the annotation
    n_train: int
    n_holdout: int
    probabilities: np.ndarray  # (cells, classes)

    @property
    def predicted(self) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.probabilities.argmax(axis=1)].astype(str)

    @property
    def uncertainty(self) -> np.ndarray:
        """1 - probability of the predicted class (0 sure, near 1 - 1/classes unsure)."""
        return 1.0 - self.probabilities.max(axis=1)

    def summary(self) -> str:
        text = (
            f"held-out accuracy {self.holdout_accuracy:.3f} on {self.n_holdout} annotated cells "
            f"(trained on {self.n_train}, {len(self.classes)} classes, {self.epochs} epochs)"
        )
        if self.domains_holdout_accuracy is not None:
            text += f"; unsupervised domains {self.domains_holdout_accuracy:.3f}"
        return text


def annotation_from_column(adata: ad.AnnData, column: str, notices: list[str] | None = None) -> np.ndarray:
    """Per-cell annotation strings from ``obs[column]`` ('' where not annotated: NaN, blank, 'Unassigned',
    'unknown' ..., :mod:`fmscope.omics.missing_labels`; a sentence saying so is appended to ``notices``)."""
    if column not in adata.obs:
        raise FmscopeError(
            f"The slide has no obs['{column}'] to take annotations from.",
            f"Name an obs column; the slide has: {', '.join(map(str, adata.obs.columns[:12]))}.",
        )
    labels, notice = as_labels(adata.obs[column])
    if notice and notices is not None:
        notices.append(f"obs['{column}']: {notice}")
    return labels


def annotation_from_csv(adata: ad.AnnData, path: str | os.PathLike, notices: list[str] | None = None) -> np.ndarray:
    """Per-cell annotation strings ('' where not annotated) from a CSV of (cell id, domain): the first two columns,
    any header names, or no header (R's ``write.table(col.names = FALSE)``, pandas' ``header=False``: a first
    line whose id is a cell of the slide is a cell, said in ``notices``); the separator (comma, semicolon, tab)
    is told from the file, a UTF-8 byte-order mark dropped.
    A blank domain (read by pandas as NaN), 'Unassigned', 'unknown' ... is no annotation
    (:mod:`fmscope.omics.missing_labels`; said in ``notices``). Raises FmscopeError for a missing file, fewer than
    two columns, no cell of the slide, or ids the slide repeats (:func:`fmscope.omics.cell_ids.require_unique`)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FmscopeError(f"No such annotation file: {path}", "Give a CSV with columns cell, domain.")
    try:
        table = pd.read_csv(path, dtype=str, sep=None, engine="python", encoding="utf-8-sig", header=None)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise FmscopeError(
            f"Cannot read {path} as a CSV ({str(error)[:120]}).",
            "Save it as CSV (UTF-8) with two columns: cell id, domain.",
        ) from None
    if table.shape[1] < 2:
        raise FmscopeError(f"{path} needs two columns (cell id, domain).", "Write one annotated cell per line.")
    if len(table) and str(table.iloc[0, 0]) in set(map(str, adata.obs_names)):  # no header: the first line is a cell
        if notices is not None:
            notices.append(f"{path.name} has no header row: its first line ({table.iloc[0, 0]}) is an annotated cell.")
    else:
        table = table.iloc[1:]
    domains, notice = as_labels(table.iloc[:, 1])
    if notice and notices is not None:
        notices.append(f"{path.name}: {notice}")
    named = dict(zip(table.iloc[:, 0], domains))
    require_unique(adata, (cell for cell, domain in named.items() if domain), path.name)
    on_slide = set(adata.obs_names)
    unknown = [cell for cell in named if cell not in on_slide]
    if len(unknown) == len(named):
        raise FmscopeError(
            f"None of the cells in {path} is on the slide (e.g. {unknown[0]}).",
            "Use the slide's cell ids (obs names) in the first column.",
        )
    return np.array([named.get(cell, "") for cell in adata.obs_names], dtype=str)


def holdout_split(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out) of annotated cells, stratified by class."""
    classes = sorted(set(labels[labels != ""]))
    if len(classes) < 2:
        raise FmscopeError(
            f"The annotation has {len(classes)} class{'es' if len(classes) != 1 else ''}; a head needs at least two.",
            "Annotate regions of at least two different domains.",
        )
    rng = np.random.default_rng(seed)
    train, held = [], []
    for name in classes:
        members = rng.permutation(np.nonzero(labels == name)[0])
        if len(members) < 2:
            raise FmscopeError(
                f"Class '{name}' has {len(members)} annotated cell.",
                "Annotate a larger region of it (at least 2 cells per class).",
            )
        n_held = min(len(members) - 1, max(1, int(round(fraction * len(members))))) if fraction > 0 else 0
        held.extend(members[:n_held])
        train.extend(members[n_held:])
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(held, dtype=int))


def domains_accuracy(domains: np.ndarray, labels: np.ndarray, train: np.ndarray, held: np.ndarray) -> float:
    """Accuracy on ``held`` of unsupervised domains named by the majority training annotation."""
    overall = max(set(labels[train]), key=lambda c: (np.sum(labels[train] == c), c))
    naming = {}
    for domain in np.unique(domains):
        inside = labels[train][domains[train] == domain]
        naming[domain] = max(set(inside), key=lambda c: (np.sum(inside == c), c)) if len(inside) else overall
    return float(np.mean([naming[d] == truth for d, truth in zip(domains[held], labels[held])]))


def _save(
    path: Path,
    head: DomainHead,
    optimiser: torch.optim.Optimizer,
    epoch: int,
    classes: list[str],
    encoder: SlideEncoder,
    mean: np.ndarray,
    std: np.ndarray,
    hidden: int,
) -> None:
    payload = {
        "format": HEAD_FORMAT,
        "epoch": epoch,
        "classes": classes,
        "hidden": hidden,
        "state_dict": head.state_dict(),
        "optimiser": optimiser.state_dict(),
        "feature_mean": torch.as_tensor(mean),
        "feature_std": torch.as_tensor(std),
        "encoder": encoder.state(),
        "rng_state": torch.get_rng_state(),
    }
    write_checkpoint(path, payload)


def read_head(path: str | os.PathLike) -> dict:
    """A head checkpoint's contents (``weights_only=True``), with a clear error for anything else."""
    payload = read_checkpoint(path, "head checkpoint", "`fmscope finetune --head`")
    if payload.get("format") != HEAD_FORMAT:
        raise FmscopeError(
            f"{path} is not an fmscope domain-head checkpoint.", "Give the file `fmscope finetune` wrote."
        )
    return payload


def finetune_head(
    adata: ad.AnnData,
    labels: np.ndarray,
    head_path: str | os.PathLike,
    encoder: SlideEncoder,
    epochs: int = 300,
    holdout: float = 0.3,
    resume: bool = False,
    seed: int = 0,
    hidden: int = 64,
    weight_decay: float = 1e-2,
    save_every: int = 50,
    domains: np.ndarray | None = None,
    progress: Progress | None = None,
    tune_layers: int = 0,
    tune_epochs: int = 10,
) -> FinetuneResult:
    """Train a head on the annotated cells of ``adata`` (``labels[i]`` '', NaN, 'Unassigned', 'unknown' ...: not
    annotated, :mod:`fmscope.omics.missing_labels`, whoever made the labels).

    ``tune_layers`` > 0 (scGPT encoders) first fine-tunes that many last transformer layers on
    the training cells for ``tune_epochs`` (:mod:`fmscope.omics.layer_tuning`); the head is then
    trained on the tuned model's embedding, and the tuned layers are saved with the head.
    ``progress`` is told ``(epoch, epochs, "tuning layers" / "training head")`` after every epoch and
    raises :class:`Cancelled` once cancelled; the last checkpoint stays and ``resume=True`` continues
    from it (without tuning again).
    """
    progress = as_progress(progress)
    labels, _ = as_labels(np.asarray(labels, dtype=object))
    if len(labels) != adata.n_obs:
        raise FmscopeError(f"{len(labels)} annotations for {adata.n_obs} cells.", "Annotate the cells of this slide.")
    train, held = holdout_split(labels, holdout, seed)
    head_path = Path(head_path)
    start_epoch = 0
    classes = sorted({str(name) for name in labels[labels != ""]})
    if resume and head_path.is_file():
        saved = read_head(head_path)
        if list(saved["classes"]) != classes:
            raise FmscopeError(
                f"{head_path} was trained on classes {list(saved['classes'])}, not {classes}.",
                "Resume with the same annotation, or start a new head file.",
            )
        encoder = SlideEncoder.from_state(saved["encoder"])
        hidden = int(saved["hidden"])
    elif tune_layers:
        encoder.tune(adata, labels, train, tune_layers, tune_epochs, progress.counter("tuning layers"))
    features = encoder.features(adata)
    if resume and head_path.is_file():
        mean, std = saved["feature_mean"].numpy(), saved["feature_std"].numpy()
    else:
        mean, std = features[train].mean(axis=0), features[train].std(axis=0) + 1e-6
    x = torch.as_tensor((features - mean) / std, dtype=torch.float32)
    index = {name: i for i, name in enumerate(classes)}
    y = torch.as_tensor([index.get(name, -1) for name in labels])
    torch.manual_seed(seed)
    head = DomainHead(x.shape[1], len(classes), hidden)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=weight_decay)
    if resume and head_path.is_file():
        head.load_state_dict(saved["state_dict"])
        optimiser.load_state_dict(saved["optimiser"])
        torch.set_rng_state(saved["rng_state"])  # dropout continues as in an uninterrupted run
        start_epoch = int(saved["epoch"])
    counts = torch.bincount(y[train], minlength=len(classes)).float()
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (len(classes) * counts.clamp(min=1)))
    train_t = torch.as_tensor(train)
    for epoch in range(start_epoch, epochs):
        head.train()
        optimiser.zero_grad()
        loss_fn(head(x[train_t]), y[train_t]).backward()
        optimiser.step()
        if (epoch + 1) % save_every == 0 or epoch + 1 == epochs:
            _save(head_path, head, optimiser, epoch + 1, classes, encoder, mean, std, hidden)
        progress.update(epoch + 1, epochs, "training head")
    head.eval()
    with torch.inference_mode():
        probabilities = encoder.smooth_probabilities(adata, torch.softmax(head(x), dim=1).numpy())
    predicted = probabilities.argmax(axis=1)
    truth = y.numpy()
    return FinetuneResult(
        classes=classes,
        epochs=max(epochs, start_epoch),
        train_accuracy=float(np.mean(predicted[train] == truth[train])),
        holdout_accuracy=float(np.mean(predicted[held] == truth[held])) if len(held) else float("nan"),
        domains_holdout_accuracy=(
            domains_accuracy(np.asarray(domains).astype(str), labels, train, held)
            if domains is not None and len(held)
            else None
        ),
        n_train=len(train),
        n_holdout=len(held),
        probabilities=probabilities,
    )


def apply_head(
    head_path: str | os.PathLike,
    adata: ad.AnnData,
    scgpt_folder: str | os.PathLike | None = None,
    notices: list[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """(classes, probabilities (cells, classes)) of a trained head on any slide. The head's genes the slide lacks
    are said in ``notices`` (None: a UserWarning), or refused when too many (FmscopeError;
    :func:`fmscope.omics.head_genes.judge` for a baseline head, :func:`~fmscope.omics.head_genes.scgpt_judge` for
    an scGPT head that keeps its training genes)."""
    from fmscope.omics.head_genes import judge, scgpt_judge

    saved = read_head(head_path)
    note = ""
    encoder = SlideEncoder.from_state(saved["encoder"])
    if scgpt_folder is not None:
        encoder.scgpt_folder = str(scgpt_folder)
    if encoder.baseline is not None:
        base = encoder.baseline
        note = judge(
            base.genes, base.present(adata), base.components, saved["feature_std"].numpy(), Path(head_path).name
        )
    elif encoder.genes:  # scGPT embeds from the genes present: absent ones count as not expressed
        note = scgpt_judge(encoder.genes, adata, Path(head_path).name)
    if note:
        notices.append(note) if notices is not None else warnings.warn(note, stacklevel=2)
    features = encoder.features(adata)
    head = DomainHead(features.shape[1], len(saved["classes"]), int(saved["hidden"]))
    try:
        head.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        raise FmscopeError(
            f"The head does not fit these features ({str(error).splitlines()[0]}).",
            "Use the encoder the head was trained with.",
        ) from None
    x = torch.as_tensor((features - saved["feature_mean"].numpy()) / saved["feature_std"].numpy(), dtype=torch.float32)
    head.eval()
    with torch.inference_mode():
        probabilities = torch.softmax(head(x), dim=1).numpy()
    return list(saved["classes"]), encoder.smooth_probabilities(adata, probabilities)


def store_predictions(adata: ad.AnnData, classes: list[str], probabilities: np.ndarray) -> None:
    """Predicted domain and uncertainty into ``obs``; class probabilities into ``obsm``."""
    adata.obs[PREDICTED_KEY] = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)].astype(str)
    adata.obs[UNCERTAINTY_KEY] = 1.0 - probabilities.max(axis=1)
    adata.obsm["fmscope_domain_probabilities"] = probabilities.astype(np.float32)
    adata.uns.setdefault("fmscope", {})["predicted_classes"] = list(classes)
