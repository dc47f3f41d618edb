"""Cell / spot embeddings: the baseline (normalised expression -> PCA) and scGPT.

scGPT inputs are built as the official inference does (<cls> first with the pad value,
nonzero genes, binned values; for scGPT-spatial checkpoints, values first divided by the
slide mean and the release's per-gene means) but deterministically: binning without random tie-breaking
(:mod:`fmscope.omics.binning`) and, when a cell has more genes than ``max_length - 1``, the
most expressed genes are kept (ties by vocabulary order) unless ``seed`` asks for the
official-style random subsample. Cells are streamed in batches so memory stays bounded.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch

from fmscope.errors import FmscopeError
from fmscope.omics.binning import bin_values
from fmscope.omics.models.scgpt import ScGPT
from fmscope.omics.vocab import coverage_note, match_genes, require_coverage
from fmscope.progress import Progress, as_progress

EMBEDDING_KEY = "X_fmscope"
LENGTH_BUCKET_BATCHES = 16  # cells are sorted by length within chunks of this many batches
MAX_FIT_CELLS = 50_000  # the baseline PCA is fitted on at most this many cells (seeded sample)
TRANSFORM_CHUNK = 10_000  # cells normalised and projected at a time


@dataclass
class BaselineEncoder:
    """Normalise (total counts 1e4), log1p, project on fitted principal components.

    Fitted on one slide, it embeds another slide in the same space (genes matched by name; absent genes
    estimated from the present ones, :mod:`fmscope.omics.head_genes`), which lets a fine-tuned head move
    between slides.
    """

    genes: list[str]
    mean: np.ndarray  # (genes,)
    components: np.ndarray  # (genes, dims)

    @classmethod
    def fit(cls, adata: ad.AnnData, n_comps: int = 30, seed: int = 0) -> "BaselineEncoder":
        """PCA (scanpy) of the normalised expression of ``adata`` (of a seeded sample of
        ``MAX_FIT_CELLS`` cells when the slide is larger, so memory stays bounded)."""
        import scanpy as sc

        if adata.n_obs > MAX_FIT_CELLS:
            rows = np.sort(np.random.default_rng(seed).choice(adata.n_obs, MAX_FIT_CELLS, replace=False))
            adata = adata[rows]
        work = ad.AnnData(X=_normalised(adata.X))
        n_comps = min(n_comps, work.n_obs - 1, work.n_vars - 1)
        sc.pp.pca(work, n_comps=n_comps, random_state=seed)
        return cls(
            list(map(str, adata.var_names)),
            np.asarray(work.X.mean(axis=0), dtype=np.float64).ravel(),
            np.asarray(work.varm["PCs"], dtype=np.float64),
        )

    def present(self, adata: ad.AnnData) -> np.ndarray:
        """(genes,) bool: which of this encoder's genes ``adata`` holds (matched by name)."""
        names = set(map(str, adata.var_names))
        return np.array([g in names for g in self.genes], dtype=bool)

    def transform(self, adata: ad.AnnData) -> np.ndarray:
        """(cells, dims) embedding of ``adata`` in this encoder's space. Genes of the encoder that ``adata``
        lacks are not taken as 0: the embedding is fitted from the genes present
        (:func:`fmscope.omics.head_genes.projection`; :func:`fmscope.omics.head_genes.judge` says and bounds it
        for a head). Fewer than half the encoder's genes: FmscopeError naming how many."""
        from fmscope.omics.head_genes import projection

        index = {name: i for i, name in enumerate(map(str, adata.var_names))}
        present = self.present(adata)
        if present.sum() < max(2, len(self.genes) // 2):
            raise FmscopeError(
                f"The slide has {int(present.sum())} of the encoder's {len(self.genes)} genes.",
                "Apply the head to a slide measured with the same gene panel.",
            )
        columns = [index[g] for g, here in zip(self.genes, present) if here]
        basis = projection(self.components, present)
        mean = self.mean[present]
        out = np.empty((adata.n_obs, self.components.shape[1]), dtype=np.float32)
        for start in range(0, adata.n_obs, TRANSFORM_CHUNK):  # per-cell normalisation: chunks give the same result
            normalised = _normalised(adata.X[start : start + TRANSFORM_CHUNK])
            out[start : start + len(normalised)] = (normalised[:, columns] - mean) @ basis
        return out

    def state(self) -> dict:
        """Plain tensors and lists (savable with ``torch.save``, loadable with ``weights_only=True``)."""
        return {"genes": self.genes, "mean": torch.as_tensor(self.mean), "components": torch.as_tensor(self.components)}

    @classmethod
    def from_state(cls, state: dict) -> "BaselineEncoder":
        return cls(list(state["genes"]), state["mean"].numpy(), state["components"].numpy())


def _normalised(matrix) -> np.ndarray:
    """Dense log1p(counts per 10,000) of a (cells, genes) block."""
    import scanpy as sc

    work = ad.AnnData(X=matrix.astype(np.float32).copy())
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    return work.X.toarray() if sp.issparse(work.X) else np.asarray(work.X)


def baseline_embedding(adata: ad.AnnData, n_comps: int = 30, seed: int = 0) -> np.ndarray:
    """Normalised (total counts 1e4), log1p, PCA embedding; no checkpoint needed."""
    return BaselineEncoder.fit(adata, n_comps, seed).transform(adata)


def tokenize(
    counts: np.ndarray,
    gene_ids: np.ndarray,
    cls_id: int,
    pad_id: int,
    pad_value: float,
    n_bins: int,
    max_length: int,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, ...]:
    """(cells, genes) counts -> (gene ids, binned values, padding mask), each (cells, L)."""
    rows = []
    for row in counts:
        nonzero = np.nonzero(row > 0)[0]
        if len(nonzero) > max_length - 1:
            if rng is None:
                order = np.lexsort((gene_ids[nonzero], -row[nonzero]))
                nonzero = np.sort(nonzero[order[: max_length - 1]])
            else:
                nonzero = np.sort(rng.choice(nonzero, max_length - 1, replace=False))
        values = bin_values(row[nonzero], n_bins) if len(nonzero) else np.zeros(0)
        rows.append((np.r_[cls_id, gene_ids[nonzero]], np.r_[pad_value, values]))
    length = max(len(genes) for genes, _ in rows)
    genes_out = np.full((len(rows), length), pad_id, dtype=np.int64)
    values_out = np.full((len(rows), length), pad_value, dtype=np.float32)
    for i, (genes, values) in enumerate(rows):
        genes_out[i, : len(genes)] = genes
        values_out[i, : len(values)] = values
    return genes_out, values_out, genes_out == pad_id


def spatial_divisors(counts, gene_ids: np.ndarray, gene_means: dict[int, float]) -> np.ndarray:
    """scGPT-spatial's value scaling, as one divisor per gene column: the slide mean (mean of the
    nonzero counts) times the gene's mean from the release's table; genes the table lacks take
    the mean of their nonzero slide-scaled values here (as the official preprocessing does)."""
    nonzero = counts.data if sp.issparse(counts) else np.asarray(counts)[np.asarray(counts) != 0]
    if len(nonzero) == 0:
        raise FmscopeError("The slide has no nonzero count in the model's genes.", "Check the counts matrix.")
    slide_mean = float(np.mean(nonzero))
    columns = sp.csc_matrix(counts) if sp.issparse(counts) else np.asarray(counts)
    divisors = np.empty(len(gene_ids))
    for j, gene in enumerate(gene_ids):
        if int(gene) in gene_means:
            divisors[j] = slide_mean * gene_means[int(gene)]
        else:
            column = columns[:, j].data if sp.issparse(columns) else columns[:, j][columns[:, j] != 0]
            divisors[j] = float(np.mean(column)) if len(column) else slide_mean  # = slide mean x mean of scaled values
    return divisors


def scgpt_inputs(
    adata: ad.AnnData,
    model: ScGPT,
    vocab: dict[str, int],
    batch_size: int = 32,
    max_length: int | None = None,
    seed: int | None = None,
    cells: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Batches (cell indices, gene ids, binned values, padding mask) of the slide's cells (or of
    ``cells``), streamed; cells of similar length share a batch (less padding, same results)."""
    config = model.config
    ensembl = adata.var["gene_ids"].tolist() if "gene_ids" in adata.var else None
    match = match_genes(list(adata.var_names), vocab, ensembl, warn=False)
    require_coverage(match)
    keep = match.ids >= 0
    counts = adata.X[:, keep]
    gene_ids = match.ids[keep]
    divisors = spatial_divisors(counts, gene_ids, model.gene_means) if model.gene_means is not None else None
    rng = None if seed is None else np.random.default_rng(seed)
    selected = np.arange(adata.n_obs) if cells is None else np.asarray(cells, dtype=int)
    chunk = batch_size * LENGTH_BUCKET_BATCHES
    for start in range(0, len(selected), chunk):
        indices = selected[start : start + chunk]
        block = counts[start : start + chunk] if cells is None else counts[indices]
        block = np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)
        if divisors is not None:
            block = block / divisors
        order = np.argsort(np.count_nonzero(block > 0, axis=1), kind="stable")
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            genes, values, padding = tokenize(
                block[rows],
                gene_ids,
                vocab["<cls>"],
                vocab[config.pad_token],
                config.pad_value,
                config.n_bins,
                max_length or config.max_seq_len,
                rng,
            )
            yield indices[rows], genes, values, padding


def scgpt_embedding(
    adata: ad.AnnData,
    model: ScGPT,
    vocab: dict[str, int],
    batch_size: int = 32,
    max_length: int | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
    normalise: bool = True,
    backend: str | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """L2-normalised (``normalise=False``: raw) <cls> embeddings of every cell, streamed in batches (CPU or GPU).
    ``progress``: told ``(cells done, cells, "embedding cells")`` per batch; raises Cancelled once cancelled.
    ``backend``: the transformer's runtime (``torch`` / ``openvino`` / ``auto``; None: ``$FMSCOPE_BACKEND``, else
    auto = OpenVINO on CPU; :mod:`fmscope.backends.scgpt_encoder`) at ``precision``: ``fp32`` (within fp32 rounding
    of torch) or ``fast`` (OpenVINO only: the CPU's reduced precision, bf16 here, ~3.5x faster, cosine >= 0.99999
    to fp32 in docs/backends.md). Raises FmscopeError for ``fast`` on torch."""
    from fmscope.backends import resolve_backend

    device = torch.device(device) if device is not None else next(model.parameters()).device
    runtime = resolve_backend(backend, device)
    if precision != "fp32" and runtime != "openvino":
        raise FmscopeError(
            f"Precision '{precision}' for scGPT is OpenVINO's; the {runtime} backend runs fp32.",
            "Leave out --fast, or use --backend openvino (CPU).",
        )
    cell_embedding = model.cell_embedding
    if runtime == "openvino":
        from fmscope.backends.scgpt_encoder import OpenVINOCellEmbedding

        cell_embedding = OpenVINOCellEmbedding(model, precision)
    out = np.zeros((adata.n_obs, model.config.d_model), dtype=np.float32)
    progress = as_progress(progress)
    done = 0
    progress.update(done, adata.n_obs, "embedding cells")
    with torch.inference_mode():
        for cells, genes, values, padding in scgpt_inputs(adata, model, vocab, batch_size, max_length, seed):
            out[cells] = (
                cell_embedding(
                    torch.as_tensor(genes, device=device),
                    torch.as_tensor(values, device=device),
                    torch.as_tensor(padding, device=device),
                )
                .float()
                .cpu()
                .numpy()
            )
            done += len(cells)
            progress.update(done, adata.n_obs, "embedding cells")
    if not normalise:
        return out
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.clip(norms, 1e-12, None)


def embed_cells(
    adata: ad.AnnData,
    checkpoint: str | os.PathLike | None = None,
    batch_size: int = 32,
    device: str | None = None,
    progress: Progress | None = None,
    backend: str | None = None,
    precision: str = "fp32",
    note: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, str]:
    """Embed every cell with scGPT (``checkpoint`` folder) or the baseline; store it in
    ``adata.obsm["X_fmscope"]``, the encoder's name in ``adata.uns["fmscope"]["encoder"]`` and, for
    checkpoints with parts fmscope skips, why each is skipped in ``adata.uns["fmscope"]["skipped_weights"]``.
    ``backend`` / ``precision``: scGPT's runtime and precision (:func:`scgpt_embedding`). The vocabulary coverage
    is checked before any cell is embedded (:func:`fmscope.omics.vocab.require_coverage`: too low is refused,
    FmscopeError); a low one is told to ``note`` (the CLI prints it on its own line before the progress bar;
    None: a UserWarning), as are the args.json keys read under another name or from the weights."""
    skipped: list[str] = []
    if checkpoint is not None:
        from fmscope.omics.models.scgpt import load_scgpt

        model, vocab, report = load_scgpt(checkpoint, device=device or "cpu")
        ensembl = adata.var["gene_ids"].tolist() if "gene_ids" in adata.var else None
        match = match_genes(list(adata.var_names), vocab, ensembl, warn=False)
        require_coverage(match)
        if (line := coverage_note(match)) is not None:
            note(line) if note is not None else warnings.warn(line, stacklevel=2)
        embedding = scgpt_embedding(
            adata, model, vocab, batch_size=batch_size, progress=progress, backend=backend, precision=precision
        )
        method = f"scgpt ({report.summary()})"
        for line in report.args_notes:
            note(line) if note is not None else warnings.warn(line, stacklevel=2)
        skipped = report.skipped_explanations()
    else:
        embedding = baseline_embedding(adata)
        method = "baseline (normalised expression -> PCA)"
    adata.obsm[EMBEDDING_KEY] = embedding
    adata.uns["fmscope"] = {**adata.uns.get("fmscope", {}), "encoder": method, "skipped_weights": skipped}
    return embedding, method
