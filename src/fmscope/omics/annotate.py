"""Cell types for every cell or spot of a slide from a labelled single-cell reference.

On the genes slide and reference share (at least :data:`MIN_SHARED_GENES`, each side's counts
normalised over those genes only, so a panel and a transcriptome are on one scale), an encoder
embeds the reference and the slide in one space and a classifier trained on the reference's
embedding gives every slide cell a probability per cell type; a cell whose best probability is
below ``min_confidence`` is called :data:`UNKNOWN`.

- Encoders: the baseline (log1p(CP10k) -> PCA with :data:`BASELINE_DIMS` components, fitted on
  the reference's training cells), or an scGPT / scGPT-spatial checkpoint folder (L2-normalised
  ``<cls>`` embeddings; with ``tune_layers`` its last layers are first fine-tuned on the
  reference's training cells with a cell-type classification objective on ``<cls>``, as the
  scGPT paper's annotation task; :mod:`fmscope.omics.layer_tuning`).
- Classifier: multinomial logistic regression (L2, ``C`` = :data:`CLASSIFIER_C`, class-balanced)
  on the standardised embedding.
- Built-in held-out evaluation on the reference itself: whole batches (donors) held out when a
  batch column is given, else a stratified 30 % of each cell type. Accuracy and macro
  precision / recall / F1 of the fmscope model next to two baselines fitted on the same
  training cells and genes: L1-regularised logistic regression (one-vs-rest, liblinear, C = 1, the
  baseline of Boiarsky et al. 2023, "A deep dive into single-cell RNA sequencing foundation models")
  and kNN (k = 15) on log-normalised expression. The model used on the slide keeps the encoder
  fitted on the training cells (held-out cells never tune scGPT) and refits the classifier on all
  reference cells.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd

from fmscope.errors import FmscopeError
from fmscope.omics.gene_match import columns, exact_shared

CELL_TYPE_KEY = "fmscope_cell_type"
CONFIDENCE_KEY = "fmscope_cell_type_confidence"
PROBABILITIES_KEY = "fmscope_cell_type_probabilities"  # obsm DataFrame (cells x cell types)
UNKNOWN = "unknown"
MIN_SHARED_GENES = 20
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_HOLDOUT = 0.3
BASELINE_DIMS = 50
CLASSIFIER_C = 0.03  # chosen on 8 stratified PBMC splits among 0.03 / 0.1 / 0.3 (docs/spatial_omics.md)
KNN_K = 15

Step = Callable[[str], None]


@dataclass
class Scores:
    """Held-out accuracy and macro precision / recall / F1 of one method."""

    accuracy: float
    precision: float
    recall: float
    f1: float

    @classmethod
    def of(cls, truth: np.ndarray, predicted: np.ndarray) -> "Scores":
        from sklearn.metrics import accuracy_score, precision_recall_fscore_support

        precision, recall, f1, _ = precision_recall_fscore_support(
            truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0
        )
        return cls(float(accuracy_score(truth, predicted)), float(precision), float(recall), float(f1))


@dataclass
class Evaluation:
    """The held-out comparison printed by ``fmscope annotate`` (methods in print order, fmscope first)."""

    scores: dict[str, Scores]
    split: str  # how the held-out cells were chosen
    n_train: int
    n_test: int
    n_genes: int

    def table(self) -> str:
        width = max(map(len, self.scores)) + 2
        lines = [
            f"held-out evaluation on the reference: {self.split}; {self.n_train} training / {self.n_test} held-out "
            f"cells, {self.n_genes} genes",
            f"{'method':<{width}}{'accuracy':>10}{'precision':>11}{'recall':>9}{'macro F1':>10}",
        ]
        for name, s in self.scores.items():
            lines.append(f"{name:<{width}}{s.accuracy:>10.3f}{s.precision:>11.3f}{s.recall:>9.3f}{s.f1:>10.3f}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """Plain numbers and strings (for ``uns``)."""
        return {
            "split": self.split,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_genes": self.n_genes,
            "methods": list(self.scores),  # names as printed (any characters: values, not keys)
            "accuracy": [s.accuracy for s in self.scores.values()],
            "macro_precision": [s.precision for s in self.scores.values()],
            "macro_recall": [s.recall for s in self.scores.values()],
            "macro_f1": [s.f1 for s in self.scores.values()],
        }


@dataclass
class Annotation:
    """Cell types of a slide's cells: probabilities (cells x types), the best type or UNKNOWN, the evaluation."""

    probabilities: pd.DataFrame
    min_confidence: float
    encoder: str
    evaluation: Evaluation
    genes: list[str] = field(default_factory=list)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.to_numpy().max(axis=1)

    @property
    def cell_types(self) -> np.ndarray:
        best = self.probabilities.columns.to_numpy(dtype=str)[self.probabilities.to_numpy().argmax(axis=1)]
        return np.where(self.confidence >= self.min_confidence, best, UNKNOWN).astype(str)

    def summary(self) -> str:
        counts = pd.Series(self.cell_types).value_counts()
        return ", ".join(f"{name} {count}" for name, count in counts.items())


def shared_panel(slide: ad.AnnData, reference: ad.AnnData) -> tuple[ad.AnnData, ad.AnnData, list[str]]:
    """(slide counts, reference counts) restricted to the genes both measured (reference's names and order).

    Refused, naming the fix, when fewer than :data:`MIN_SHARED_GENES` are shared."""
    reference_names = list(map(str, reference.var_names))
    slide_names = list(map(str, slide.var_names))
    genes = exact_shared(reference_names, slide_names, "the reference", "the slide")
    if len(genes) < MIN_SHARED_GENES:
        raise FmscopeError(
            f"The slide ({len(slide_names)} genes, e.g. {', '.join(slide_names[:3])}) and the reference "
            f"({len(reference_names)} genes, e.g. {', '.join(reference_names[:3])}) share {len(genes)} gene(s)"
            f"{' (' + ', '.join(genes[:5]) + ')' if genes else ''}; annotation needs at least {MIN_SHARED_GENES}.",
            "Use a reference of the same species with the same gene naming (symbols) as the slide, "
            "measured over the slide's panel.",
        )

    def subset(adata: ad.AnnData, names: list[str]) -> ad.AnnData:
        out = ad.AnnData(X=adata.X[:, columns(names, genes)], obs=pd.DataFrame(index=adata.obs_names.astype(str)))
        out.var_names = genes
        return out

    return subset(slide, slide_names), subset(reference, reference_names), genes


def log_normalised(adata: ad.AnnData) -> np.ndarray:
    """Dense (cells, genes) log1p(counts per 10,000 of the cell's total over these genes)."""
    from fmscope.omics.embed import _normalised

    return _normalised(adata.X)


def evaluation_split(
    labels: np.ndarray, obs: pd.DataFrame, batch_key: str | None, holdout: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """(train indices, held-out indices, description). With ``batch_key``: whole batches held out (about
    ``holdout`` of the cells, at least one batch; refused without two batches); else ``holdout`` of each cell
    type (a type with one cell stays in training)."""
    rng = np.random.default_rng(seed)
    if batch_key is not None:
        if batch_key not in obs:
            raise FmscopeError(
                f"The reference has no obs['{batch_key}'] to hold out batches by.",
                f"Give --batch-key one of: {', '.join(map(str, obs.columns[:10]))} (or leave it out: stratified).",
            )
        batches = obs[batch_key].astype(str).to_numpy()
        names = sorted(set(batches))
        if len(names) < 2:
            raise FmscopeError(
                f"The reference's obs['{batch_key}'] has {len(names)} batch; holding batches out needs two.",
                "Leave --batch-key out (stratified split) or give a column with several donors / batches.",
            )
        held_names: list[str] = []
        for name in rng.permutation(names):
            if held_names and np.isin(batches, held_names).mean() >= holdout or len(held_names) == len(names) - 1:
                break
            held_names.append(str(name))
        held = np.isin(batches, held_names)
        split = f"batches {', '.join(sorted(held_names))} of obs['{batch_key}'] held out"
        return np.nonzero(~held)[0], np.nonzero(held)[0], split
    train, test = [], []
    for name in sorted(set(labels)):
        members = rng.permutation(np.nonzero(labels == name)[0])
        n_held = min(len(members) - 1, int(round(holdout * len(members))))
        test.extend(members[:n_held])
        train.extend(members[n_held:])
    split = f"stratified, {holdout:.0%} of each cell type held out"
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(test, dtype=int)), split


class Encoder:
    """The embedding the classifier works on: ``fit`` on reference cells, then ``transform`` any cells."""

    name = ""

    def fit(self, reference: ad.AnnData, labels: np.ndarray, train: np.ndarray) -> None:
        raise NotImplementedError

    def transform(self, adata: ad.AnnData) -> np.ndarray:
        raise NotImplementedError


class BaselinePCA(Encoder):
    """log1p(CP10k) -> PCA (:class:`fmscope.omics.embed.BaselineEncoder`) fitted on the training cells."""

    def __init__(self, dims: int = BASELINE_DIMS) -> None:
        self.dims = dims
        self.encoder = None
        self.name = f"baseline (log-normalised expression -> PCA {dims})"

    def fit(self, reference: ad.AnnData, labels: np.ndarray, train: np.ndarray) -> None:
        from fmscope.omics.embed import BaselineEncoder

        self.encoder = BaselineEncoder.fit(reference[train], n_comps=self.dims)

    def transform(self, adata: ad.AnnData) -> np.ndarray:
        return self.encoder.transform(adata)


class ScGPTEncoder(Encoder):
    """An scGPT / scGPT-spatial checkpoint folder; ``tune_layers`` > 0 fine-tunes its last layers on the
    training cells' cell types first (classification on ``<cls>``)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        tune_layers: int = 0,
        tune_epochs: int = 10,
        batch_size: int = 32,
        device: str | None = None,
        on_epoch: Callable[[int, int], None] | None = None,
    ) -> None:
        from fmscope.omics.models.scgpt import load_scgpt

        self.model, self.vocab, self.report = load_scgpt(folder, device=device or "cpu")
        if tune_layers:
            from fmscope.omics.layer_tuning import tuned_layer_keys

            tuned_layer_keys(self.model, tune_layers)  # refuses too many layers before any work
        self.tune_layers, self.tune_epochs, self.batch_size, self.on_epoch = (
            tune_layers,
            tune_epochs,
            batch_size,
            on_epoch,
        )
        tuned = f", last {tune_layers} layer(s) fine-tuned on the reference" if tune_layers else ""
        self.name = f"scGPT {os.path.basename(os.path.normpath(folder))} (<cls> embedding{tuned})"

    def fit(self, reference: ad.AnnData, labels: np.ndarray, train: np.ndarray) -> None:
        if self.tune_layers:
            from fmscope.omics.layer_tuning import tune_last_layers

            tune_last_layers(
                self.model,
                self.vocab,
                reference,
                labels,
                train,
                self.tune_layers,
                self.tune_epochs,
                on_epoch=self.on_epoch,
            )

    def transform(self, adata: ad.AnnData) -> np.ndarray:
        from fmscope.omics.embed import scgpt_embedding

        return scgpt_embedding(adata, self.model, self.vocab, batch_size=self.batch_size)


def _classifier(c: float = CLASSIFIER_C):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=3000))


def baseline_scores(expression: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> dict:
    """{name: Scores} of L1 logistic regression and kNN on log-normalised expression (same split)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neighbors import KNeighborsClassifier

    l1 = OneVsRestClassifier(LogisticRegression(penalty="l1", solver="liblinear", C=1.0))
    knn = KNeighborsClassifier(n_neighbors=min(KNN_K, len(train)))
    out = {}
    for name, model in (("L1 logistic regression (expression)", l1), (f"kNN, k={KNN_K} (expression)", knn)):
        model.fit(expression[train], labels[train])
        out[name] = Scores.of(labels[test], model.predict(expression[test]))
    return out


def annotate(
    slide: ad.AnnData,
    reference: ad.AnnData,
    labels: np.ndarray,
    encoder: Encoder | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    batch_key: str | None = None,
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = 0,
    step: Step | None = None,
) -> Annotation:
    """Cell types of ``slide``'s cells from ``reference`` (counts-like X, one cell type per cell in ``labels``).

    ``step(message)`` is called before each stage (it may raise to cancel). Refuses, before any work, too few
    shared genes, a confidence outside [0, 1] and a bad batch column."""
    if not 0 <= min_confidence <= 1:
        raise FmscopeError(f"--min-confidence {min_confidence:g} is not a probability.", "Give a value from 0 to 1.")
    if not 0 < holdout < 1:
        raise FmscopeError(f"--holdout {holdout:g} is not a fraction.", "Give a value between 0 and 1 (e.g. 0.3).")
    step = step or (lambda message: None)
    labels = np.asarray(labels, dtype=str)
    slide_genes, reference_genes, genes = shared_panel(slide, reference)
    train, test, split = evaluation_split(labels, reference.obs, batch_key, holdout, seed)
    encoder = encoder or BaselinePCA()
    step("Fitting the encoder on the reference ...")
    encoder.fit(reference_genes, labels, train)
    step("Embedding the reference ...")
    space = encoder.transform(reference_genes)
    step("Evaluating on held-out reference cells ...")
    held_out = _classifier().fit(space[train], labels[train])
    scores = {f"fmscope: {encoder.name} + logistic": Scores.of(labels[test], held_out.predict(space[test]))}
    scores.update(baseline_scores(log_normalised(reference_genes), labels, train, test))
    evaluation = Evaluation(scores, split, len(train), len(test), len(genes))
    step("Annotating the slide ...")
    classifier = _classifier().fit(space, labels)
    probabilities = classifier.predict_proba(encoder.transform(slide_genes))
    frame = pd.DataFrame(probabilities, index=slide.obs_names.astype(str), columns=list(map(str, classifier.classes_)))
    return Annotation(frame, min_confidence, encoder.name, evaluation, genes)


def store_annotation(adata: ad.AnnData, result: Annotation) -> None:
    """Write the cell types into ``adata``: obs[CELL_TYPE_KEY] (categorical, UNKNOWN below the confidence),
    obs[CONFIDENCE_KEY] (best probability), obsm[PROBABILITIES_KEY] ((cells, types) array; the types'
    names in uns['fmscope']['annotation']['cell_types']) and the evaluation in uns['fmscope']['annotation']."""
    adata.obs[CELL_TYPE_KEY] = pd.Categorical(result.cell_types)
    adata.obs[CONFIDENCE_KEY] = result.confidence.astype(np.float32)
    adata.obsm[PROBABILITIES_KEY] = result.probabilities.to_numpy(np.float32)  # an array: type names hold '/'
    adata.uns["fmscope"] = {
        **adata.uns.get("fmscope", {}),
        "annotation": {
            "encoder": result.encoder,
            "cell_types": list(map(str, result.probabilities.columns)),  # the columns of obsm[PROBABILITIES_KEY]
            "min_confidence": float(result.min_confidence),
            "genes": list(result.genes),
            "evaluation": result.evaluation.as_dict(),
        },
    }
