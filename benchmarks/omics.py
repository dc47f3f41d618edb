"""Spatial-omics figures: domain accuracy per encoder on the semi-synthetic tissue, embedding
throughput, peak memory. Run: ``.venv/bin/python benchmarks/omics.py [--checkpoint SCGPT_DIR]``;
``--large N`` instead times baseline embedding + domains on an N-cell synthetic slide (1,000,000: ~17 min).

The semi-synthetic tissue is built from real PBMC profiles placed into four known domains
(fmscope.omics.synthetic); no real slide here has domain labels. Without ``--checkpoint`` the
scGPT rows use tests/fixtures/scgpt_tiny (random weights: a throughput figure, not an accuracy one).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from fmscope.metrics import ari, nmi
from fmscope.omics.domains import spatial_domains
from fmscope.omics.embed import baseline_embedding, scgpt_embedding
from fmscope.omics.models.scgpt import load_scgpt
from fmscope.omics.synthetic import annotate_blocks, large_synthetic_slide, semi_synthetic_tissue

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "scgpt_tiny"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, help="official scGPT checkpoint folder")
    parser.add_argument("--large", type=int, metavar="N", help="only time an N-cell synthetic slide")
    args = parser.parse_args()
    if args.large:
        large_slide_figures(args.large)
        return
    tissue = semi_synthetic_tissue()
    truth = tissue.obs["true_domain"]
    started = time.perf_counter()
    baseline = baseline_embedding(tissue)
    print(f"semi-synthetic tissue: {tissue.n_obs} cells x {tissue.n_vars} genes, 4 domains")
    print(f"baseline embedding: {tissue.n_obs / (time.perf_counter() - started):.0f} cells/s")
    for name, smoothing in (("baseline, expression only", 0.0), ("baseline + spatial smoothing", 0.5)):
        spatial_domains(tissue, baseline, n_domains=4, smoothing=smoothing)
        print(f"{name}: ARI {ari(truth, tissue.obs['fmscope_domain']):.3f}, "
              f"NMI {nmi(truth, tissue.obs['fmscope_domain']):.3f}")
    model, vocab, report = load_scgpt(args.checkpoint or FIXTURE)
    started = time.perf_counter()
    embedding = scgpt_embedding(tissue, model, vocab, batch_size=32)
    seconds = time.perf_counter() - started
    label = "scGPT" if args.checkpoint else "scGPT (tiny random fixture)"
    print(f"{label} embedding: {tissue.n_obs / seconds:.0f} cells/s on CPU ({report.summary()})")
    if args.checkpoint:
        spatial_domains(tissue, embedding, n_domains=4)
        print(f"scGPT + spatial smoothing: ARI {ari(truth, tissue.obs['fmscope_domain']):.3f}, "
              f"NMI {nmi(truth, tissue.obs['fmscope_domain']):.3f}")
    finetune_figures()
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def large_slide_figures(cells: int) -> None:
    """Baseline embedding + smoothing + Leiden (resolution 0.2) on a large synthetic slide."""
    slide = large_synthetic_slide(cells)
    started = time.perf_counter()
    embedding = baseline_embedding(slide)
    embedded = time.perf_counter()
    spatial_domains(slide, embedding, resolutions=(0.2,), n_domains=None)
    finished = time.perf_counter()
    print(f"{cells} cells: embedding {embedded - started:.1f} s, domains {finished - embedded:.1f} s, "
          f"ARI {ari(slide.obs['true_domain'], slide.obs['fmscope_domain']):.3f}, "
          f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def finetune_figures() -> None:
    """Head trained on painted blocks (200 cells) vs unsupervised domains, on a harder tissue (60 % purity)."""
    import tempfile

    import numpy as np

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
    print(f"fine-tuning (60 % purity tissue, {len(annotated)} painted cells): held-out accuracy head "
          f"{result.holdout_accuracy:.3f} vs unsupervised domains {result.domains_holdout_accuracy:.3f}; "
          f"whole slide head {np.mean(result.predicted == truth):.3f} vs domains {whole_domains:.3f}; "
          f"head on a new tissue {transfer:.3f}; {seconds:.1f} s")


if __name__ == "__main__":
    main()
