"""Spatial-omics figures: domain accuracy per encoder on the semi-synthetic tissue, embedding
throughput, peak memory. Run: ``.venv/bin/python benchmarks/omics.py [--checkpoint SCGPT_DIR]``;
``--large N`` instead times baseline embedding + domains, stage by stage, on an N-cell synthetic slide;
``--compare N`` times fmscope's domains against the library calls fmscope made before its domains
were reworked for scale (squidpy graph, scanpy exact neighbours, scanpy Leiden per resolution),
in one process, and prints the ARI between their labels at each resolution.

The semi-synthetic tissue is built from real PBMC profiles placed into four known domains
(fmscope.omics.synthetic); no real slide here has domain labels. Without ``--checkpoint`` the
scGPT rows use tests/fixtures/scgpt_tiny (random weights: a throughput figure, not an accuracy one).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fmscope.metrics import ari, nmi
from fmscope.omics.domains import leiden_labels, neighbour_graph, smooth_embedding, spatial_domains
from fmscope.omics.embed import baseline_embedding, scgpt_embedding
from fmscope.omics.models.scgpt import load_scgpt
from fmscope.omics.synthetic import annotate_blocks, large_synthetic_slide, semi_synthetic_tissue

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "scgpt_tiny"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, help="official scGPT checkpoint folder")
    parser.add_argument("--large", type=int, metavar="N", help="only time an N-cell synthetic slide")
    parser.add_argument(
        "--compare",
        type=int,
        metavar="N",
        help="only compare domains with the earlier library calls on an N-cell synthetic slide",
    )
    args = parser.parse_args()
    if args.large:
        large_slide_figures(args.large)
        return
    if args.compare:
        compare_with_earlier_domains(args.compare)
        return
    tissue = semi_synthetic_tissue()
    truth = tissue.obs["true_domain"]
    started = time.perf_counter()
    baseline = baseline_embedding(tissue)
    print(f"semi-synthetic tissue: {tissue.n_obs} cells x {tissue.n_vars} genes, 4 domains")
    print(f"baseline embedding: {tissue.n_obs / (time.perf_counter() - started):.0f} cells/s")
    for name, smoothing in (("baseline, expression only", 0.0), ("baseline + spatial smoothing", 0.5)):
        spatial_domains(tissue, baseline, n_domains=4, smoothing=smoothing)
        print(
            f"{name}: ARI {ari(truth, tissue.obs['fmscope_domain']):.3f}, "
            f"NMI {nmi(truth, tissue.obs['fmscope_domain']):.3f}"
        )
    model, vocab, report = load_scgpt(args.checkpoint or FIXTURE)
    started = time.perf_counter()
    embedding = scgpt_embedding(tissue, model, vocab, batch_size=32)
    seconds = time.perf_counter() - started
    label = "scGPT" if args.checkpoint else "scGPT (tiny random fixture)"
    print(f"{label} embedding: {tissue.n_obs / seconds:.0f} cells/s on CPU ({report.summary()})")
    if args.checkpoint:
        spatial_domains(tissue, embedding, n_domains=4)
        print(
            f"scGPT + spatial smoothing: ARI {ari(truth, tissue.obs['fmscope_domain']):.3f}, "
            f"NMI {nmi(truth, tissue.obs['fmscope_domain']):.3f}"
        )
    finetune_figures()
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def large_slide_figures(cells: int) -> None:
    """Baseline embedding, then the stages of ``spatial_domains`` (smoothing, kNN graph, Leiden at
    resolution 0.2) timed one by one on a large synthetic slide: wall seconds, and CPU seconds of all
    threads (the steadier figure on a shared machine)."""
    slide = large_synthetic_slide(cells)
    clock = [(time.perf_counter(), time.process_time())]

    def lap() -> str:
        clock.append((time.perf_counter(), time.process_time()))
        return f"{clock[-1][0] - clock[-2][0]:.1f} s (CPU {clock[-1][1] - clock[-2][1]:.1f} s)"

    embedding = baseline_embedding(slide)
    embedded = lap()
    coords = np.asarray(slide.obsm["spatial"], dtype=float)[:, :2]
    smoothed = smooth_embedding(coords, embedding)
    smoothing = lap()
    graph = neighbour_graph(smoothed)
    knn = lap()
    labels = leiden_labels(graph, (0.2,))[0.2]
    leiden = lap()
    print(
        f"{cells} cells: embedding {embedded}, domains {clock[-1][0] - clock[1][0]:.1f} s "
        f"(CPU {clock[-1][1] - clock[1][1]:.1f} s): smoothing {smoothing}, kNN graph {knn}, Leiden {leiden}; "
        f"ARI {ari(slide.obs['true_domain'], labels):.3f}, "
        f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


def earlier_neighbours(slide, embedding: np.ndarray):
    """The graph fmscope's domains built before the rework, with the same library calls: squidpy's
    spatial kNN graph for smoothing, then scanpy's neighbours with sklearn's exact kNN (scanpy's own
    pynndescent path fails with scipy 1.17). Returns the AnnData scanpy's Leiden reads."""
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp
    import squidpy as sq
    from sklearn.neighbors import KNeighborsTransformer

    class ExactKNN(KNeighborsTransformer):
        def fit_transform(self, X, y=None):
            return sp.csr_matrix(super().fit_transform(X))

    holder = ad.AnnData(X=np.zeros((slide.n_obs, 1), dtype=np.float32), obsm={"spatial": slide.obsm["spatial"]})
    sq.gr.spatial_neighbors_knn(holder, n_neighs=6)
    adjacency = sp.csr_matrix(holder.obsp["spatial_connectivities"], dtype=np.float32)
    walk = sp.diags(1.0 / np.clip(np.asarray(adjacency.sum(axis=1)).ravel(), 1, None)) @ adjacency
    smoothed = embedding.astype(np.float32)
    for _ in range(2):
        smoothed = 0.5 * smoothed + 0.5 * (walk @ smoothed)
    work = ad.AnnData(X=np.zeros((slide.n_obs, 1), dtype=np.float32), obsm={"X_use": smoothed})
    sc.pp.neighbors(
        work, use_rep="X_use", n_neighbors=15, random_state=0, transformer=ExactKNN(n_neighbors=15, mode="distance")
    )
    return work


def earlier_leiden(work, resolutions: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """scanpy's igraph Leiden once per resolution, as fmscope called it before the rework."""
    import scanpy as sc

    labels = {}
    for resolution in resolutions:
        sc.tl.leiden(
            work,
            resolution=resolution,
            key_added="leiden",
            random_state=seed,
            flavor="igraph",
            n_iterations=2,
            directed=False,
        )
        labels[resolution] = work.obs["leiden"].astype(int).to_numpy()
    return labels


def compare_with_earlier_domains(cells: int, resolutions: Sequence[float] = (0.2, 0.4, 0.6, 1.0)) -> None:
    """Same slide, same embedding, one process: fmscope's domains (exact kNN below 150,000 cells), the
    earlier library calls, and fmscope with NN-descent forced (its path above 150,000 cells).

    fmscope runs first, so imports and numba compilation count against it, not the earlier calls.
    """
    slide = large_synthetic_slide(cells)
    embedding = baseline_embedding(slide)
    started = time.perf_counter()
    spatial_domains(slide, embedding, resolutions=resolutions)
    new_seconds = time.perf_counter() - started
    new = {r: slide.obs[f"fmscope_domain_r{r:g}"].astype(int).to_numpy() for r in resolutions}
    started = time.perf_counter()
    work = earlier_neighbours(slide, embedding)
    earlier = earlier_leiden(work, resolutions, seed=0)
    earlier_seconds = time.perf_counter() - started
    earlier_seed_1 = earlier_leiden(work, resolutions, seed=1)
    approximate = leiden_labels(neighbour_graph(slide.obsm["X_fmscope_smoothed"], approximate=True), resolutions)
    print(
        f"{cells} cells, resolutions {', '.join(f'{r:g}' for r in resolutions)}: domains {new_seconds:.1f} s, "
        f"earlier calls {earlier_seconds:.1f} s ({earlier_seconds / new_seconds:.1f}x); peak memory "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    for r in resolutions:
        print(
            f"  resolution {r:g}: ARI vs earlier labels {ari(earlier[r], new[r]):.4f} (exact kNN), "
            f"{ari(earlier[r], approximate[r]):.4f} (NN-descent); earlier labels, seed 1 vs seed 0: "
            f"{ari(earlier[r], earlier_seed_1[r]):.4f}; domains {len(np.unique(new[r]))} / "
            f"{len(np.unique(earlier[r]))}"
        )


def finetune_figures() -> None:
    """Head trained on painted blocks (200 cells) vs unsupervised domains, on a harder tissue (60 % purity)."""
    import tempfile

    from fmscope.omics.finetune import apply_head, domains_accuracy, finetune_head, slide_encoder

    tissue = semi_synthetic_tissue(purity=0.6)
    truth = tissue.obs["true_domain"].to_numpy()
    spatial_domains(tissue, baseline_embedding(tissue), n_domains=4)
    domains = tissue.obs["fmscope_domain"].to_numpy()
    labels = annotate_blocks(tissue)
    annotated = np.nonzero(labels != "")[0]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = finetune_head(tissue, labels, f"{folder}/head.pt", slide_encoder(tissue), domains=domains)
        seconds = time.perf_counter() - started
        other = semi_synthetic_tissue(purity=0.6, seed=7)
        classes, probabilities = apply_head(f"{folder}/head.pt", other)
    whole_domains = domains_accuracy(domains, np.where(labels == "", truth, labels), annotated, np.arange(len(truth)))
    transfer = np.mean(np.asarray(classes)[probabilities.argmax(axis=1)] == other.obs["true_domain"].to_numpy())
    print(
        f"fine-tuning (60 % purity tissue, {len(annotated)} painted cells): held-out accuracy head "
        f"{result.holdout_accuracy:.3f} vs unsupervised domains {result.domains_holdout_accuracy:.3f}; "
        f"whole slide head {np.mean(result.predicted == truth):.3f} vs domains {whole_domains:.3f}; "
        f"head on a new tissue {transfer:.3f}; {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
