"""The ``fmscope`` command line: segment, volume, eval, demo.

Exit codes: 0 success, 1 a problem with the input or set-up (message on stderr, no
traceback), 2 wrong usage (argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fmscope.errors import FmscopeError


def _window(text: str | None) -> str | tuple[float, float] | None:
    if text is None or text == "auto":
        return None
    if "," in text:
        try:
            level, width = (float(v) for v in text.split(","))
        except ValueError:
            raise FmscopeError(f"Cannot read window '{text}'.", "Give a preset name or LEVEL,WIDTH, e.g. 40,400.") \
                from None
        return level, width
    return text


def _roi_zoom(text: str) -> bool | str:
    return {"auto": "auto", "on": True, "off": False}[text]


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="litemedsam",
                        help="litemedsam (default, embedded), medsam_vit_b, sam_vit_b, sam_vit_l, sam_vit_h")
    parser.add_argument("--checkpoint", help="weights file or folder (else $FMSCOPE_CHECKPOINT_DIR)")
    parser.add_argument("--window", help="CT/MR window: preset (abdomen, lung, bone, brain, liver, soft_tissue) "
                                         "or LEVEL,WIDTH; default: automatic")
    parser.add_argument("--roi-zoom", choices=("auto", "on", "off"), default="auto",
                        help="embed a crop around small objects (default auto)")
    parser.add_argument("--fast", action="store_true", help="bfloat16 encoder (faster, not bit-exact)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--cache-dir", help="keep image embeddings on disk here (zarr) for reuse")


def _segmenter(args: argparse.Namespace):
    from fmscope.imaging.cache import EmbeddingCache
    from fmscope.imaging.predictor import Segmenter

    cache = EmbeddingCache(directory=args.cache_dir) if args.cache_dir else None
    return Segmenter(args.model, checkpoint=args.checkpoint, device=args.device, cache=cache,
                     roi_zoom=_roi_zoom(args.roi_zoom), precision="fast" if args.fast else "fp32")


def _labels_dtype(count: int) -> type:
    return np.uint8 if count < 256 else np.uint16


def cmd_segment(args: argparse.Namespace) -> int:
    from fmscope.imaging import io
    from fmscope.imaging.overlay import draw_overlay

    if not args.box and not args.point:
        raise FmscopeError("No prompt given.", "Add --box X0 Y0 X1 Y1 and/or --point X Y.")
    if args.label and len(args.label) != len(args.point or []):
        raise FmscopeError(f"{len(args.point or [])} --point but {len(args.label)} --label.",
                           "Give one --label (1 or 0) per --point, or none (all positive).")
    image = io.read_image(args.image)
    segmenter = _segmenter(args)
    segmenter.set_image(image, window=_window(args.window))
    started = time.perf_counter()
    if args.point:
        if args.box and len(args.box) > 1:
            raise FmscopeError("Points refine one object; got several boxes.", "Give at most one --box with --point.")
        with tqdm(total=1, desc="segmenting", leave=False) as bar:
            results = [segmenter.predict(box=args.box[0] if args.box else None, points=args.point, labels=args.label)]
            bar.update(1)
    else:
        results = segmenter.predict_many(args.box, progress=True)
    labels = np.zeros(segmenter.image_shape, dtype=_labels_dtype(len(results)))
    for label, result in enumerate(results, start=1):
        labels[result.mask & (labels == 0)] = label
    io.write_image(labels, args.output)
    if args.overlay:
        boxes = [np.asarray(b, float) for b in args.box or []]
        io.write_image(draw_overlay(segmenter.mapped_image, labels, boxes), args.overlay)
    scores = ", ".join(f"{r.score:.3f}" for r in results)
    print(f"wrote {args.output}: {len(results)} object(s), {int((labels > 0).sum())} pixels, "
          f"model score {scores} ({time.perf_counter() - started:.2f} s)")
    return 0


def cmd_volume(args: argparse.Namespace) -> int:
    from fmscope.imaging import io
    from fmscope.imaging.volume import segment_volume

    volume = io.read_volume(args.volume)
    boxes = {label: box for label, box in enumerate(args.box, start=1)}
    segmenter = _segmenter(args)
    labels = segment_volume(volume.array, args.slice, boxes, segmenter=segmenter, window=_window(args.window),
                            direction=args.direction, slice_range=tuple(args.range) if args.range else None,
                            progress=True)
    io.write_volume(labels, volume, args.output)
    slices = np.nonzero(labels.reshape(labels.shape[0], -1).any(axis=1))[0]
    extent = f"slices {slices.min()}..{slices.max()}" if len(slices) else "no slices"
    print(f"wrote {args.output}: {len(boxes)} object(s), {int((labels > 0).sum())} voxels, {extent}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fmscope import metrics
    from fmscope.imaging import io

    def read(path: str) -> tuple[np.ndarray, tuple[float, ...] | None]:
        suffix = Path(path).name.lower()
        if suffix.endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")):
            try:
                volume = io.read_volume(path)
                return volume.array, volume.spacing_zyx
            except FmscopeError:
                pass
        return io.read_image(path), None

    prediction, spacing = read(args.prediction)
    truth, _ = read(args.truth)
    if prediction.shape != truth.shape:
        raise FmscopeError(f"Shapes differ: prediction {prediction.shape}, truth {truth.shape}.",
                           "Compare masks on the same grid.")
    pred_mask = prediction > 0 if args.label is None else prediction == args.label
    true_mask = truth > 0 if args.label is None else truth == args.label
    score_dice = metrics.dice(pred_mask, true_mask)
    score_nsd = metrics.nsd(pred_mask, true_mask, tolerance=args.tolerance, spacing=spacing)
    print(f"dice {score_dice:.4f}  nsd@{args.tolerance:g} {score_nsd:.4f}")
    return 0


def _embed_slide(args: argparse.Namespace):
    from fmscope.omics import io
    from fmscope.omics.embed import embed_cells

    slide = io.read_slide(args.input)
    embedding, method = embed_cells(slide.adata, args.checkpoint, batch_size=args.batch_size, device=args.device,
                                    progress=True)
    return slide, embedding, method


def cmd_embed(args: argparse.Namespace) -> int:
    from fmscope.omics import io

    slide, embedding, method = _embed_slide(args)
    io.write_h5ad(slide.adata, args.output)
    print(f"wrote {args.output}: {embedding.shape[0]} cells x {embedding.shape[1]} dims in obsm['X_fmscope'] ({method})")
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    from fmscope.omics import io
    from fmscope.omics.domains import DOMAIN_KEY, spatial_domains
    from fmscope.omics.plot import save_domain_png

    slide, embedding, method = _embed_slide(args)
    resolution = spatial_domains(slide.adata, embedding, resolutions=args.resolution, n_domains=args.n_domains)
    png = Path(args.png) if args.png else Path(args.output).with_suffix(".png")
    save_domain_png(slide, DOMAIN_KEY, png, title=f"fmscope domains ({method}, resolution {resolution:g})")
    io.write_h5ad(slide.adata, args.output)
    counts = slide.adata.obs[DOMAIN_KEY].value_counts()
    print(f"wrote {args.output} and {png}: {len(counts)} domains at resolution {resolution:g} "
          f"over {slide.adata.n_obs} cells ({method})")
    return 0


def _reference(path: str):
    import anndata as ad

    if not Path(path).is_file():
        raise FmscopeError(f"No such reference file: {path}", "Give a labelled single-cell .h5ad.")
    try:
        return ad.read_h5ad(path)
    except Exception as error:
        raise FmscopeError(f"Cannot read the reference {path} ({type(error).__name__}).",
                           "Give a single-cell .h5ad.") from None


def cmd_impute(args: argparse.Namespace) -> int:
    from fmscope.omics import io
    from fmscope.omics.impute import IMPUTED_KEY, impute_knn

    slide = io.read_slide(args.input)
    imputed = impute_knn(slide.adata, _reference(args.reference), genes=args.genes, k=args.k)
    slide.adata.obsm[IMPUTED_KEY] = imputed
    io.write_h5ad(slide.adata, args.output)
    print(f"wrote {args.output}: {imputed.shape[1]} genes imputed for {imputed.shape[0]} cells in obsm['{IMPUTED_KEY}']")
    return 0


def cmd_deconvolve(args: argparse.Namespace) -> int:
    from fmscope.omics import io
    from fmscope.omics.deconvolve import PROPORTIONS_KEY, deconvolve_nnls
    from fmscope.omics.plot import save_domain_png

    slide = io.read_slide(args.input)
    proportions = deconvolve_nnls(slide.adata, _reference(args.reference), args.label_key)
    slide.adata.obsm[PROPORTIONS_KEY] = proportions
    slide.adata.obs["fmscope_dominant_type"] = proportions.idxmax(axis=1).astype(str).to_numpy()
    png = Path(args.png) if args.png else Path(args.output).with_suffix(".png")
    save_domain_png(slide, "fmscope_dominant_type", png, title="dominant cell type per spot (NNLS on markers)")
    io.write_h5ad(slide.adata, args.output)
    print(f"wrote {args.output} and {png}: proportions of {proportions.shape[1]} cell types for "
          f"{proportions.shape[0]} spots in obsm['{PROPORTIONS_KEY}']")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fmscope.demo import run_demo

    run_demo(Path(args.output), fast=args.fast)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``fmscope``."""
    from fmscope import __version__

    parser = argparse.ArgumentParser(prog="fmscope", description="Biomedical foundation models from the shell.")
    parser.add_argument("--version", action="version", version=f"fmscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser("segment", help="segment objects in a 2D image from boxes / points")
    segment.add_argument("image", help="TIFF, PNG, JPEG, DICOM, or 2D NIfTI/NRRD")
    segment.add_argument("--box", nargs=4, type=float, action="append", metavar=("X0", "Y0", "X1", "Y1"),
                         help="object box in pixels; repeat for several objects (labels 1, 2, ...)")
    segment.add_argument("--point", nargs=2, type=float, action="append", metavar=("X", "Y"),
                         help="click in pixels; repeat for several")
    segment.add_argument("--label", type=int, action="append", choices=(0, 1),
                         help="1 = object, 0 = background; one per --point (default 1)")
    segment.add_argument("-o", "--output", required=True, help="label image to write (.tif, .png, .nii.gz)")
    segment.add_argument("--overlay", help="also write an overlay picture (.png)")
    _add_model_options(segment)
    segment.set_defaults(run=cmd_segment)

    volume = commands.add_parser("volume", help="segment through a 3D volume from a box on one slice")
    volume.add_argument("volume", help="NIfTI, NRRD, MHA, or a DICOM series folder")
    volume.add_argument("--slice", type=int, required=True, help="key slice index (z, 0-based)")
    volume.add_argument("--box", nargs=4, type=float, action="append", required=True,
                        metavar=("X0", "Y0", "X1", "Y1"), help="box on the key slice; repeat for several objects")
    volume.add_argument("--range", nargs=2, type=int, metavar=("FIRST", "LAST"), help="limit to these slices")
    volume.add_argument("--direction", choices=("both", "up", "down"), default="both")
    volume.add_argument("-o", "--output", required=True, help="label volume to write (same geometry)")
    _add_model_options(volume)
    volume.set_defaults(run=cmd_volume)

    evaluate = commands.add_parser("eval", help="Dice and NSD of a predicted mask against ground truth")
    evaluate.add_argument("prediction")
    evaluate.add_argument("truth")
    evaluate.add_argument("--label", type=int, help="compare this label only (default: any nonzero)")
    evaluate.add_argument("--tolerance", type=float, default=1.0, help="NSD tolerance (mm for volumes, else px)")
    evaluate.set_defaults(run=cmd_eval)

    for name, help_text, run in (("embed", "cell / spot embeddings of a slide", cmd_embed),
                                 ("domains", "spatial domains of a slide, with a PNG on the tissue", cmd_domains)):
        omics = commands.add_parser(name, help=help_text)
        omics.add_argument("input", help="Visium output folder, .h5ad with obsm['spatial'], or SpatialData .zarr")
        omics.add_argument("--checkpoint", help="official scGPT checkpoint folder (default: baseline PCA encoder)")
        omics.add_argument("--batch-size", type=int, default=32)
        omics.add_argument("--device", help="cpu or cuda (scGPT only)")
        omics.add_argument("-o", "--output", required=True, help="result .h5ad (a new file; the input is not changed)")
        if name == "domains":
            omics.add_argument("--resolution", type=float, nargs="+", default=[0.2, 0.4, 0.6, 1.0],
                               help="Leiden resolutions to compute (labels for each are kept)")
            omics.add_argument("--n-domains", type=int, help="choose the resolution giving about this many domains")
            omics.add_argument("--png", help="picture of the domains on the tissue (default: OUTPUT with .png)")
        omics.set_defaults(run=run)

    impute = commands.add_parser("impute", help="impute unmeasured genes from a single-cell reference (kNN)")
    impute.add_argument("input", help="slide (Visium folder, .h5ad with obsm['spatial'], SpatialData .zarr)")
    impute.add_argument("--reference", required=True, help="single-cell reference .h5ad")
    impute.add_argument("--genes", nargs="+", help="genes to impute (default: all the slide lacks)")
    impute.add_argument("--k", type=int, default=15, help="reference neighbours per cell")
    impute.add_argument("-o", "--output", required=True, help="result .h5ad")
    impute.set_defaults(run=cmd_impute)

    deconvolve = commands.add_parser("deconvolve", help="cell-type proportions per spot (NNLS on marker profiles)")
    deconvolve.add_argument("input", help="spot-based slide (e.g. a Visium folder)")
    deconvolve.add_argument("--reference", required=True, help="labelled single-cell reference .h5ad")
    deconvolve.add_argument("--label-key", required=True, help="reference obs column with cell types")
    deconvolve.add_argument("-o", "--output", required=True, help="result .h5ad")
    deconvolve.add_argument("--png", help="picture of the dominant type per spot (default: OUTPUT with .png)")
    deconvolve.set_defaults(run=cmd_deconvolve)

    demo = commands.add_parser("demo", help="run the default model on every sample case")
    demo.add_argument("-o", "--output", default="demo_output", help="folder for masks and overlays")
    demo.add_argument("--fast", action="store_true", help="bfloat16 encoder")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except FmscopeError as error:
        print(f"fmscope: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fmscope: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
