"""Semi-synthetic tissue with known domains, built from real single-cell profiles.

No real slide here has domain labels, so figures of domain accuracy use this: real cells
(pbmc68k_reduced, 700 PBMCs with 10 cell-type labels, shipped in sample_data/) are placed on
a square grid split into four domains; each domain draws 80 % of its cells from its own
cell-type group and 20 % from any type (controlled mixing).
"""

from __future__ import annotations

import anndata as ad
import numpy as np

from fmscope import samples

DOMAIN_GROUPS = (
    ("CD14+ Monocyte",),
    ("CD19+ B",),
    ("Dendritic",),
    (
        "CD4+/CD25 T Reg",
        "CD8+ Cytotoxic T",
        "CD8+/CD45RA+ Naive Cytotoxic",
        "CD4+/CD45RO+ Memory",
        "CD4+/CD45RA+/CD25- Naive T",
        "CD56+ NK",
    ),
)


def semi_synthetic_tissue(side: int = 40, purity: float = 0.8, spacing_um: float = 20.0, seed: int = 0) -> ad.AnnData:
    """A side x side grid of real cells in 4 quadrant domains; truth in ``obs["true_domain"]``."""
    reference = ad.read_h5ad(samples.sample_data_dir() / "pbmc68k_reduced.h5ad")
    expression = np.expm1(reference.raw.X.toarray() if hasattr(reference.raw.X, "toarray") else reference.raw.X)
    types = reference.obs["bulk_labels"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:side, 0:side]
    domain = (ys >= side // 2).astype(int) * 2 + (xs >= side // 2).astype(int)
    picks, cell_types = [], []
    for d in domain.ravel():
        pool = np.nonzero(np.isin(types, DOMAIN_GROUPS[d]))[0] if rng.random() < purity else np.arange(len(types))
        pick = rng.choice(pool)
        picks.append(pick)
        cell_types.append(types[pick])
    tissue = ad.AnnData(
        X=np.round(expression[picks], 2).astype(np.float32), var={"gene": reference.raw.var_names.to_numpy()}
    )
    tissue.var_names = reference.raw.var_names
    tissue.obs["true_domain"] = domain.ravel().astype(str)
    tissue.obs["cell_type"] = cell_types
    tissue.obsm["spatial"] = np.c_[xs.ravel(), ys.ravel()].astype(float) * spacing_um
    tissue.uns["fmscope"] = {"microns_per_unit": 1.0}
    return tissue


def annotate_blocks(tissue: ad.AnnData, block: int = 5, spacing_um: float = 20.0) -> np.ndarray:
    """What a user would paint: two ``block`` x ``block`` squares inside each quadrant domain,
    named by the true domain; '' elsewhere (the rest of the slide is not annotated)."""
    grid = np.round(np.asarray(tissue.obsm["spatial"]) / spacing_um).astype(int)
    side = int(grid.max()) + 1
    truth = tissue.obs["true_domain"].astype(str).to_numpy()
    labels = np.full(tissue.n_obs, "", dtype=object)
    for centre_x in (side // 4, 3 * side // 4):
        for centre_y in (side // 4, 3 * side // 4):
            for offset_x, offset_y in ((-block - 1, -block - 1), (1, 1)):
                x0, y0 = centre_x + offset_x, centre_y + offset_y
                inside = (grid[:, 0] >= x0) & (grid[:, 0] < x0 + block) & (grid[:, 1] >= y0) & (grid[:, 1] < y0 + block)
                labels[inside] = truth[inside]
    return labels.astype(str)


def large_synthetic_slide(
    n_cells: int = 1_000_000, n_genes: int = 20, n_domains: int = 6, spacing_um: float = 10.0, seed: int = 0
) -> ad.AnnData:
    """A slide of ``n_cells`` cells (jittered grid, ``spacing_um`` apart) in concentric ring domains.

    Counts are Poisson draws from one expression profile per domain (sparse). The true domain is
    in ``obs["true_domain"]`` and, as a saved result would have it, in ``obs["fmscope_domain"]``.
    For scale tests (opening, drawing, panning); not for accuracy figures.
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_cells)))
    index = np.arange(n_cells)
    xy = np.c_[index % side, index // side].astype(np.float64) + rng.uniform(-0.3, 0.3, (n_cells, 2))
    radius = np.hypot(*(xy - side / 2).T) / (side / 2 * np.sqrt(2))
    domain = np.minimum((radius * n_domains).astype(int), n_domains - 1)
    profiles = rng.gamma(2.0, 2.0, (n_domains, n_genes))
    counts = sp.csr_matrix(rng.poisson(profiles[domain]).astype(np.float32))
    slide = ad.AnnData(X=counts)
    slide.var_names = [f"gene{i}" for i in range(n_genes)]
    slide.obs_names = [f"cell{i}" for i in range(n_cells)]
    slide.obs["true_domain"] = domain.astype(str)
    slide.obs["fmscope_domain"] = domain.astype(str)
    slide.obsm["spatial"] = xy * spacing_um
    slide.uns["fmscope"] = {"microns_per_unit": 1.0}
    return slide
