"""Integration figures of joint domains over several sections (``fmscope domains A B ...``).

Run: ``.venv/bin/python benchmarks/multislide.py [--seeds 5] [--checkpoint SCGPT_DIR]``.

1. The real Visium mouse brain sample (sample_data) and a twin of it with a realistic batch effect
   (:mod:`fmscope.omics.batch_effect`: per-gene capture factors, log-normal sigma 0.5, and half the
   sequencing depth, by binomial thinning), one joint run per batch-effect seed: the ARI between each
   spot's domain and its twin's (8 domains), with fmscope's correction (genes centred per section, then
   Harmony) and without any; the scIB-style figures of the first seed for fmscope's embedding, PCA without
   correction and Harmony on that PCA (batch ASW, kNN batch mixing; no labels exist for this slide).
2. Two semi-synthetic sections in one table (real PBMC profiles in four known domains; the second turned by
   180 degrees onto the same positions, as the shared real-world case caseS9): each section's ARI against
   the truth alone and in the joint run, and the AvgBIO figures (NMI, ARI, label ASW) beside batch mixing.

No real multi-slide data with known domains can be had here: the batch effect in (1) and the tissue in (2)
are synthetic where they must be, and the figures say so.
"""

from __future__ import annotations

import argparse
import time
import warnings

import anndata as ad
import numpy as np

from fmscope import samples
from fmscope.metrics import ari
from fmscope.omics import io
from fmscope.omics.batch_effect import twin_slide
from fmscope.omics.domains import spatial_domains
from fmscope.omics.embed import baseline_embedding
from fmscope.omics.integration_metrics import figures_table
from fmscope.omics.multislide import joint_domains, joint_table
from fmscope.omics.synthetic import semi_synthetic_tissue


def visium_twins(seeds: int, checkpoint: str | None) -> None:
    slide = io.read_slide(samples.sample_data_dir() / "visium_mouse_brain")
    a = ad.AnnData(X=slide.adata.X, var=slide.adata.var[[]].copy(), obs=slide.adata.obs[[]].copy())
    a.obsm["spatial"] = np.asarray(slide.adata.obsm["spatial"])
    n = a.n_obs
    print(f"1. Visium mouse brain ({n} spots x {a.n_vars} genes) + its twin (capture sigma 0.5, depth 0.5)")
    print("   seed  twin ARI fmscope  twin ARI no correction  seconds (fmscope run)")
    for seed in range(seeds):
        runs = {}
        for correction in ("harmony", "none"):
            joint, sections = joint_table([a, twin_slide(a, seed=seed)], ["A", "B"])
            start = time.perf_counter()
            result = joint_domains(
                joint, sections, checkpoint, n_domains=8, correction=correction, compare=correction == "harmony"
            )
            domains = joint.obs["fmscope_domain"].to_numpy()
            runs[correction] = (ari(domains[:n], domains[n:]), time.perf_counter() - start, result)
        print(f"   {seed:>4}  {runs['harmony'][0]:>16.3f}  {runs['none'][0]:>22.3f}  {runs['harmony'][1]:>8.1f}")
        if seed == 0:
            first = runs["harmony"][2]
    print(f"   figures, seed 0 ({first.method}):")
    print("   " + figures_table(first.figures).replace("\n", "\n   "))


def two_sections() -> None:
    a, b = semi_synthetic_tissue(side=20, seed=0), semi_synthetic_tissue(side=20, seed=1)
    b.obsm["spatial"] = 19 * 20.0 - b.obsm["spatial"]
    alone = []
    for section in (a.copy(), b.copy()):
        spatial_domains(section, baseline_embedding(section), n_domains=4)
        alone.append(ari(section.obs["true_domain"], section.obs["fmscope_domain"]))
    both = ad.concat([a, b], uns_merge="first")
    sections = np.repeat(["A", "B"], a.n_obs)
    truth = both.obs["true_domain"].to_numpy()
    result = joint_domains(both, sections, n_domains=4, labels=truth)
    print("2. two semi-synthetic sections (real PBMC profiles, 4 known domains) in one table, 400 cells each")
    for i, name in enumerate("AB"):
        rows = sections == name
        together = ari(truth[rows], both.obs["fmscope_domain"].to_numpy()[rows])
        print(f"   section {name}: ARI {alone[i]:.3f} alone, {together:.3f} in the joint run")
    print("   " + figures_table(result.figures).replace("\n", "\n   "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="batch-effect seeds for the Visium twin")
    parser.add_argument("--checkpoint", help="scGPT checkpoint folder for the twin runs (default: baseline)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    visium_twins(args.seeds, args.checkpoint)
    two_sections()


if __name__ == "__main__":
    main()
