"""``fmscope image-expression train | predict``: expression from the H&E image, BLEEP-style.

``train`` fits the model on a slide's spots and prints the spatially blocked hold-out table
(image model vs colour and interpolation baselines); ``predict`` writes predicted genes at a
grid of points over the tissue of a slide or a plain image (with its microns per pixel) to a new
SpatialData ``.zarr`` (or ``.h5ad``), plus a PNG of one gene on the tissue, and, for a slide with spots or
cells, a CSV of the predictions at those spots keyed by their ids (``--spots-csv``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmscope.cli.options import add_backend_option
from fmscope.cli.progress import tqdm_progress
from fmscope.errors import FmscopeError
from fmscope.outputs import FOLDER, HEAD_SUFFIXES, PICTURE_SUFFIXES, SLIDE_SUFFIXES, Output, check_outputs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _encoder(scale: float, args: argparse.Namespace):
    from fmscope.imaging.cache import EmbeddingCache
    from fmscope.omics.image_patches import PatchEncoder

    return PatchEncoder(scale, cache=EmbeddingCache(directory=args.cache_dir), backend=args.backend)


def cmd_train(args: argparse.Namespace) -> int:
    from fmscope.omics.image_expression_slide import DEFAULT_ENCODER_UM_PER_PX, train_on_slide
    from fmscope.omics.io import read_slide

    check_outputs(
        [Output("-o", args.output, HEAD_SUFFIXES), Output("--cache-dir", args.cache_dir, FOLDER, fills=True)],
        [args.input],
    )
    slide = read_slide(args.input, microns_per_unit=args.microns_per_unit)
    options = {"patch_um": args.patch_um} if args.patch_um is not None else {}
    with tqdm_progress() as progress:
        result = train_on_slide(
            slide,
            _encoder(args.encoder_um_per_px or DEFAULT_ENCODER_UM_PER_PX, args),
            genes=args.genes,
            n_genes=args.n_genes,
            holdout_blocks=args.holdout_blocks,
            epochs=args.epochs,
            k=args.k,
            seed=args.seed,
            progress=progress,
            keep_fold=args.keep_fold,
            **options,
        )
    result.model.save(args.output)
    print(result.report.table(50))
    kept = f"; the model of fold {args.keep_fold} (never saw its blocks)" if args.keep_fold else ""
    print(
        f"wrote {args.output}: {len(result.model.genes)} genes, {result.model.patch_um:g} µm patches, "
        f"{len(result.model.reference_expression)} reference spots{kept}; {result.report.summary()}"
    )
    return 0


def _tissue(args: argparse.Namespace, encoder_um_per_px: float):
    """(the tissue image, the slide with its spots / cells, or None for a plain image)."""
    from fmscope.imaging.io import open_image
    from fmscope.imaging.lazy_image import LazyImage
    from fmscope.omics.image_expression_slide import slide_tissue
    from fmscope.omics.image_patches import TissueImage
    from fmscope.omics.io import read_slide

    path = Path(args.input)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        image = open_image(path)
        if not isinstance(image, LazyImage):
            return TissueImage.from_array(image.array, args.microns_per_pixel, str(path)), None
        with image:  # a whole-slide scan: read at the encoder's scale, never whole
            return TissueImage.from_lazy(image, args.microns_per_pixel, encoder_um_per_px, str(path)), None
    slide = read_slide(path, microns_per_unit=args.microns_per_unit)
    if args.microns_per_pixel is not None:
        slide.image_microns_per_pixel = args.microns_per_pixel
    return slide_tissue(slide, encoder_um_per_px), slide


def cmd_predict(args: argparse.Namespace) -> int:
    from fmscope.atomic import atomic_write
    from fmscope.omics.image_expression import load_model_file
    from fmscope.omics.image_expression_slide import predict_on_tissue, prediction_slide, spot_predictions
    from fmscope.omics.image_patches import tissue_grid
    from fmscope.omics.plot import save_values_png
    from fmscope.omics.store import write_result

    png = Path(args.png) if args.png else Path(args.output).with_suffix(".png")
    image_only = Path(args.input).is_file() and Path(args.input).suffix.lower() in IMAGE_SUFFIXES
    if image_only and args.spots_csv:
        raise FmscopeError(
            f"--spots-csv: {args.input} is a plain image, without spots or cells to predict at.",
            "Leave --spots-csv out, or give the slide (Visium folder, SpatialData .zarr) instead of its image.",
        )
    spots_csv = None if image_only else Path(args.spots_csv or Path(args.output).with_suffix(".spots.csv"))
    check_outputs(
        [
            Output("-o", args.output, SLIDE_SUFFIXES),
            Output("--png", png, PICTURE_SUFFIXES),
            Output("--spots-csv", spots_csv, (".csv",)),
            Output("--cache-dir", args.cache_dir, FOLDER, fills=True),
        ],
        [args.input, args.model],
    )
    model = load_model_file(args.model)
    model.gene_columns(args.genes)  # unknown genes are refused before any image work
    png_gene = args.png_gene or (args.genes or model.genes)[0]
    model.gene_columns([png_gene])
    tissue, slide = _tissue(args, model.encoder_um_per_px)
    centres = tissue_grid(tissue, args.grid_um)
    if len(centres) == 0:
        raise FmscopeError("No tissue was found in the image.", "Check the image is the H&E of the tissue.")
    encoder = _encoder(model.encoder_um_per_px, args)
    with tqdm_progress("tile") as progress:
        predicted = predict_on_tissue(model, tissue, centres, encoder, args.genes, progress=progress)
        at_spots = None
        if slide is not None and slide.adata.n_obs:
            at_spots = spot_predictions(model, slide, tissue, encoder, args.genes, progress=progress)
    result = prediction_slide(tissue, centres, predicted, args.grid_um, args.model, str(args.input))
    save_values_png(
        result,
        predicted[model.genes[model.gene_columns([png_gene])[0]]].to_numpy(),
        png,
        title=f"{png_gene} predicted from the image ({Path(args.model).name})",
    )
    try:
        for note in write_result(result, args.output):  # names written as legal keys (omics.legal_keys)
            print(f"fmscope: note: {note}", file=sys.stderr)
        if at_spots is not None:
            atomic_write(spots_csv, lambda temporary: at_spots.to_csv(temporary))
    except BaseException:
        png.unlink(missing_ok=True)
        raise
    print(
        f"wrote {args.output} and {png}: {predicted.shape[1]} genes predicted at {len(centres)} points "
        f"every {args.grid_um:g} µm over the tissue"
    )
    if at_spots is not None:
        print(
            f"wrote {spots_csv}: the same genes at the slide's {len(at_spots)} spots / cells, keyed by their ids "
            f"({int(at_spots['held_out'].sum())} held out from the model's training)"
        )
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``fmscope image-expression train | predict``."""
    group = commands.add_parser(
        "image-expression",
        help="predict expression from the H&E image (BLEEP-style; LiteMedSAM's TinyViT as frozen image encoder)",
    )
    actions = group.add_subparsers(dest="action", required=True)
    train = actions.add_parser("train", help="train on a slide's spots; print the blocked hold-out table")
    train.add_argument("input", help="slide with spots and its tissue image (Visium folder, SpatialData .zarr)")
    train.add_argument("-o", "--output", required=True, help="model file to write (.pt)")
    train.add_argument("--genes", nargs="+", help="genes to learn (default: the --n-genes most variable)")
    train.add_argument("--n-genes", type=int, default=50, help="most variable genes to learn without --genes")
    train.add_argument("--patch-um", type=float, help="patch side in microns (default 200)")
    train.add_argument(
        "--holdout-blocks", type=int, default=4, help="whole blocks per held-out fold (every block is held out once)"
    )
    train.add_argument("--epochs", type=int, default=15)
    train.add_argument("--k", type=int, default=100, help="reference spots averaged per prediction")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--keep-fold",
        type=int,
        metavar="K",
        help="save held-out fold K's model (never trained on its blocks; printed figure 'fold K') instead of the "
        "model trained on all spots, to score `predict` on those blocks",
    )
    train.add_argument(
        "--encoder-um-per-px",
        type=float,
        help="microns per encoder input pixel; the image is resampled to it (default 8)",
    )
    train.add_argument(
        "--microns-per-unit",
        type=float,
        help="microns per coordinate unit: used when the slide does not state its units, checked when it does",
    )
    train.add_argument("--cache-dir", help="folder caching the encoder's tile embeddings between runs")
    add_backend_option(train)
    train.set_defaults(run=cmd_train)

    predict = actions.add_parser("predict", help="predict genes on a grid over the tissue of a slide or an image")
    predict.add_argument("input", help="slide (Visium folder, SpatialData .zarr) or image (.png / .tif / .jpg)")
    predict.add_argument("--model", required=True, help="model file from `fmscope image-expression train`")
    predict.add_argument("-o", "--output", required=True, help="new SpatialData .zarr (or .h5ad) of predicted points")
    predict.add_argument("--grid-um", type=float, default=100.0, help="grid step in microns")
    predict.add_argument("--genes", nargs="+", help="genes to predict (default: all the model's)")
    predict.add_argument("--png", help="picture of one gene on the tissue (default: OUTPUT with .png)")
    predict.add_argument("--png-gene", help="gene drawn in the PNG (default: the most variable)")
    predict.add_argument(
        "--spots-csv",
        help="a slide's input: predictions at its spots / cells, keyed by their ids (default: OUTPUT with .spots.csv)",
    )
    predict.add_argument("--microns-per-pixel", type=float, help="pixel size of a plain image (required for one)")
    predict.add_argument(
        "--microns-per-unit",
        type=float,
        help="microns per coordinate unit: used when the slide does not state its units, checked when it does",
    )
    predict.add_argument("--cache-dir", help="folder caching the encoder's tile embeddings between runs")
    add_backend_option(predict)
    predict.set_defaults(run=cmd_predict)
