"""Expression from H&E on the Visium mouse brain sample: held-out Pearson r of the image model vs the
colour and interpolation baselines, training time, and the README figures.

Run: ``.venv/bin/python benchmarks/image_expression.py [--seeds 0 1 2] [--figures docs]``

The first seed is the default run (``fmscope image-expression train``): its wall and CPU time
include encoding the image tiles with LiteMedSAM's TinyViT; the other seeds reuse the cached
tile embeddings (another blocked hold-out split, another training). With ``--figures`` it writes
``image_expression_visium.png`` (H&E, a measured gene, the same gene predicted over the whole
tissue) and ``image_expression_genes.png`` (per-gene r of each method, seed 0).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from fmscope.imaging.cache import EmbeddingCache
from fmscope.omics.image_expression_eval import METHODS
from fmscope.omics.image_expression_slide import predict_on_tissue, slide_tissue, train_on_slide
from fmscope.omics.image_patches import PatchEncoder, tissue_grid
from fmscope.omics.io import read_slide
from fmscope.omics.reference import gene_expression

VISIUM = Path(__file__).resolve().parents[1] / "sample_data" / "visium_mouse_brain"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--figures", type=Path, help="folder for the README figures")
    parser.add_argument(
        "--cache-dir", type=Path, help="tile-embedding cache (default none: the first seed is timed cold)"
    )
    args = parser.parse_args()
    slide = read_slide(VISIUM)
    encoder = PatchEncoder(cache=EmbeddingCache(directory=args.cache_dir))
    print(
        f"Visium mouse brain: {slide.adata.n_obs} spots x {slide.adata.n_vars} genes, H&E "
        f"{slide.image.shape[1]}x{slide.image.shape[0]} px at {slide.image_microns_per_pixel:.1f} µm/px"
    )
    first = None
    for seed in args.seeds:
        wall, cpu = time.perf_counter(), time.process_time()
        result = train_on_slide(slide, encoder, seed=seed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        report = result.report
        print(
            f"seed {seed}: {report.n_folds} folds of >= {report.n_blocks} blocks held out ({report.n_test} spots), "
            + ", ".join(f"{m} {report.mean(m, 20):.3f}" for m in METHODS)
            + f" (mean r, top 20 genes); image - colour {report.mean('image', 20) - report.mean('colour', 20):+.3f}; "
            f"{result.tiles_encoded} tiles encoded, {wall:.0f} s wall, {cpu:.0f} s CPU"
        )
        first = first or result
    print(first.report.table(50))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:.0f} MB")
    if args.figures is not None:
        figures(slide, first, encoder, args.figures)


def figures(slide, result, encoder: PatchEncoder, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    report, model = result.report, result.model
    gene = report.genes[0]
    tissue = slide_tissue(slide)
    grid = tissue_grid(tissue, 100)
    predicted = predict_on_tissue(model, tissue, grid, encoder)[gene].to_numpy()
    xy = slide.adata.obsm["spatial"]
    h, w = tissue.rgb.shape[:2]
    extent = (0, w * tissue.microns_per_pixel, h * tissue.microns_per_pixel, 0)
    figure, axes = plt.subplots(1, 3, figsize=(15, 5.2), dpi=100)
    measured = gene_expression(slide.adata, gene)
    limits = np.percentile(measured, [2, 98])
    for axis, title in zip(
        axes,
        (
            "H&E (Visium lowres image)",
            f"{gene} measured (2,695 spots)",
            f"{gene} predicted from the image ({len(grid)} points)",
        ),
    ):
        axis.imshow(tissue.rgb, extent=extent)
        axis.set_title(title)
        axis.set_xlim(xy[:, 0].min() - 400, xy[:, 0].max() + 400)
        axis.set_ylim(xy[:, 1].max() + 400, xy[:, 1].min() - 400)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[1].scatter(xy[:, 0], xy[:, 1], c=measured, s=6, cmap="inferno", vmin=limits[0], vmax=limits[1])
    axes[2].scatter(
        grid[:, 0], grid[:, 1], c=predicted, s=9, marker="s", cmap="inferno", vmin=limits[0], vmax=limits[1]
    )
    figure.tight_layout()
    figure.savefig(folder / "image_expression_visium.png")
    plt.close(figure)

    top = min(20, len(report.genes))
    figure, axis = plt.subplots(figsize=(12, 4), dpi=100)
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        axis.bar(np.arange(top) + i * width, report.r[method][:top], width, label=method)
    axis.set_xticks(np.arange(top) + 0.4 - width / 2, report.genes[:top], rotation=60, ha="right")
    axis.set_ylabel("held-out Pearson r")
    axis.set_title(
        f"Visium mouse brain, every spot held out with its block ({report.n_folds} folds of "
        f">= {report.n_blocks} blocks): the 20 most variable genes"
    )
    axis.axhline(0, color="k", linewidth=0.5)
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "image_expression_genes.png")
    plt.close(figure)
    print(f"wrote {folder / 'image_expression_visium.png'} and {folder / 'image_expression_genes.png'}")


if __name__ == "__main__":
    main()
