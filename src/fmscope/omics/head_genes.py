"""A baseline head's genes that the slide it is applied to lacks: estimated from the genes present, said, bounded.

A head trained on one slide is applied to the next slide "of the same panel", but files of one panel rarely
carry the same gene list (scanpy's ``filter_genes`` / highly-variable subsetting, Xenium add-on panels,
Space Ranger reference versions). Filling the absent genes with zeros moves every cell along the components
they load on: ten marker genes of sixty absent put every cell of a two-region slide in one domain
(theislab/scarches#61 makes zero filling an explicit option for the same reason). Instead the embedding is
the least-squares fit of the present genes to the encoder's components (the PCA projection of a profile
with missing values; ridge ``RIDGE`` so that components the present genes barely carry stay near the training
mean, never amplified), and the run says how many and which genes are absent.

The bound: the share of the head's feature variance the present genes carry, each component's variance
(the head's ``feature_std`` squared, measured on the training slide) times the part of its squared loadings
on the present genes. Below ``MIN_CARRIED`` the head's inputs are mostly guessed and the slide is refused
naming the genes (the fix: the head's genes, or a head trained on this slide's genes).

An scGPT head (which keeps its training slide's genes) embeds each cell from the genes present, the absent ones
taken as not expressed: said the same way (:func:`scgpt_judge`), refused below half of them.
"""

from __future__ import annotations

import numpy as np

from fmscope.errors import FmscopeError

MIN_CARRIED = 2 / 3  # share of the head's feature variance the present genes must carry
RIDGE = 0.1  # regularisation of the least-squares fit (components have unit norm)
NAMED = 8  # genes named in messages


def carried_share(components: np.ndarray, present: np.ndarray, feature_std: np.ndarray) -> float:
    """Share (0-1) of the head's feature variance carried by the ``present`` genes (bool, (genes,)):
    ``components`` (genes, dims) orthonormal columns, ``feature_std`` (dims,) the head's feature spread."""
    weight = np.asarray(feature_std, dtype=np.float64) ** 2
    loading = (components[present] ** 2).sum(axis=0)
    return float((weight * loading).sum() / weight.sum())


def projection(components: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(present genes, dims) matrix taking centred expression of the present genes to the embedding:
    ridge least squares of ``components[present]``; with every gene present, ``components`` itself."""
    part = components[present]
    if present.all():
        return part
    gram = part.T @ part + RIDGE * np.eye(part.shape[1])
    return part @ np.linalg.inv(gram)


def judge(genes: list[str], present: np.ndarray, components: np.ndarray, feature_std: np.ndarray, head: str) -> str:
    """The note saying which of the head's ``genes`` the slide lacks (``present``: bool per gene), or '' when
    none; raises FmscopeError when the present genes carry less than ``MIN_CARRIED`` of its feature variance."""
    missing = [g for g, here in zip(genes, present) if not here]
    if not missing:
        return ""
    share = carried_share(components, present, feature_std)
    named = ", ".join(missing[:NAMED]) + (", ..." if len(missing) > NAMED else "")
    said = f"The slide lacks {len(missing)} of the {len(genes)} genes of the head {head} ({named})"
    if share < MIN_CARRIED:
        raise FmscopeError(
            f"{said}; the genes present carry {share:.0%} of the head's feature variance "
            f"(at least {MIN_CARRIED:.0%} needed), so its domains would be guesses.",
            "Give the slide with the head's genes (the same panel, unfiltered), or train a head on this slide's genes.",
        )
    return (
        f"{said}: not taken as 0; the cells' embedding is fitted from the {int(present.sum())} genes present, "
        f"which carry {share:.0%} of the head's feature variance."
    )


def scgpt_judge(genes: list[str], adata, head: str) -> str:
    """The note naming the genes of an scGPT head's training slide that ``adata`` lacks ('' when none);
    FmscopeError when it holds fewer than half of them."""
    names = set(map(str, adata.var_names))
    missing = [g for g in genes if g not in names]
    if not missing:
        return ""
    named = ", ".join(missing[:NAMED]) + (", ..." if len(missing) > NAMED else "")
    said = f"The slide lacks {len(missing)} of the {len(genes)} genes the head {head} was trained on ({named})"
    if 2 * len(missing) > len(genes):
        raise FmscopeError(
            f"{said}: fewer than half of them are left, so its domains would be guesses.",
            "Give the slide with the head's genes (the same panel, unfiltered), or train a head on this slide's genes.",
        )
    return f"{said}: scGPT embeds its cells from the genes present, the absent ones counting as not expressed."
