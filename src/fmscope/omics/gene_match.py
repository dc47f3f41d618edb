"""Which genes of two tables (slide, single-cell reference, a model's genes, genes a user names) are the same gene.

The same gene is the same symbol, written exactly alike (the counts readers already drop Ensembl version
suffixes and take symbols from ``var`` where a file has both, :mod:`fmscope.omics.expression`). Case is not
ignored: human symbols are upper case (CD3E), mouse and rat symbols capitalised (Cd3e), so genes that match only
when case is ignored are most often two species (a human reference on a mouse slide), and tools that upper-case
mouse genes to meet human lists are reported to give wrong results (GreenleafLab/ArchR#358,
samuel-marsh/scCustomize#202). Two tables whose genes mostly match only by case are refused, naming examples;
a few such genes beside many exact matches are simply not shared (not matched).

scGPT's vocabulary is the one exception, documented there (:mod:`fmscope.omics.vocab`): a mouse symbol meets its
human ortholog by case, as scGPT's own users map them, and the count of such matches is said.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from fmscope.errors import FmscopeError

ENSEMBL_ID = re.compile(r"^ENS[A-Z]*G\d{6,}")


def case_only_matches(a: Sequence[str], b: Sequence[str]) -> list[tuple[str, str]]:
    """(gene of ``a``, gene of ``b``) pairs equal when case is ignored but not written alike (``a``'s order);
    genes of ``a`` written exactly as in ``b`` are not listed."""
    exact = set(b)
    lower: dict[str, str] = {}
    for gene in b:
        lower.setdefault(gene.lower(), gene)
    return [(g, lower[g.lower()]) for g in a if g not in exact and g.lower() in lower]


def exact_shared(a: Sequence[str], b: Sequence[str], name_a: str, name_b: str) -> list[str]:
    """Genes of ``a`` written exactly alike in ``b``, in ``a``'s order (possibly none). FmscopeError when more genes
    match only by case than exactly (another species, or the files write genes in two conventions)."""
    exact = set(b)
    shared = [g for g in a if g in exact]
    by_case = case_only_matches(a, b)
    if len(by_case) > len(shared):
        examples = ", ".join(f"'{x}' in {name_a} vs '{y}' in {name_b}" for x, y in by_case[:3])
        raise FmscopeError(
            f"The genes of {name_a} and {name_b} match only when case is ignored: {len(by_case)} genes ({examples}) "
            f"against {len(shared)} written alike. Human symbols are upper case (CD3E), mouse and rat symbols "
            "capitalised (Cd3e): the two are most likely of different species, and fmscope matches genes by their "
            "exact symbol.",
            "Use a reference of the slide's species; if both are of one species written in two cases, rename the "
            "genes of one file as the other writes them (or map orthologs explicitly).",
        )
    return shared


def shared_genes(
    a: Sequence[str], b: Sequence[str], name_a: str = "the slide", name_b: str = "the reference"
) -> list[str]:
    """:func:`exact_shared`, refused (FmscopeError) when no gene is shared."""
    shared = exact_shared(a, b, name_a, name_b)
    if not shared:
        ids_a, ids_b = _ensembl_share(a), _ensembl_share(b)
        naming = (
            f" ({name_a} names genes by {'Ensembl id' if ids_a > 0.5 else 'symbol'} (e.g. {a[0]}), {name_b} by "
            f"{'Ensembl id' if ids_b > 0.5 else 'symbol'} (e.g. {b[0]}))"
            if (ids_a > 0.5) != (ids_b > 0.5) and a and b
            else ""
        )
        raise FmscopeError(
            f"{name_a[0].upper() + name_a[1:]} and {name_b} share no gene{naming}.",
            "Use a reference of the same species, with gene symbols as names (a file of Ensembl ids gets its "
            "symbols from a var column such as 'gene_symbols' or 'feature_name').",
        )
    return shared


def _ensembl_share(names: Sequence[str]) -> float:
    """Fraction of ``names`` that are Ensembl gene ids (ENSG..., ENSMUSG...)."""
    return sum(bool(ENSEMBL_ID.match(str(n))) for n in names) / max(len(names), 1)


def columns(names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Column indices of the ``wanted`` genes in ``names`` (exact symbols; each of ``wanted`` must be there)."""
    index = {g: i for i, g in enumerate(names)}
    return np.array([index[g] for g in wanted], dtype=np.int64)


def require_genes(wanted: Sequence[str], names: Sequence[str], lacks: str, fix: str) -> None:
    """Refuse (FmscopeError: ``lacks`` + the genes, e.g. 'The slide has no gene Xist') genes of ``wanted`` that
    ``names`` lacks, saying where one is written in another case (genes are matched exactly: 'GFAP' is not
    'Gfap')."""
    known = set(names)
    unknown = [g for g in wanted if g not in known]
    if not unknown:
        return
    by_case = case_only_matches(unknown, names)
    hint = (
        f" ({', '.join(f'{x!r} is written {y!r} there' for x, y in by_case[:3])}: genes are matched by their exact "
        "symbol, and case tells species apart: GFAP human, Gfap mouse)"
        if by_case
        else ""
    )
    raise FmscopeError(f"{lacks} {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}{hint}.", fix)
