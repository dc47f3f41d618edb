"""Domains of several sections at once: one embedding space, neighbours within each section, shared domains.

Sections come as several slides (:func:`joint_table` stacks their counts on the genes they share) or as
one table with a section column (:func:`section_labels`, e.g. ``obs["library_id"]``). :func:`joint_domains`
embeds all cells together with the batch effect between sections corrected (:mod:`fmscope.omics.integrate`),
smooths each cell over its spatial neighbours **within its own section** and clusters all sections in
one Leiden run, so a domain means the same tissue in every section; it also returns the integration
figures (:mod:`fmscope.omics.integration_metrics`) of that embedding beside PCA without correction and
Harmony on that PCA. :func:`spread` writes the joint results back into each slide's own table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from fmscope.errors import FmscopeError
from fmscope.omics.domains import DOMAIN_KEY, chosen_domains, smooth_embedding, spatial_domains
from fmscope.omics.embed import EMBEDDING_KEY
from fmscope.omics.gene_match import exact_shared
from fmscope.omics.integrate import check_correction, harmony, scgpt_batch_note, section_centred_pca
from fmscope.omics.integration_metrics import integration_figures
from fmscope.omics.sections import require_sections
from fmscope.progress import Progress

MIN_SHARED_GENES = 10
FMSCOPE_ROW, PCA_ROW, HARMONY_ROW = "fmscope", "PCA, no correction", "Harmony on PCA"
SMOOTHED_KEY = "X_fmscope_smoothed"


@dataclass
class JointDomains:
    """What a joint run chose and measured: the resolution, the encoder, figures per embedding, notes."""

    resolution: float
    method: str
    figures: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)


def section_labels(adata: ad.AnnData, key: str | None, name: str) -> np.ndarray | None:
    """(cells,) section labels of one table: from obs[``key``] when given (refused when absent or incomplete),
    else the section column found by :func:`fmscope.omics.sections.require_sections` (None: one section)."""
    if key is None:
        return require_sections(adata, name)
    if key not in adata.obs.columns:
        columns = ", ".join(map(str, list(adata.obs.columns)[:12])) or "none"
        raise FmscopeError(
            f"{name} has no obs column '{key}' to tell its sections apart (columns: {columns}).",
            "Give --section-key the column naming each cell's section (e.g. library_id).",
        )
    values = adata.obs[key]
    if values.isna().any():
        raise FmscopeError(
            f"obs['{key}'] of {name} names no section for {int(values.isna().sum())} cells.",
            f"Fill obs['{key}'] for every cell, or drop those cells.",
        )
    return values.astype(str).to_numpy()


def joint_table(
    tables: Sequence[ad.AnnData], names: Sequence[str], section_key: str | None = None
) -> tuple[ad.AnnData, np.ndarray]:
    """(one table of all cells on the genes every table has, (cells,) section labels).

    The joint table holds counts (X, sparse float32), ``obsm["spatial"]`` (microns) and obs names
    ``"<name>:<cell>"``; rows are the tables' rows in order. A table holding several sections itself gives
    ``"<name>/<section>"`` labels. Fewer than ``MIN_SHARED_GENES`` shared genes are refused.
    """
    shared = pd.Index(tables[0].var_names.astype(str))
    for name, table in zip(names[1:], tables[1:]):
        exact_shared(list(shared), list(table.var_names.astype(str)), names[0], name)  # refuses case-only matches
        shared = shared.intersection(pd.Index(table.var_names.astype(str)), sort=False)
    if len(shared) < MIN_SHARED_GENES:
        sizes = ", ".join(f"{name} {table.n_vars}" for name, table in zip(names, tables))
        raise FmscopeError(
            f"The slides share {len(shared)} genes ({sizes}); joint domains need at least {MIN_SHARED_GENES}.",
            "Give slides measured with the same gene panel (same gene names).",
        )
    blocks, sections, obs_names = [], [], []
    for name, table in zip(names, tables):
        columns = pd.Index(table.var_names.astype(str)).get_indexer(shared)
        blocks.append(sp.csr_matrix(table.X[:, columns], dtype=np.float32))
        inner = section_labels(table, section_key, name)
        sections.append(np.full(table.n_obs, name) if inner is None else np.char.add(f"{name}/", inner.astype(str)))
        obs_names += [f"{name}:{cell}" for cell in table.obs_names]
    joint = ad.AnnData(X=sp.vstack(blocks).tocsr(), var=pd.DataFrame(index=shared), obs=pd.DataFrame(index=obs_names))
    joint.obsm["spatial"] = np.vstack([np.asarray(t.obsm["spatial"], dtype=float)[:, :2] for t in tables])
    return joint, np.concatenate(sections).astype(str)


def _embedding(adata, sections, checkpoint, correction, batch_size, device, progress, seed):
    """(corrected embedding, plain PCA or None, encoder name, notes)."""
    if checkpoint is not None:
        from fmscope.omics.embed import embed_cells

        embedding, method = embed_cells(adata, checkpoint, batch_size=batch_size, device=device, progress=progress)
        notes = [scgpt_batch_note(adata.uns["fmscope"].get("skipped_weights", []))]
        if correction == "harmony":
            return harmony(embedding, sections, seed), None, f"{method} + Harmony by section", notes
        return embedding, None, method, notes
    plain = section_centred_pca(adata, sections, centre=False, seed=seed)
    if correction == "none":
        return plain, plain, "baseline (normalised expression -> PCA), no batch correction", []
    centred = section_centred_pca(adata, sections, seed=seed)
    return harmony(centred, sections, seed), plain, "baseline (genes centred per section -> PCA) + Harmony", []


def _domains_of(adata, embedding, sections, resolutions, n_domains, seed) -> tuple[np.ndarray, np.ndarray]:
    """(smoothed embedding, domains) of a comparison embedding, chosen as for fmscope's own."""
    coords = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
    smoothed = smooth_embedding(coords, embedding, sections=sections)
    labels, chosen = chosen_domains(smoothed, resolutions, n_domains, seed)
    return smoothed, labels[chosen]


def joint_domains(
    adata: ad.AnnData,
    sections: np.ndarray,
    checkpoint: str | None = None,
    n_domains: int | None = None,
    resolutions: Sequence[float] = (0.2, 0.4, 0.6, 1.0),
    correction: str = "harmony",
    labels: np.ndarray | None = None,
    compare: bool = True,
    batch_size: int = 32,
    device: str | None = None,
    progress: Progress | None = None,
    seed: int = 0,
) -> JointDomains:
    """Domains shared across the ``sections`` ((cells,) labels) of ``adata``, written into it as
    :func:`fmscope.omics.domains.spatial_domains` writes them (``obs["fmscope_domain"]``, one column per
    resolution, ``obsm["X_fmscope"]`` the corrected embedding, ``obsm["X_fmscope_smoothed"]``).

    ``correction``: ``"harmony"`` (default; see :mod:`fmscope.omics.integrate`) or ``"none"``. With
    ``compare`` the figures of PCA without correction and Harmony on it are computed too (their domains
    clustered alike when ``labels``, (cells,) known labels, are given; else their batch figures are
    grouped by fmscope's domains). ``progress`` is told the cells embedded (scGPT) and raises
    :class:`fmscope.errors.Cancelled` once cancelled.
    """
    check_correction(correction)
    sections = np.asarray(sections).astype(str)
    embedding, plain, method, notes = _embedding(
        adata, sections, checkpoint, correction, batch_size, device, progress, seed
    )
    adata.obsm[EMBEDDING_KEY] = embedding
    adata.uns["fmscope"] = {**(adata.uns.get("fmscope") or {}), "encoder": method}
    resolutions = tuple(resolutions)
    chosen = spatial_domains(adata, embedding, resolutions, n_domains=n_domains, seed=seed, sections=sections)
    domains = adata.obs[DOMAIN_KEY].to_numpy()
    figures = {FMSCOPE_ROW: integration_figures(adata.obsm[SMOOTHED_KEY], sections, domains, labels, seed)}
    if compare:
        if plain is None:
            plain = section_centred_pca(adata, sections, centre=False, seed=seed)
        for row, other in ((PCA_ROW, plain), (HARMONY_ROW, harmony(plain, sections, seed))):
            if labels is not None:
                smoothed, clusters = _domains_of(adata, other, sections, resolutions, n_domains, seed)
            else:
                smoothed, clusters = (
                    smooth_embedding(np.asarray(adata.obsm["spatial"], dtype=float)[:, :2], other, sections=sections),
                    domains,
                )
            figures[row] = integration_figures(smoothed, sections, clusters, labels, seed)
    return JointDomains(chosen, method, figures, notes)


def spread(joint: ad.AnnData, tables: Sequence[ad.AnnData]) -> None:
    """Copy the joint run's per-cell results (fmscope's obs columns and embeddings) into each table, whose rows
    are, in order, the joint table's rows (:func:`joint_table`)."""
    columns = [c for c in joint.obs.columns if str(c).startswith(DOMAIN_KEY)]
    start = 0
    for table in tables:
        rows = slice(start, start + table.n_obs)
        for column in columns:
            table.obs[column] = joint.obs[column].to_numpy()[rows]
        for key in (EMBEDDING_KEY, SMOOTHED_KEY):
            table.obsm[key] = joint.obsm[key][rows]
        table.uns["fmscope"] = {**(table.uns.get("fmscope") or {}), "encoder": joint.uns["fmscope"]["encoder"]}
        start += table.n_obs


def label_agreement(adata: ad.AnnData, key: str) -> str:
    """'NMI x, ARI y' of ``obs["fmscope_domain"]`` against the known labels in obs[``key``] (one section)."""
    from fmscope.metrics import ari, nmi

    if key not in adata.obs.columns:
        raise FmscopeError(f"The slide has no obs column '{key}' (--label-key).", "Give a column of known labels.")
    truth, domains = adata.obs[key].astype(str), adata.obs[DOMAIN_KEY].astype(str)
    return f"domains vs obs['{key}']: NMI {nmi(truth, domains):.3f}, ARI {ari(truth, domains):.3f}"
