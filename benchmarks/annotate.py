"""Cell-type annotation from a labelled reference: fmscope's default beside L1 logistic regression and kNN.

``python benchmarks/annotate.py [--reference CELLS.h5ad] [--label-key COLUMN] [--batch-key COLUMN] [--seeds N]
[--checkpoint SCGPT_DIR [--tune-layers K]]`` runs the held-out evaluation that ``fmscope annotate`` prints
(:func:`fmscope.omics.annotate.annotate`, the reference annotating itself) over ``--seeds`` stratified splits
(or whole batches held out with ``--batch-key``) and prints, per method, accuracy and macro precision / recall /
F1 as mean and range over the splits. Default: the real PBMC 68k reduced reference in ``sample_data/``
(700 cells, 765 genes, ``bulk_labels``: 10 cell types; no donor column, so stratified splits).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fmscope import samples
from fmscope.omics.annotate import BaselinePCA, ScGPTEncoder, annotate
from fmscope.omics.reference import read_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=str(samples.sample_data_dir() / "pbmc68k_reduced.h5ad"))
    parser.add_argument("--label-key", default="bulk_labels")
    parser.add_argument("--batch-key")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--checkpoint", help="scGPT checkpoint folder (default: the baseline PCA encoder)")
    parser.add_argument("--tune-layers", type=int, default=0)
    args = parser.parse_args()
    reference = read_reference(args.reference, label_key=args.label_key).adata
    labels = reference.obs[args.label_key].astype(str).str.strip().to_numpy()
    rows: dict[str, list] = {}
    start = time.perf_counter()
    for seed in range(args.seeds):
        encoder = ScGPTEncoder(args.checkpoint, args.tune_layers) if args.checkpoint else BaselinePCA()
        result = annotate(reference, reference, labels, encoder, batch_key=args.batch_key, seed=seed)
        print(f"split {seed}: " + result.evaluation.table())
        for name, scores in result.evaluation.scores.items():
            rows.setdefault(name, []).append([scores.accuracy, scores.precision, scores.recall, scores.f1])
    print(f"\n{reference.n_obs} cells, {reference.n_vars} genes, {len(set(labels))} cell types, {args.seeds} splits")
    print(f"{'method':<70}" + "".join(f"{h:>20}" for h in ("accuracy", "macro precision", "macro recall", "macro F1")))
    for name, values in rows.items():
        values = np.asarray(values)
        cells = [f"{m:.3f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in zip(values.mean(0), values.min(0), values.max(0))]
        print(f"{name:<70}" + "".join(f"{c:>20}" for c in cells))
    f1 = np.asarray([[split[3] for split in values] for values in rows.values()])  # (methods, splits)
    margin = f1[0] - f1[1:].max(axis=0)
    print(f"macro F1, fmscope minus the better baseline, per split: min {margin.min():+.3f}, mean {margin.mean():+.3f}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
