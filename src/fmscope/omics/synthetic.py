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
    ("CD4+/CD25 T Reg", "CD8+ Cytotoxic T", "CD8+/CD45RA+ Naive Cytotoxic", "CD4+/CD45RO+ Memory",
     "CD4+/CD45RA+/CD25- Naive T", "CD56+ NK"),
)


def semi_synthetic_tissue(side: int = 40, purity: float = 0.8, spacing_um: float = 20.0,
                          seed: int = 0) -> ad.AnnData:
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
    tissue = ad.AnnData(X=np.round(expression[picks], 2).astype(np.float32),
                        var={"gene": reference.raw.var_names.to_numpy()})
    tissue.var_names = reference.raw.var_names
    tissue.obs["true_domain"] = domain.ravel().astype(str)
    tissue.obs["cell_type"] = cell_types
    tissue.obsm["spatial"] = np.c_[xs.ravel(), ys.ravel()].astype(float) * spacing_um
    return tissue
