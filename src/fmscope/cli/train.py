"""``fmscope train-segmenter``: fine-tune a segmentation model on annotated images."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fmscope import models
from fmscope.cli.progress import tqdm_progress
from fmscope.errors import FmscopeError


def cmd_train_segmenter(args: argparse.Namespace) -> int:
    from fmscope.imaging.labels import read_label_image
    from fmscope.imaging.slices import labels_on_image_grid, read_slices
    from fmscope.outputs import HEAD_SUFFIXES, Output, check_outputs
    from fmscope.training.segmenter import checkpoint_path, labelled_images, train_segmenter
    from fmscope.training.settings import TrainSettings

    if len(args.images) != len(args.labels):
        raise FmscopeError(
            f"{len(args.images)} images but {len(args.labels)} label files.",
            "Give one --labels file per image, in the same order.",
        )
    check_outputs(
        [
            Output("-o", args.output, HEAD_SUFFIXES),
            Output("-o (its checkpoint)", checkpoint_path(args.output), HEAD_SUFFIXES),
        ],
        [*args.images, *args.labels, args.checkpoint],
    )
    session = Path(args.session).expanduser() if args.session else None
    if (
        session is not None
        and session.is_dir()
        and not (session / "journal.sqlite").exists()
        and any(session.iterdir())
    ):
        raise FmscopeError(
            f"--session {session} is a folder of other files, not a session folder.",
            "Give an fmscope session folder, or a new folder's path.",
        )
    items = []
    for image_path, labels_path in zip(args.images, args.labels):
        labels = read_label_image(labels_path)
        for note in labels.notes:
            print(f"fmscope train-segmenter: note: {note}", file=sys.stderr)
        image, grid = read_slices(image_path)
        array, moved = labels_on_image_grid(labels.array, labels.geometry, image.shape, grid, Path(image_path).name)
        if moved:
            print(f"fmscope train-segmenter: note: {moved}", file=sys.stderr)
        items += labelled_images(image, array, Path(image_path).name)
    settings = TrainSettings(
        epochs=args.epochs,
        holdout=args.holdout,
        lr=args.lr,
        seed=args.seed,
        patience=args.patience,
        train_encoder=args.train_encoder,
    )
    started = time.time()
    with tqdm_progress() as progress:
        report = train_segmenter(
            items,
            args.output,
            model=args.model,
            checkpoint=args.checkpoint,
            window=args.window,
            settings=settings,
            resume=args.resume,
            device=args.device,
            cache_dir=args.cache_dir,
            progress=progress,
            note=lambda line: print(f"fmscope train-segmenter: note: {line}", file=sys.stderr),
        )
    print(report.summary())
    print(
        f"wrote {args.output} (use it with --model {args.output}); resumable checkpoint {checkpoint_path(args.output)}"
    )
    _journal(args, report, started)
    return 0


def _journal(args: argparse.Namespace, report, started: float) -> None:
    """Append the ``train`` action to the session folder (``--session``, default beside the model file)."""
    from fmscope.session_record.training import default_training_folder, journal_training, train_action

    folder = args.session or default_training_folder(args.output)
    try:
        journal_training(folder, train_action(report, [Path(p).name for p in args.images], started))
    except FmscopeError as error:
        print(
            f"fmscope train-segmenter: note: the model file is written; the run was not journaled: {error}",
            file=sys.stderr,
        )
        return
    print(f"journaled the training run in {folder} (fmscope session info {folder})")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``train-segmenter``."""
    from fmscope.cli.options import window_option
    from fmscope.training.settings import TrainSettings

    defaults = TrainSettings()
    train = commands.add_parser(
        "train-segmenter",
        help="fine-tune a segmentation model on annotated images (CPU, minutes)",
        description="Fine-tune the mask decoder and prompt encoder on instance labels; prints the held-out Dice "
        "of the base and of the tuned model on the same box prompts.",
    )
    train.add_argument("images", nargs="+", help="2D images, (z, y, x) TIFF stacks, NIfTI / NRRD volumes (slices)")
    train.add_argument("--labels", nargs="+", required=True, help="instance label image per image (0 background)")
    train.add_argument("-o", "--output", required=True, help="fmscope model file to write (.pt)")
    train.add_argument(
        "--model",
        default=models.DEFAULT_SEGMENTER,
        help="base model: litemedsam (default), medsam_vit_b, sam_vit_b/l/h, or a model file",
    )
    train.add_argument("--checkpoint", help="base weights file or folder (MedSAM / SAM; else $FMSCOPE_CHECKPOINT_DIR)")
    train.add_argument("--window", type=window_option, help="CT/MR window preset or LEVEL,WIDTH (default: automatic)")
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument(
        "--holdout",
        type=float,
        default=defaults.holdout,
        help="fraction of images (one image: of its objects, on the right) held out to score",
    )
    train.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after this many epochs without a better held-out Dice",
    )
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--train-encoder",
        choices=("none", "last-stage", "lora"),
        default=defaults.train_encoder,
        help="also train the image encoder's last stage: in full (last-stage) or low-rank adapters "
        "on it (lora); default none (the encoder stays frozen, fastest)",
    )
    train.add_argument("--resume", action="store_true", help="continue from MODEL.training.pt beside -o")
    train.add_argument("--device", help="cpu, cuda ... (default: cuda if available)")
    train.add_argument("--cache-dir", help="keep image embeddings on disk here (zarr) for reuse")
    train.add_argument(
        "--session",
        help="session folder to journal the run in (an annotation session's, or a new one; default: "
        "OUTPUT.fmscope-session beside the model file)",
    )
    train.set_defaults(run=cmd_train_segmenter)
