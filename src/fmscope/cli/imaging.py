"""``fmscope segment | volume | eval | demo``: the MedSAM-family imaging commands."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmscope import models, samples
from fmscope.atomic import file_suffix
from fmscope.cli.options import add_backend_option, add_prompt_options, window_option
from fmscope.cli.progress import tqdm_progress
from fmscope.errors import FmscopeError, UsageError
from fmscope.imaging.lazy_image import LazyImage
from fmscope.outputs import FOLDER, LABEL_IMAGE_SUFFIXES, OVERLAY_SUFFIXES, VOLUME_SUFFIXES, Output, check_outputs

if TYPE_CHECKING:
    from fmscope.imaging.predictor import MaskResult, Segmenter


def _roi_zoom(text: str) -> bool | str:
    return {"auto": "auto", "on": True, "off": False}[text]


def _threads(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"needs a whole number >= 1, got '{text}'")
    return int(text)


def _add_model_options(parser: argparse.ArgumentParser, capability: str) -> None:
    parser.add_argument(
        "--model",
        default=models.DEFAULT_SEGMENTER,
        help=f"{models.choices_text(capability)} (default {models.DEFAULT_SEGMENTER}, embedded)",
    )
    parser.add_argument("--checkpoint", help="weights file or folder (else $FMSCOPE_CHECKPOINT_DIR)")
    parser.add_argument(
        "--window",
        type=window_option,
        help="CT/MR window: preset (abdomen, lung, bone, brain, liver, soft_tissue) or LEVEL,WIDTH; default: automatic",
    )
    parser.add_argument(
        "--roi-zoom",
        choices=("auto", "on", "off"),
        default="auto",
        help="embed a crop around small objects (default auto; on = auto)",
    )
    parser.add_argument(
        "--threads",
        type=_threads,
        help="torch threads (default: $FMSCOPE_THREADS, else the cores other programs leave free)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="bfloat16 / fp16 encoder where the CPU has it (faster, not bit-exact; elsewhere the exact one)",
    )
    add_backend_option(parser)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--cache-dir", help="keep image embeddings on disk here (zarr) for reuse")


def _segmenter(args: argparse.Namespace):
    from fmscope.imaging.cache import EmbeddingCache
    from fmscope.imaging.predictor import Segmenter

    cache = EmbeddingCache(directory=args.cache_dir) if args.cache_dir else None
    return Segmenter(
        args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        cache=cache,
        roi_zoom=_roi_zoom(args.roi_zoom),
        precision="fast" if args.fast else "fp32",
        threads=args.threads,
        backend=args.backend,
    )


def _warn_if_foreign(segmenter, image: np.ndarray, window) -> None:
    """A tuned model used on another kind of image than it was trained on: say so (stderr), go on."""
    from fmscope.imaging.model_file import foreign_image_warning

    tuned = segmenter.model.tuned
    warning = None if tuned is None else foreign_image_warning(tuned, image, window)
    if warning:
        print(f"fmscope: warning: {warning}", file=sys.stderr)


def _labels_dtype(count: int) -> type:
    return np.uint8 if count < 256 else np.uint16


def cmd_segment(args: argparse.Namespace) -> int:
    from fmscope.imaging import io
    from fmscope.imaging.overlay import draw_overlay

    check_outputs(
        [
            Output("-o", args.output, LABEL_IMAGE_SUFFIXES + (".zarr",)),  # .ome.zarr: OME-Zarr labels
            Output("--overlay", args.overlay, OVERLAY_SUFFIXES),
            Output("--cache-dir", args.cache_dir, FOLDER, fills=True),
        ],
        [args.image],
    )
    if not args.box and not args.point:
        raise UsageError("No prompt given.", "Add --box X0 Y0 X1 Y1 and/or --point X Y.")
    if args.label and len(args.label) != len(args.point or []):
        raise UsageError(
            f"{len(args.point or [])} --point but {len(args.label)} --label.",
            "Give one --label (1 or 0) per --point, or none (all positive).",
        )
    if args.point and args.box and len(args.box) > 1:
        raise UsageError("Points refine one object; got several boxes.", "Give at most one --box with --point.")
    image = io.open_image(args.image)
    if isinstance(image, LazyImage):
        with image:
            return _segment_lazy(args, image)
    if image.note:
        print(f"note: {image.note}")
    segmenter = _segmenter(args)
    _warn_if_foreign(segmenter, image.array, args.window)
    segmenter.set_image(image.array, window=args.window)
    started = time.perf_counter()
    results = _run_prompts(args, segmenter)
    labels = np.zeros(segmenter.image_shape, dtype=_labels_dtype(len(results)))
    for label, result in enumerate(results, start=1):
        labels[result.mask & (labels == 0)] = label
    if file_suffix(Path(args.output)) == ".zarr":
        from fmscope.imaging.ome_zarr_labels import write_ome_zarr_labels

        write_ome_zarr_labels(args.output, labels.shape, labels.dtype, [(0, 0, labels)], geometry=image.geometry)
    else:
        io.write_image(labels, args.output, geometry=image.geometry)
    if args.overlay:
        boxes = [np.asarray(b, float) for b in args.box or []]
        io.write_image(draw_overlay(segmenter.mapped_image, labels, boxes), args.overlay)
    scores = ", ".join(f"{r.score:.3f}" for r in results)
    print(
        f"wrote {args.output}: {len(results)} object(s), {int((labels > 0).sum())} pixels, "
        f"model score {scores} ({time.perf_counter() - started:.2f} s)"
    )
    _geometry_note(image.geometry, args.output)
    return 0


def _geometry_note(geometry, output: str) -> None:
    """Say what the labels ``output`` leaves out of the input's pixel size and position (nothing when it keeps
    them: NIfTI / NRRD, OME-Zarr, a calibrated picture's TIFF)."""
    from fmscope.imaging import io
    from fmscope.imaging.picture_geometry import output_note

    note = output_note(geometry, Path(output), io.VOLUME_SUFFIXES)
    if note:
        print(f"note: {note}")


def _run_prompts(args: argparse.Namespace, segmenter: Segmenter) -> list[MaskResult]:
    """The masks of ``fmscope segment``'s prompts on the segmenter's image: one object from ``--point`` clicks
    (with at most one ``--box``), else one object per ``--box`` (a progress bar per crop)."""
    if args.point:
        return [segmenter.predict(box=args.box[0] if args.box else None, points=args.point, labels=args.label)]
    with tqdm_progress("crop") as progress:
        return segmenter.predict_many(args.box, progress=progress)


def _segment_lazy(args: argparse.Namespace, image: LazyImage) -> int:
    """``fmscope segment`` on a huge image: only the prompts' crops are read, and the labels are written as a
    tiled compressed TIFF, tile by tile (:mod:`fmscope.imaging.tiled_labels`), or as an OME-Zarr label image, chunk
    by chunk (``-o labels.ome.zarr``, :mod:`fmscope.imaging.ome_zarr_labels`), never whole in memory."""
    from fmscope.imaging.ome_zarr_labels import write_ome_zarr_labels
    from fmscope.imaging.tiled_labels import write_tiled_labels

    height, width = image.shape[:2]
    suffix = file_suffix(Path(args.output))
    if suffix not in (".tif", ".tiff", ".zarr"):
        raise UsageError(
            f"{args.image} is a huge image ({height} x {width}); its labels are written as a tiled TIFF "
            "or an OME-Zarr only.",
            "Give -o a name ending in .tif or .ome.zarr.",
        )
    if args.overlay:
        raise UsageError(
            f"{args.image} is a huge image ({height} x {width}); fmscope writes no overlay picture of it.",
            "Leave out --overlay (open the image and the label TIFF in a viewer such as napari or QuPath).",
        )
    kind = "an OME-Zarr label image" if suffix == ".zarr" else "a tiled TIFF"
    print(f"note: {args.image} is {height} x {width}: read crop by crop, labels written as {kind}")
    if image.note:
        print(f"note: {image.note}")
    segmenter = _segmenter(args)
    segmenter.set_image(image, window=args.window)
    started = time.perf_counter()
    results = _run_prompts(args, segmenter)
    dtype = _labels_dtype(len(results))
    pieces = [
        (r.crop[0], r.crop[1], np.multiply(r.mask, dtype(label), dtype=dtype)) for label, r in enumerate(results, 1)
    ]
    write = write_ome_zarr_labels if suffix == ".zarr" else write_tiled_labels
    pixels = write(args.output, (height, width), dtype, pieces, geometry=image.geometry)
    scores = ", ".join(f"{r.score:.3f}" for r in results)
    print(
        f"wrote {args.output}: {len(results)} object(s), {pixels} pixels, "
        f"model score {scores} ({time.perf_counter() - started:.2f} s)"
    )
    _geometry_note(image.geometry, args.output)
    return 0


def cmd_volume(args: argparse.Namespace) -> int:
    from fmscope.imaging import io
    from fmscope.imaging.volume import segment_volume

    check_outputs(
        [Output("-o", args.output, VOLUME_SUFFIXES), Output("--cache-dir", args.cache_dir, FOLDER, fills=True)],
        [args.volume],
    )
    volume = io.read_volume(args.volume, series=args.series)
    io.check_geometry_output(volume.geometry, Path(args.output))  # before any work: can -o hold its placement?
    if volume.source:
        print(f"DICOM series read: {volume.source}")
    for note in volume.notes:
        print(f"fmscope volume: note: {note}", file=sys.stderr)
    boxes = {label: box for label, box in enumerate(args.box, start=1)}
    if models.volume_flow(args.model) == "tracking":  # MedSAM2's 3D flow (fmscope.cli.tracking)
        from fmscope.cli.tracking import volume_labels_by_tracking

        labels = volume_labels_by_tracking(args, volume)
    else:
        segmenter = _segmenter(args)
        _warn_if_foreign(segmenter, volume.array, args.window)
        with tqdm_progress("slice") as progress:
            labels = segment_volume(
                volume.array,
                args.slice,
                boxes,
                segmenter=segmenter,
                window=args.window,
                direction=args.direction,
                slice_range=tuple(args.range) if args.range else None,
                progress=progress,
            )
    io.write_volume(labels, volume, args.output)
    slices = np.nonzero(labels.reshape(labels.shape[0], -1).any(axis=1))[0]
    extent = f"slices {slices.min()}..{slices.max()}" if len(slices) else "no slices"
    print(f"wrote {args.output}: {len(boxes)} object(s), {int((labels > 0).sum())} voxels, {extent}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fmscope import metrics
    from fmscope.imaging.labels import read_label_image
    from fmscope.imaging.same_voxels import on_grid

    # label images as stored (ids kept, so --label N is the file's N; palette indices, not colours)
    predicted, true = read_label_image(args.prediction, instances=False), read_label_image(args.truth, instances=False)
    prediction, predicted_grid, truth, true_grid = predicted.array, predicted.geometry, true.array, true.geometry
    for note in predicted.notes + true.notes:
        print(f"fmscope eval: note: {note}", file=sys.stderr)
    placed, how = on_grid(truth, true_grid, prediction.shape, predicted_grid)
    if placed is None:  # both grids known, and the truth's voxels are not the prediction's
        raise FmscopeError(
            f"The prediction and the truth lie on different grids in patient space (prediction: shape "
            f"{prediction.shape}, {_describe(predicted_grid)}; truth: shape {truth.shape}, {_describe(true_grid)}).",
            "Compare masks written on the same image's grid (fmscope writes masks on its input's), or resample the "
            "truth onto the prediction's grid with nearest neighbour (3D Slicer's Resample Scalar Volume, SimpleITK "
            "Resample with sitkNearestNeighbor).",
        )
    if how:  # flipped / swapped axes, or a block of the grid (a 3D Slicer segmentation cropped to its extent)
        print(f"fmscope eval: note: the truth {how}; compared on the prediction's grid voxel by voxel", file=sys.stderr)
        truth, true_grid = placed, predicted_grid
    if prediction.shape != truth.shape:
        raise FmscopeError(
            f"Shapes differ: prediction {prediction.shape}, truth {truth.shape}.", "Compare masks on the same grid."
        )
    grid = predicted_grid or true_grid
    spacing = None
    if grid is not None:
        spacing = tuple(reversed(grid.spacing)) if prediction.ndim == 3 else grid.spacing_yx
    pred_mask, true_mask = metrics.label_masks(prediction, truth, args.label)  # a --label in neither: refused
    unit = "mm" if spacing is not None else "px"
    if not pred_mask.any() and not true_mask.any():  # nothing labelled in either file: 0 / 0
        print(
            "fmscope eval: note: both masks are empty (no nonzero label in either file): Dice and NSD are 0 / 0, "
            "undefined, printed as nan (as nnU-Net reports them)",
            file=sys.stderr,
        )
        print(f"dice nan  nsd@{args.tolerance:g}{unit} nan")
        return 0
    score_dice = metrics.dice(pred_mask, true_mask)
    score_nsd = metrics.nsd(pred_mask, true_mask, tolerance=args.tolerance, spacing=spacing)
    print(f"dice {score_dice:.4f}  nsd@{args.tolerance:g}{unit} {score_nsd:.4f}")
    return 0


def _describe(grid) -> str:
    return (
        f"spacing {tuple(round(v, 4) for v in grid.spacing)}, origin {tuple(round(v, 3) for v in grid.origin)}, "
        f"direction {tuple(round(v, 3) for v in grid.direction)}"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from fmscope.demo import run_demo

    check_outputs([Output("-o", args.output, FOLDER, fills=True)])
    with tqdm_progress() as progress:
        run_demo(Path(args.output), fast=args.fast, cases=tuple(args.cases), backend=args.backend, progress=progress)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the imaging commands."""
    segment = commands.add_parser("segment", help="segment objects in a 2D image from boxes / points")
    segment.add_argument(
        "image",
        help="TIFF, PNG, JPEG (grey, RGB, alpha ignored; 1 to 16 bits or float), one DICOM "
        "file, or a 2D / one-slice NIfTI, NRRD, MHA (geometry kept in .nii.gz output)",
    )
    add_prompt_options(segment, "in pixels")
    segment.add_argument(
        "-o",
        "--output",
        required=True,
        help="label image to write (.tif, .png, or .nii.gz / .nrrd / .mha with the input's geometry; "
        ".ome.zarr: an OME-Zarr label image, chunk by chunk)",
    )
    segment.add_argument("--overlay", help="also write an overlay picture (.png)")
    _add_model_options(segment, models.SEGMENT)
    segment.set_defaults(run=cmd_segment)

    volume = commands.add_parser("volume", help="segment through a 3D volume from a box on one slice")
    volume.add_argument("volume", help="NIfTI, NRRD, MHA, or a DICOM folder")
    volume.add_argument(
        "--series",
        help="in a DICOM folder holding several series: the number fmscope lists "
        "(or the Series Instance UID) of the one to read",
    )
    volume.add_argument("--slice", type=int, required=True, help="key slice index (z, 0-based)")
    volume.add_argument(
        "--box",
        nargs=4,
        type=float,
        action="append",
        required=True,
        metavar=("X0", "Y0", "X1", "Y1"),
        help="box on the key slice; repeat for several objects",
    )
    volume.add_argument("--range", nargs=2, type=int, metavar=("FIRST", "LAST"), help="limit to these slices")
    volume.add_argument("--direction", choices=("both", "up", "down"), default="both")
    volume.add_argument(
        "-o", "--output", required=True, help="label volume to write, same geometry (.nii.gz, .nii, .nrrd, .mha)"
    )
    _add_model_options(volume, models.VOLUME)
    volume.set_defaults(run=cmd_volume)

    evaluate = commands.add_parser("eval", help="Dice and NSD of a predicted mask against ground truth")
    evaluate.add_argument("prediction")
    evaluate.add_argument("truth")
    evaluate.add_argument("--label", type=int, help="compare this label only (default: any nonzero)")
    evaluate.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="NSD tolerance: mm when the files carry a pixel size (NIfTI, NRRD, DICOM), else px",
    )
    evaluate.set_defaults(run=cmd_eval)

    demo = commands.add_parser("demo", help="run the default model on every sample case")
    demo.add_argument("-o", "--output", default="demo_output", help="folder for masks and overlays")
    demo.add_argument("--fast", action="store_true", help="bfloat16 / fp16 encoder where the CPU has it")
    demo_cases = [case.name for case in samples.CASES + samples.TIMELAPSES]
    demo.add_argument(
        "--cases",
        nargs="+",
        choices=demo_cases,
        default=demo_cases,
        metavar="CASE",
        help=f"run only these sample cases (default: all: {', '.join(demo_cases)})",
    )
    add_backend_option(demo)
    demo.set_defaults(run=cmd_demo)
