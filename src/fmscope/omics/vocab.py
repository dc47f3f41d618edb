"""Map a panel's genes to a model vocabulary and report coverage.

Matching, in order: exact symbol; case-insensitive symbol (this also maps mouse symbols to
their human orthologs where the ortholog keeps the symbol, e.g. Actb -> ACTB, the usual
one-to-one case); an Ensembl-id column when the AnnData has one and the vocabulary holds ids;
then aliases: the HGNC renames of 2020 that newer panels and older vocabularies disagree on
(SEPT1-14 <-> SEPTIN1-14, MARCH1-11 <-> MARCHF1-11, the gene symbols spreadsheets turned into
dates) in either direction, plus any ``aliases`` the caller gives (alias -> symbol).
Two panel genes never map to the same vocabulary entry (the second is reported unmatched).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LOW_COVERAGE = 0.5
# A model run on a panel of which less than LOW_COVERAGE matched and fewer than MIN_MATCHED_GENES genes: refused
# (:func:`require_coverage`): the names most likely do not follow the vocabulary (Ensembl ids, another species'
# symbols; scGPT#117), the few matches are accidental and the embedding would describe a handful of genes. scGPT's
# own corpus builder refuses a table below 90 % ("are not in vocab. Please check if using the correct vocab and
# token_col", scgpt/scbank/databank.py); its tutorials drop the unmatched genes and go on (scGPT#90): below
# NOTE_COVERAGE the coverage is said, on a line of its own.
MIN_MATCHED_GENES = 20
NOTE_COVERAGE = 0.9
RENAMED_FAMILIES = (("SEPT", "SEPTIN"), ("MARCH", "MARCHF"))  # HGNC 2020: old prefix + number <-> new


def symbol_aliases(gene: str) -> list[str]:
    """Other names of ``gene`` in the renamed families (SEPT7 <-> SEPTIN7, March1 <-> MARCHF1)."""
    upper = str(gene).upper()
    names = []
    for old, new in RENAMED_FAMILIES:
        for source, target in ((new, old), (old, new)):
            found = re.fullmatch(rf"{source}(\d+)", upper)
            if found:
                names.append(f"{target}{found.group(1)}")
    return names


@dataclass
class VocabMatch:
    """Vocabulary id per panel gene (-1 = unmatched) and how each was found."""

    ids: np.ndarray
    how: list[str]
    genes: list[str]

    @property
    def n_matched(self) -> int:
        return int((self.ids >= 0).sum())

    @property
    def coverage(self) -> float:
        return self.n_matched / max(len(self.genes), 1)

    def report(self, show: int = 20) -> str:
        """A human-readable coverage report."""
        unmatched = [g for g, i in zip(self.genes, self.ids) if i < 0]
        kinds = {kind: self.how.count(kind) for kind in ("exact", "case-insensitive", "ensembl", "alias")}
        return (
            f"{self.n_matched}/{len(self.genes)} panel genes matched the vocabulary ({self.coverage:.0%}: "
            f"{kinds['exact']} exact, {kinds['case-insensitive']} by case / ortholog symbol, "
            f"{kinds['ensembl']} by Ensembl id, {kinds['alias']} by alias); "
            f"unmatched: {', '.join(unmatched[:show]) or 'none'}"
            + (f" (+{len(unmatched) - show} more)" if len(unmatched) > show else "")
        )


def require_coverage(match: VocabMatch) -> None:
    """Refuse (FmscopeError) a match no model run should rest on: no gene, or below ``LOW_COVERAGE`` of the panel
    with fewer than ``MIN_MATCHED_GENES`` genes (see the constants)."""
    from fmscope.errors import FmscopeError

    if match.n_matched == 0 or (match.coverage < LOW_COVERAGE and match.n_matched < MIN_MATCHED_GENES):
        raise FmscopeError(
            (
                "No gene of the slide is in the model's vocabulary"
                if match.n_matched == 0
                else "Too few of the slide's "
                f"genes are in the model's vocabulary for a meaningful embedding (vocabulary coverage "
                f"{match.coverage:.0%}, under {LOW_COVERAGE:.0%} with fewer than {MIN_MATCHED_GENES} genes)"
            )
            + f": {match.report(show=10)}.",
            "Name the genes as the vocabulary does (symbols; Ensembl ids in var['gene_ids'] are matched too), use "
            "the model of the slide's species, or leave out --checkpoint for the baseline encoder.",
        )


def coverage_note(match: VocabMatch) -> str | None:
    """A line saying the coverage when it is below ``NOTE_COVERAGE`` or when genes matched only by case (another
    species' symbols taken as their orthologs': never silently, :mod:`fmscope.omics.gene_match`), else None."""
    by_case = [g for g, kind in zip(match.genes, match.how) if kind == "case-insensitive"]
    case_line = (
        f"{len(by_case)} of {len(match.genes)} genes matched the vocabulary only by case (e.g. "
        f"{', '.join(by_case[:3])}): another species' symbols (mouse Cd3e) are taken as the human ortholog's "
        "(CD3E) where the symbol is kept; other genes of that species are not in the vocabulary."
        if by_case
        else ""
    )
    if match.coverage >= NOTE_COVERAGE:
        return case_line or None
    line = f"Vocabulary coverage {match.coverage:.0%}: {match.report(show=10)}; unmatched genes are left out."
    return f"{line} {case_line}".strip()


def match_genes(
    genes: Sequence[str],
    vocab: dict[str, int],
    ensembl_ids: Sequence[str] | None = None,
    warn: bool = True,
    aliases: Mapping[str, str] | None = None,
) -> VocabMatch:
    """Match panel ``genes`` to ``vocab``; warns (``warn``) when coverage is below 50 %."""
    lower = {}
    for token, index in vocab.items():
        lower.setdefault(token.lower(), index)
    ids, how, used = np.full(len(genes), -1, dtype=np.int64), [], set()
    for position, gene in enumerate(genes):
        candidates = [("exact", vocab.get(gene)), ("case-insensitive", lower.get(str(gene).lower()))]
        if ensembl_ids is not None:
            candidates.append(("ensembl", vocab.get(str(ensembl_ids[position]).split(".")[0])))
        other_names = [*([aliases[gene]] if aliases and gene in aliases else []), *symbol_aliases(gene)]
        candidates += [("alias", lower.get(name.lower())) for name in other_names]
        kind, index = next(((k, i) for k, i in candidates if i is not None and i not in used), ("none", None))
        if index is not None:
            ids[position] = index
            used.add(index)
        how.append(kind)
    match = VocabMatch(ids, how, [str(g) for g in genes])
    if warn and match.coverage < LOW_COVERAGE:
        warnings.warn(f"Low vocabulary coverage: {match.report(show=10)}", stacklevel=2)
    return match


def slide_note(adata, vocab: dict[str, int]) -> str | None:
    """:func:`coverage_note` for the genes of ``adata`` (var names, Ensembl ids in ``var['gene_ids']``) against an
    scGPT ``vocab``: what every step that runs scGPT on a slide says before it starts."""
    ensembl = adata.var["gene_ids"].tolist() if "gene_ids" in adata.var else None
    return coverage_note(match_genes(list(adata.var_names), vocab, ensembl, warn=False))
