"""``fmscope segment | volume | eval | demo``: the MedSAM-family imaging commands."""

from __future__ import annotations

import argparse
import time
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

    if args.model.startswith(("medsam2", "sam2")):  # MedSAM2's 3D flow (fmscope.cli.tracking)
        from fmscope.cli.tracking import cmd_volume_tracker
        return cmd_volume_tracker(args)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from fmscope.demo import run_demo

    run_demo(Path(args.output), fast=args.fast)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the imaging commands."""
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

    demo = commands.add_parser("demo", help="run the default model on every sample case")
    demo.add_argument("-o", "--output", default="demo_output", help="folder for masks and overlays")
    demo.add_argument("--fast", action="store_true", help="bfloat16 encoder")
    demo.set_defaults(run=cmd_demo)
