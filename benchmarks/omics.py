"""Spatial-omics figures: domain accuracy per encoder on the semi-synthetic tissue, embedding
throughput, peak memory. Run: ``.venv/bin/python benchmarks/omics.py [--checkpoint SCGPT_DIR]``.

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
from fmscope.omics.synthetic import semi_synthetic_tissue

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "scgpt_tiny"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, help="official scGPT checkpoint folder")
    args = parser.parse_args()
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
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
