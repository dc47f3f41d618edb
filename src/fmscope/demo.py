"""``fmscope demo``: the default model on every sample case, prompts from the ground truth."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fmscope import metrics, samples
from fmscope.imaging import io
from fmscope.imaging.image_input import to_rgb_uint8
from fmscope.imaging.intensity import resolve_intensity
from fmscope.imaging.overlay import draw_overlay
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.volume import segment_volume
from fmscope.models import DEFAULT_SEGMENTER
from fmscope.progress import Progress, as_progress


def _demo_image(case: samples.SampleCase, segmenter: Segmenter, output: Path, progress: Progress) -> float:
    image, truth = io.read_image(case.image_path), io.read_image(case.labels_path)
    boxes = samples.boxes_from_labels(truth)
    segmenter.set_image(image, window=case.window)
    results = segmenter.predict_many(list(boxes.values()), progress=progress)
    labels = np.zeros(truth.shape, dtype=np.uint16)
    for label, result in zip(boxes, results):
        labels[result.mask & (labels == 0)] = label
    io.write_image(labels, output / f"{case.name}_labels.tif")
    overlay = draw_overlay(segmenter.mapped_image, labels, boxes.values())
    io.write_image(overlay, output / f"{case.name}_overlay.png")
    return float(np.mean([metrics.dice(r.mask, truth == label) for label, r in zip(boxes, results)]))


def _demo_volume(case: samples.SampleCase, segmenter: Segmenter, output: Path, progress: Progress) -> float:
    volume, truth = io.read_volume(case.image_path), io.read_volume(case.labels_path).array
    z = samples.key_slice(truth)
    boxes = samples.boxes_from_labels(truth[z])
    labels = segment_volume(volume.array, z, boxes, segmenter=segmenter, window=case.window, progress=progress)
    io.write_volume(labels, volume, output / f"{case.name}_labels.nii.gz")
    rgb = to_rgb_uint8(volume.array[z], resolve_intensity(volume.array, case.window))
    io.write_image(draw_overlay(rgb, labels[z], boxes.values()), output / f"{case.name}_overlay.png")
    return metrics.dice(labels > 0, truth > 0)


TRACK_DEMO_FRAMES, TRACK_DEMO_SIDE = 5, 256  # as tests/test_tracking_litemedsam.py: 89 object-frames


def _demo_tracking(segmenter: Segmenter, output: Path, progress: Progress) -> float:
    """Track the nuclei of a corner of the HeLa time-lapse; mean Dice inside the ground-truth tracks."""
    from fmscope.imaging.tracking import TrackingSession, open_frames
    from fmscope.imaging.tracking.evaluation import score_tracker
    from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker

    case = samples.get_case("hela_timelapse")
    from fmscope.imaging.labels import read_label_image

    stack = open_frames(case.image_path)
    images = np.stack([stack[t][:TRACK_DEMO_SIDE, :TRACK_DEMO_SIDE] for t in range(TRACK_DEMO_FRAMES)])
    tracks = read_label_image(case.labels_path, instances=False).array[
        :TRACK_DEMO_FRAMES, :TRACK_DEMO_SIDE, :TRACK_DEMO_SIDE
    ]
    frames = open_frames(images)
    session = TrackingSession(frames, backend=LiteMedSAMTracker(frames, segmenter=segmenter))
    score, _ = score_tracker(session, tracks, progress=progress)
    io.write_image(session.labels(), output / "hela_timelapse_tracks.tif")
    return score


DEMO_CASES: tuple[str, ...] = tuple(case.name for case in samples.CASES + samples.TIMELAPSES)


def run_demo(
    output: Path,
    fast: bool = False,
    cases: tuple[str, ...] = DEMO_CASES,
    backend: str | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Segment the sample ``cases`` (default: all of :data:`DEMO_CASES`), write labels + overlay PNGs to
    ``output``, print Dice per case. Every case reports its steps to ``progress`` (messages prefixed with
    the case's name; the CLI draws them as bars on stderr). ``backend``: the encoder's runtime (None:
    ``$FMSCOPE_BACKEND``, else OpenVINO on CPU)."""
    progress = as_progress(progress)
    output.mkdir(exist_ok=True)
    segmenter = Segmenter(DEFAULT_SEGMENTER, precision="fast" if fast else "fp32", backend=backend)
    scores = {}
    print(
        f"fmscope demo: LiteMedSAM ({segmenter.precision}, {segmenter.backend}) on {segmenter.model.device}, "
        "boxes from ground truth"
    )
    for case in samples.CASES:
        if case.name not in cases:
            continue
        started = time.perf_counter()
        run = _demo_image if case.kind == "image" else _demo_volume
        scores[case.name] = run(case, segmenter, output, progress.within(case.name))
        print(
            f"  {case.name:<16} dice {scores[case.name]:.3f}  ({time.perf_counter() - started:.1f} s)  "
            f"{case.description}"
        )
    if "hela_timelapse" not in cases:
        print(f"masks and overlays in {output.resolve()}")
        return scores
    started = time.perf_counter()
    scores["hela_timelapse"] = _demo_tracking(segmenter, output, progress.within("hela_timelapse"))
    print(
        f"  {'hela_timelapse':<16} dice {scores['hela_timelapse']:.3f}  ({time.perf_counter() - started:.1f} s)  "
        f"tracked by the default tracker from boxes on each track's first frame ({TRACK_DEMO_FRAMES} frames, "
        f"{TRACK_DEMO_SIDE}x{TRACK_DEMO_SIDE} px of the HeLa time-lapse)"
    )
    print(f"masks and overlays in {output.resolve()}")
    return scores
