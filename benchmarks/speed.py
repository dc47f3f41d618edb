"""Speed where users wait, each figure a ratio of two timings taken in this one run.

Run: ``.venv/bin/python benchmarks/speed.py [--nuclei N] [--skip-startup]`` (``make bench``).
Sections: start-up (fresh interpreters), torch threads with one core taken by another process,
a small-object prompt after its zoom crops were prepared (its own crop, or a prepared crop
standing in for it) vs a decode from the whole-image embedding. ROI-zoom accuracy is in
benchmarks/thin_objects.py. On a shared machine absolute times vary; the ratios are taken within
one run. The load average is printed with each section.
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

    crops = [(0, 0, 64, 64), (0, 64, 64, 128), (64, 0, 128, 64), (64, 64, 128, 128)]
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
    from fmscope.imaging import roi
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
    # what the napari widget prepares after a small box (PREPARE_RADIUS 0.5): crops around it; boxes of the
    # same size nearby are decoded in one of them (a stand-in for their own crop)
    first = boxes[0]
    segmenter.cache = EmbeddingCache(max_items=256)
    segmenter.set_image(image)
    segmenter.prepare(segmenter.zoom_crops_near(first, radius_factor=0.5))
    calls = segmenter.encoder_calls
    side = roi.crop_side(first)
    nearby = []
    for dx, dy in ((0.3, 0.0), (0.0, -0.3), (-0.2, 0.2), (0.4, 0.1), (-0.1, -0.4)):
        started = time.perf_counter()
        segmenter.predict(box=first + side * np.array([dx, dy, dx, dy]))
        nearby.append(time.perf_counter() - started)
    assert segmenter.encoder_calls == calls
    base = np.median(whole)
    print(
        f"median: whole-image decode {base * 1000:.0f} ms; small box with its crop prepared "
        f"{np.median(prepared) * 1000:.0f} ms = {np.median(prepared) / base:.2f}x; a box near a prepared one (stand-in "
        f"crop) {np.median(nearby) * 1000:.0f} ms = {np.median(nearby) / base:.2f}x; small box, crop not prepared "
        f"(encoder pass) {np.median(cold) * 1000:.0f} ms = {np.median(cold) / base:.1f}x",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--nuclei", type=int, default=125, help="take the latency boxes from every (125 / N)-th nucleus"
    )
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


if __name__ == "__main__":
    main()
