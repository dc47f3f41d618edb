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
