"""``fmscope track``: follow objects through a video, time-lapse, cine DICOM or volume.

Also runs ``fmscope volume --model medsam2`` (MedSAM2's 3D flow) for cli/imaging.py.
Nothing is written before tracking has finished; every file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fmscope import models
from fmscope.atomic import atomic_write
from fmscope.cli.options import add_backend_option, add_prompt_options, window_option
from fmscope.cli.progress import tqdm_progress
from fmscope.errors import FmscopeError, UsageError

LABEL_SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz", ".nrrd", ".mha")


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable or clashing output names before any work (:func:`fmscope.outputs.check_outputs`)."""
    from fmscope.outputs import FOLDER, Output, check_outputs

    check_outputs(
        [
            Output("-o", args.output, LABEL_SUFFIXES),
            Output("--overlay", args.overlay, (".mp4",)),
            Output("--table", args.table, (".csv",)),
            Output("--ctc", args.ctc, FOLDER),
            Output("--geff", args.geff, FOLDER),
        ],
        [args.input, args.checkpoint, args.model],
    )


def _point_prompts(args: argparse.Namespace) -> dict[int, tuple[list, list]]:
    """{object: (points, labels)} from --point / --label / --object."""
    points = args.point or []
    labels = args.label or [1] * len(points)
    objects = args.object or [1] * len(points)
    if len(labels) != len(points):
        raise FmscopeError(f"{len(points)} --point but {len(labels)} --label.", "Give one --label per --point.")
    if len(objects) == 1 and len(points) > 1:
        objects = objects * len(points)
    if len(objects) != len(points):
        raise FmscopeError(
            f"{len(points)} --point but {len(objects)} --object.",
            "Give one --object per --point, or one for all of them.",
        )
    prompts: dict[int, tuple[list, list]] = {}
    for point, label, obj in zip(points, labels, objects):
        prompts.setdefault(obj, ([], []))
        prompts[obj][0].append(point)
        prompts[obj][1].append(label)
    return prompts


def run_tracking(session, direction: str, frame_range) -> float:
    """Propagate with a progress bar; returns seconds spent."""
    started = time.perf_counter()
    with tqdm_progress("frame") as progress:
        for _ in session.propagate(direction, frame_range, progress=progress):
            pass
    return time.perf_counter() - started


def partial_path(output: str | Path) -> Path:
    """Where the frames tracked before a failure are kept: ``labels.tif`` -> ``labels.partial.tif``."""
    from fmscope.atomic import file_suffix

    output = Path(output)
    suffix = file_suffix(output)
    return output.with_name(output.name[: len(output.name) - len(suffix)] + ".partial" + suffix)


def keep_partial(session, output: str | Path, stopped) -> FmscopeError:
    """The error to raise for a run stopped part-way (``stopped``: a TrackingStopped): the frames
    tracked before it are written to :func:`partial_path` (never over an existing file)."""
    from fmscope.imaging.tracking.export import write_session_labels

    partial = partial_path(output)
    if not stopped.done:
        return stopped
    if partial.exists():
        kept = f"{partial} exists, so they were not written"
    else:
        write_session_labels(session, partial)
        kept = f"they are kept in {partial} (frame {stopped.frame} and the frames not reached are empty there)"
    return FmscopeError(
        f"{stopped.problem} The {stopped.done} frame(s) tracked before it were not lost: {kept}.", stopped.fix
    )


def write_overlay_video(session, path: str, window) -> None:
    """An mp4 of the frames (mapped to 8 bits) with the labels in stable colours per object. H.264 in yuv420p (what
    players take) needs an even width and height: an odd one gets one more column / row, a copy of the last (the
    frame whole, its pixels where they were; was: the last column / row cut off)."""
    import av

    from fmscope.imaging.overlay import draw_overlay
    from fmscope.imaging.tracking.preprocess import intensity_for

    frames = session.frames
    to_uint8 = intensity_for(frames, window)
    rate = int(round(frames.fps)) if frames.fps else 10

    def write(target: Path) -> None:
        with av.open(str(target), "w") as container:
            stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
            stream.width, stream.height = -(-frames.width // 2) * 2, -(-frames.height // 2) * 2
            pad = ((0, stream.height - frames.height), (0, stream.width - frames.width), (0, 0))
            stream.pix_fmt = "yuv420p"
            for index in range(frames.n_frames):
                image = to_uint8(frames[index])
                rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
                picture = np.pad(draw_overlay(rgb, session.frame_labels(index), by_id=True), pad, mode="edge")
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic_write(Path(path), write)


def _session(args: argparse.Namespace, frames):
    from fmscope.imaging.tracking import TrackingSession

    return TrackingSession(  # a model that cannot track is refused by the engine (make_backend), before loading
        frames,
        model=args.model,
        checkpoint=args.checkpoint,
        window=args.window,
        device=args.device,
        precision="fast" if args.fast else "fp32",
        inference_backend=args.backend,
        divisions=args.divisions,
        detect_new=args.detect_new,
    )


def cmd_track(args: argparse.Namespace) -> int:
    from fmscope.imaging.io import check_geometry_output
    from fmscope.imaging.tracking import open_frames
    from fmscope.imaging.tracking.export import (
        write_session_ctc,
        write_session_geff,
        write_session_labels,
        write_session_table,
    )
    from fmscope.imaging.tracking.session import TrackingStopped

    _check_outputs(args)
    if not args.box and not args.point:
        raise FmscopeError("No prompt given.", "Add --box X0 Y0 X1 Y1 (object k = the k-th box) and/or --point X Y.")
    lineage = [flag for flag, on in (("--divisions", args.divisions), ("--detect-new", args.detect_new)) if on]
    if lineage and args.direction == "backward":
        raise UsageError(
            f"{' and '.join(lineage)} work forward in time (a division seen backward is two cells merging); "
            "--direction backward would find none.",
            f"Prompt an earlier frame and use --direction forward, or leave out {' and '.join(lineage)}.",
        )
    frames = open_frames(args.input, channel=args.channel)
    for note in frames.notes:
        print(f"fmscope track: note: {note}", file=sys.stderr)
    placed = frames.geometry or (frames.volume.geometry if frames.volume is not None else None)
    check_geometry_output(placed, Path(args.output))  # before any work: can -o hold where the input lies?
    if lineage and args.direction == "both" and args.frame > 0:
        print(
            f"fmscope track: note: {' and '.join(lineage)} apply to frames {args.frame} onwards (forward in time); "
            f"frames before {args.frame} are tracked back without them",
            file=sys.stderr,
        )
    session = _session(args, frames)
    for obj, box in enumerate(args.box or [], start=1):
        session.add_box(args.frame, obj, box)
    for obj, (points, labels) in _point_prompts(args).items():
        session.add_points(args.frame, obj, points, labels)
    try:
        seconds = run_tracking(session, args.direction, tuple(args.range) if args.range else None)
    except TrackingStopped as stopped:
        raise keep_partial(session, args.output, stopped) from None
    note = write_session_labels(session, args.output)
    if note:
        print(f"fmscope track: note: {note}", file=sys.stderr)
    if args.table:
        rows = write_session_table(session, args.table)
        print(f"wrote {args.table}: {rows} rows")
    if args.ctc:
        tracks = write_session_ctc(session, args.ctc)
        print(f"wrote {args.ctc}: {tracks} tracks (Cell Tracking Challenge res_track.txt + mask###.tif)")
    if args.geff:
        nodes = write_session_geff(session, args.geff)
        print(f"wrote {args.geff}: lineage graph of {nodes} detections (GEFF)")
    if args.overlay:
        write_overlay_video(session, args.overlay, args.window)
        print(f"wrote {args.overlay}")
    if session.lineage.parents:
        parents = sorted(set(session.lineage.parents.values()))
        print(f"divisions: {len(parents)} (parents {', '.join(map(str, parents))})")
    # prompted objects, and the daughters and new objects the tracker started
    found_on = {obj: len(session.object_frames(obj)) for obj in sorted(set(session.prompts) | set(session.tracked))}
    spans = ", ".join(f"{obj}: {count} frames" for obj, count in found_on.items())
    for obj, count in found_on.items():
        if not count and obj in session.prompts:
            print(
                f"fmscope track: warning: object {obj} was found on no frame (its prompt gave an empty mask, or "
                "an earlier object took its pixels); check its box or point",
                file=sys.stderr,
            )
    print(
        f"wrote {args.output}: {len(found_on)} object(s) through {frames.n_frames} frames ({spans}); "
        f"{seconds / max(frames.n_frames, 1) * 1000:.0f} ms per frame with {args.model}"
    )
    return 0


def volume_labels_by_tracking(args: argparse.Namespace, volume) -> np.ndarray:
    """MedSAM2's 3D flow for ``fmscope volume --model medsam2|sam2.1_*`` (box on the key slice, both ways):
    the (z, y, x) label volume; cli/imaging.py checks the outputs, reads the volume and writes the result.
    The flow itself is the engine's :func:`fmscope.imaging.tracking.volume.track_volume` (also used by 3D Slicer)."""
    from fmscope.imaging.tracking.volume import track_volume

    if models.volume_flow(args.model) != "tracking":
        raise FmscopeError(
            f"'{args.model}' has no 3D tracking flow.",
            f"Use --model with one of: {', '.join(models.names(models.TRACK, family='sam2'))}.",
        )
    with tqdm_progress("slice") as progress:
        return track_volume(
            volume,
            args.slice,
            dict(enumerate(args.box, start=1)),
            model=args.model,
            checkpoint=args.checkpoint,
            window=args.window,
            device=args.device,
            direction=args.direction,
            slice_range=tuple(args.range) if args.range else None,
            progress=progress,
            name=str(args.volume),
            backend=args.backend,
            precision="fast" if args.fast else "fp32",
        )


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``fmscope track``."""

    track = commands.add_parser("track", help="track objects through a video, time-lapse, cine DICOM or volume")
    track.add_argument(
        "input",
        help="mp4/avi/mov, multi-frame DICOM, TIFF stack (T,Y,X), folder of frames, "
        "NIfTI/NRRD volume or DICOM series folder (z = frame axis)",
    )
    track.add_argument("--frame", type=int, required=True, help="frame of the prompts (0-based)")
    track.add_argument("--channel", type=int, help="the channel to track in a TIFF with a channel axis (0-based)")
    add_prompt_options(track, "on --frame")
    track.add_argument(
        "--object",
        type=int,
        action="append",
        help="object id of each --point (one per point, or one for all; default 1)",
    )
    track.add_argument(
        "--model",
        default=models.DEFAULT_SEGMENTER,
        help=f"{models.choices_text(models.TRACK)} (default {models.DEFAULT_SEGMENTER}, embedded; the "
        "others need --checkpoint; a model file tracks as the default tracker does)",
    )
    track.add_argument("--checkpoint", help="weights file or folder (else $FMSCOPE_CHECKPOINT_DIR)")
    track.add_argument(
        "--fast",
        action="store_true",
        help="bfloat16 / fp16 image encoder where the CPU has it (faster, not bit-exact; sam2 models: on OpenVINO)",
    )
    add_backend_option(track)
    track.add_argument("--direction", choices=("both", "forward", "backward"), default="both")
    track.add_argument(
        "--divisions",
        action="store_true",
        help="end an object that divides and start its two daughters (parent recorded; forward only, litemedsam)",
    )
    track.add_argument(
        "--detect-new", action="store_true", help="start a track for new objects on later frames (litemedsam)"
    )
    track.add_argument("--range", nargs=2, type=int, metavar=("FIRST", "LAST"), help="track only these frames")
    track.add_argument("--window", type=window_option, help="CT/MR window: preset or LEVEL,WIDTH; default automatic")
    track.add_argument("--device", help="cpu, cuda ... (default: cuda if available)")
    track.add_argument(
        "-o",
        "--output",
        required=True,
        help="label stack to write (.tif, or .nii.gz / .nrrd / .mha: time as the third axis for a time-lapse; "
        "a cine (x, y, 1, t) keeps its 4D grid)",
    )
    track.add_argument("--overlay", help="also write an overlay video (.mp4)")
    track.add_argument(
        "--table", help="also write a table (.csv): object, frame, area, centroid, intensity, score, parent"
    )
    track.add_argument(
        "--ctc", metavar="DIR", help="also write a Cell Tracking Challenge folder (res_track.txt L B E P + mask###.tif)"
    )
    track.add_argument("--geff", metavar="PATH", help="also write the lineage graph as a GEFF zarr store")
    track.set_defaults(run=cmd_track)
