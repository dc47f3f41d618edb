"""Speed where users wait, each figure a ratio of two timings taken in this one run.

Run: ``.venv/bin/python benchmarks/speed.py [--nuclei N] [--skip-startup]`` (``make bench``).
Sections: start-up (fresh interpreters), torch threads with one core taken by another process,
a small-object prompt after its zoom crops were prepared vs a decode from the whole-image
embedding, ROI-zoom accuracy on thin objects (synthetic rods, benchmarks/thin_objects.py) and on
the nuclei sample for the crop scheme before this change (grid of step side/2, zoom when the
object spans < 40 model px), the current one (fmscope.imaging.roi), a finer lattice (step side/4) and
crops centred on each object with 3x its long side (the reference), and the nuclei demo path
(``predict_many`` on all boxes) before vs now. On a shared machine absolute times vary; the
ratios are taken within one run. The load average is printed with each section.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import thin_objects  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def wall(code: str, repeats: int = 2) -> float:
    """Best wall time (s) of a fresh interpreter running ``code``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return min(times)


def startup() -> None:
    print(f"== start-up (fresh interpreters, best of 2; {load()})", flush=True)
    python = wall("pass")
    torch_s = wall("import torch")
    engine = wall("from fmscope.imaging.predictor import Segmenter")
    torchvision = wall("import torch, torchvision, segment_anything")
    helps = wall(
        "from fmscope.cli import main\nimport contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n    except SystemExit: pass"
    )
    print(
        f"python alone {python:.2f} s; import torch {torch_s:.2f} s; fmscope engine import "
        f"(Segmenter) {engine:.2f} s = {engine / torch_s:.2f}x torch; torch + segment_anything's package "
        f"(torchvision, torch._dynamo: the import before) {torchvision:.2f} s = {torchvision / torch_s:.2f}x torch"
    )
    print(f"fmscope --help {helps:.2f} s ({helps / torch_s:.2f}x import torch)")
    ct = ROOT / "sample_data" / "ct_lung_slice.tif"
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "fmscope_speed_ct.tif"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "fmscope.cli",
            "segment",
            str(ct),
            "--box",
            "84",
            "83",
            "107",
            "104",
            "--window",
            "lung",
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    segment_s = time.perf_counter() - started
    out.unlink(missing_ok=True)
    print(
        f"fmscope segment on the CT slice, whole command {segment_s:.2f} s ({segment_s / torch_s:.2f}x import torch)",
        flush=True,
    )


def _spin(stop: multiprocessing.Event) -> None:
    while not stop.is_set():
        pass


def threads(segmenter, image) -> None:
    import torch

    from fmscope.threads import ThreadPolicy

    batch = segmenter.model.transform.image(segmenter.mapped_image)[0][None]
    encoder = segmenter.model.net.image_encoder

    def encode_ms(repeats: int = 3) -> float:
        times = []
        with torch.inference_mode():
            encoder(batch)
            for _ in range(repeats):
                started = time.perf_counter()
                encoder(batch)
                times.append((time.perf_counter() - started) * 1000)
        return float(np.median(times))

    original = torch.get_num_threads()
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
    spinner.start()
    try:
        time.sleep(1.0)
        print(f"== torch threads, one core taken by a spinning process ({os.cpu_count()} CPUs; {load()})", flush=True)
        by_hand = {}
        for count in (1, 2):
            torch.set_num_threads(count)
            by_hand[count] = encode_ms()
        policy = ThreadPolicy(cores=None, ceiling=original)
        chosen = policy.apply()
        with_policy = encode_ms()
    finally:
        stop.set()
        spinner.join()
        torch.set_num_threads(original)
    best = min(by_hand.values())
    print(
        f"encoder: 1 thread {by_hand[1]:.0f} ms, 2 threads {by_hand[2]:.0f} ms; policy chose {chosen} "
        f"(free cores measured {policy.free_cores:.2f}): {with_policy:.0f} ms = {with_policy / best:.2f}x the better "
        f"by hand",
        flush=True,
    )


def encoder_batching(segmenter) -> None:
    """Four crops through the encoder one by one vs as one batch (what ``encode_batch`` chooses)."""
    import torch

    from fmscope.imaging import roi

    crops = roi.lattice(64, segmenter.image_shape)[:4]
    rgb = segmenter.mapped_image
    tensors = torch.stack([segmenter.model.transform.image(rgb[c[0] : c[2], c[1] : c[3]])[0] for c in crops])
    encoder = segmenter.model.net.image_encoder
    with torch.inference_mode():
        encoder(tensors[:1])
        started = time.perf_counter()
        singles = [encoder(tensors[i : i + 1]) for i in range(len(crops))]
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        batched = encoder(tensors)
        batch_s = time.perf_counter() - started
    same = max(float((a[0] - b).abs().max()) for a, b in zip(singles, batched))
    print(
        f"== encoder batching ({load()}): 4 crops one by one {single_s:.1f} s, one batch of 4 {batch_s:.1f} s "
        f"= {single_s / batch_s:.2f}x faster batched (max abs difference {same:.1e}; "
        f"encode_batch on this device: {segmenter.encode_batch})",
        flush=True,
    )


def small_prompt_latency(segmenter, image, boxes: list[np.ndarray]) -> None:
    from fmscope.imaging.cache import EmbeddingCache

    print(f"== small-object prompt vs whole-image decode (nuclei, {len(boxes)} boxes; {load()})", flush=True)
    segmenter.cache = EmbeddingCache(max_items=256)
    segmenter.set_image(image)
    segmenter.embed()
    whole = []
    for box in boxes:
        started = time.perf_counter()
        segmenter.predict(box=box, roi_zoom=False)
        whole.append(time.perf_counter() - started)
    cold = []
    for box in boxes[: max(2, len(boxes) // 3)]:
        started = time.perf_counter()
        segmenter.predict(box=box)
        cold.append(time.perf_counter() - started)
    segmenter.cache = EmbeddingCache(max_items=256)
    segmenter.set_image(image)
    for box in boxes:  # what the napari worker prepares around the last small box
        segmenter.prepare(segmenter.zoom_crops_near(box, radius_factor=0.0))
    calls = segmenter.encoder_calls
    prepared = []
    for box in boxes:
        started = time.perf_counter()
        segmenter.predict(box=box)
        prepared.append(time.perf_counter() - started)
    assert segmenter.encoder_calls == calls
    base = np.median(whole)
    print(
        f"median: whole-image decode {base * 1000:.0f} ms; small box with its crop prepared "
        f"{np.median(prepared) * 1000:.0f} ms = {np.median(prepared) / base:.2f}x; small box, crop not prepared "
        f"(encoder pass) {np.median(cold) * 1000:.0f} ms = {np.median(cold) / base:.1f}x",
        flush=True,
    )


def before_crop(extent: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The ROI-zoom crop before this change: zoom below 40 model px, grid of step side/2."""
    side = max(extent[2] - extent[0], extent[3] - extent[1]) + 1
    if side * 256 / max(shape) >= 40.0:
        return None
    crop_side = max(64, 1 << int(np.ceil(np.log2(side * 2.0))))
    if crop_side >= max(shape):
        return None

    def start(centre: float, length: int) -> tuple[int, int]:
        if crop_side >= length:
            return 0, length
        starts = list(range(0, length - crop_side + 1, crop_side // 2))
        if starts[-1] != length - crop_side:
            starts.append(length - crop_side)
        best = min(starts, key=lambda s: (abs(s + crop_side / 2 - centre), s))
        return best, best + crop_side

    y0, y1 = start((extent[1] + extent[3]) / 2, shape[0])
    x0, x1 = start((extent[0] + extent[2]) / 2, shape[1])
    return y0, x0, y1, x1


def centred_crop(extent: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Reference: a crop centred on the object, side 3x its long side (moved inside the image)."""
    side = int(np.ceil(3 * (max(extent[2] - extent[0], extent[3] - extent[1]) + 1)))
    if side >= max(shape):
        return None
    out = []
    for centre, length in (((extent[1] + extent[3]) / 2, shape[0]), ((extent[0] + extent[2]) / 2, shape[1])):
        if side >= length:
            out.append((0, length))
            continue
        begin = min(max(int(round(centre - side / 2)), 0), length - side)
        out.append((begin, begin + side))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def zoom_accuracy(segmenter, name: str, image, truth, boxes: dict[int, np.ndarray], schemes: list[str]) -> dict:
    from fmscope import metrics
    from fmscope.imaging import roi
    from fmscope.imaging.cache import EmbeddingCache

    crops = {"before": before_crop, "centred 3x": centred_crop}
    figures = {}
    for scheme in schemes:
        segmenter.cache = EmbeddingCache(max_items=256)
        segmenter.set_image(image)
        calls = segmenter.encoder_calls
        if scheme in crops:
            segmenter._crop_for = lambda extent, zoom, rule=crops[scheme]: rule(extent, segmenter.image_shape)
        kept_divisor = roi.LATTICE_DIVISOR
        roi.LATTICE_DIVISOR = 4 if scheme == "step side/4" else kept_divisor
        started = time.perf_counter()
        results = segmenter.predict_many(list(boxes.values()))
        seconds = time.perf_counter() - started
        roi.LATTICE_DIVISOR = kept_divisor
        vars(segmenter).pop("_crop_for", None)
        dice = float(np.mean([metrics.dice(r.mask, truth == label) for label, r in zip(boxes, results)]))
        figures[scheme] = (dice, seconds, segmenter.encoder_calls - calls)
        print(
            f"{name} ({len(boxes)} objects), {scheme}: Dice {dice:.3f}, {figures[scheme][2]} crops embedded, "
            f"{seconds:.0f} s",
            flush=True,
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nuclei", type=int, default=125, help="nuclei boxes for the accuracy / demo rows")
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args()
    if not args.skip_startup:
        startup()

    from fmscope import samples
    from fmscope.imaging import io
    from fmscope.imaging.predictor import Segmenter

    segmenter = Segmenter(device="cpu")
    case = samples.get_case("nuclei")
    image, truth = io.read_image(case.image_path), io.read_image(case.labels_path)
    boxes = samples.boxes_from_labels(truth)
    step = max(1, len(boxes) // args.nuclei)
    subset = dict(list(boxes.items())[::step][: args.nuclei])
    segmenter.set_image(image)
    threads(segmenter, image)
    encoder_batching(segmenter)
    small_prompt_latency(segmenter, image, list(subset.values())[:10])

    rods_image, rods_truth = thin_objects.rods()
    print(f"== ROI zoom accuracy ({load()})", flush=True)
    rods = zoom_accuracy(
        segmenter,
        "thin rods",
        rods_image,
        rods_truth,
        samples.boxes_from_labels(rods_truth),
        ["before", "now", "step side/4", "centred 3x"],
    )
    print(
        f"thin rods: now - centred 3x = {rods['now'][0] - rods['centred 3x'][0]:+.3f} Dice "
        f"(before: {rods['before'][0] - rods['centred 3x'][0]:+.3f})",
        flush=True,
    )
    nuclei = zoom_accuracy(segmenter, "nuclei", image, truth, subset, ["before", "now", "step side/4"])
    print(
        f"nuclei demo path (predict_many): now / before time = {nuclei['now'][1] / nuclei['before'][1]:.2f}, "
        f"crops {nuclei['now'][2]} vs {nuclei['before'][2]}",
        flush=True,
    )


if __name__ == "__main__":
    main()
