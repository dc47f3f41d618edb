"""``fmscope replay`` and ``fmscope session info``: a recorded annotation session (fmscope.session_record)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from fmscope.cli.options import add_backend_option
from fmscope.errors import FmscopeError


def _session_image(journal_image, given: str | None):
    """(pixels, geometry or Volume, path) of the session's image: ``--image`` or the path the session recorded. An
    image the session identified by its file (a video or cine read on demand) is given as its path, no geometry."""
    from fmscope.imaging import io

    path = given or journal_image.path
    if not path or not Path(path).exists():
        raise FmscopeError(
            f"The session's image {path or '(no path recorded)'} is not there.",
            "Give the image the session was made on with --image PATH.",
        )
    if journal_image.by_file:
        return path, None, path
    shape = journal_image.shape
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4)):
        image = io.load_image(path)
        return image.array, image.geometry, path
    volume = io.read_volume(path)
    return volume.array, volume, path


def cmd_replay(args: argparse.Namespace) -> int:
    from fmscope.imaging import io
    from fmscope.outputs import LABEL_IMAGE_SUFFIXES, Output, check_outputs
    from fmscope.session_record import ImageIdentity, ModelIdentity, replay
    from fmscope.session_record.engine import engine_identity, load_engine
    from fmscope.session_record.identity import DATASET
    from fmscope.session_record.journal import Journal
    from fmscope.session_record.training import check_trained_weights

    journal = Journal(args.session)
    try:
        recorded_image = ImageIdentity.from_json(journal.meta("image"))
        model = ModelIdentity.from_json(journal.meta("model"))
    finally:
        journal.close()
    check_outputs([Output("-o", args.output, LABEL_IMAGE_SUFFIXES)], [args.session, args.image, recorded_image.path])
    if recorded_image.hashed == DATASET:
        raise FmscopeError(
            f"{args.session} journals training runs only; replay does not re-train, so it has nothing to re-run.",
            f"See what it holds with: fmscope session info {args.session}",
        )
    needed = check_trained_weights(args.session)
    pixels, geometry, path = _session_image(recorded_image, args.image)
    engine = load_engine(model, args.checkpoint, args.device, args.backend, args.precision)
    trained = {
        sha: load_engine(replace(model, name=file), args.checkpoint, args.device, args.backend, args.precision)
        for sha, file in needed.items()
    }
    used = engine_identity(engine)
    result = replay(args.session, pixels, engine, path, trained)
    if isinstance(geometry, io.Volume):
        io.write_volume(result.labels, geometry, args.output)
    else:
        io.write_image(result.labels, args.output, geometry=geometry)
    print(
        f"re-ran {result.rerun} model actions with {model.name} ({used.backend}, {used.precision}); "
        f"{result.from_record} other actions applied from the recorded pixels; wrote {args.output}"
    )
    if result.identical:
        print("identical to the saved labels (every pixel)")
    else:
        changed = int(np.count_nonzero(result.labels != result.saved))
        print(f"differs from the saved labels in {changed} pixels; Dice per object (replayed vs saved):")
        for object_id, value in sorted(result.dice.items()):
            print(f"  {object_id}: {value:.4f}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from fmscope.session_record import methods_summary

    print(methods_summary(args.session))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``replay`` and ``session info``."""
    replay = commands.add_parser("replay", help="re-run a recorded annotation session and write its labels")
    replay.add_argument("session", help="session folder (holds journal.sqlite)")
    replay.add_argument("-o", "--output", required=True, help="label image to write (.tif, .png, .nii.gz ...)")
    replay.add_argument("--image", help="the session's image, when it moved (default: the path recorded)")
    replay.add_argument("--checkpoint", help="weights file or folder (else $FMSCOPE_CHECKPOINT_DIR)")
    replay.add_argument("--precision", choices=("fp32", "fast"), help="encoder precision (default: the session's)")
    add_backend_option(replay)
    replay.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    replay.set_defaults(run=cmd_replay)

    session = commands.add_parser("session", help="inspect a recorded annotation session")
    actions = session.add_subparsers(dest="action", required=True)
    info = actions.add_parser("info", help="print the methods summary: model, weights, prompts, time spent")
    info.add_argument("session", help="session folder (holds journal.sqlite)")
    info.set_defaults(run=cmd_info)
