"""Image encoder backends: torch fp32 / torch fast (bf16) / OpenVINO exact (fp32) / OpenVINO fast, each figure a
ratio of timings taken interleaved in this one run.

Run: ``.venv/bin/python benchmarks/backends.py [--repeats 7] [--nuclei 20] [--skip-fresh]``.
Sections (LiteMedSAM's TinyViT encoder on the nuclei sample, one 256 px pass):
1. ms per pass at 1 and 2 threads, the variants interleaved round by round (medians), speed-up over torch fp32
   at the same thread count, GFLOP/s reached (FLOPs counted by torch's FlopCounterMode) next to this CPU's
   GEMM rate at the same precision measured in the same rounds (2048^2 matrix product; fp32, and bf16 for the
   fast variants);
2. parity against torch fp32: the embedding's largest difference and the masks' Dice on the first N nuclei
   (boxes from the ground truth, default ROI zoom, so small nuclei get their crop);
3. the first encoder call in a fresh process (the model compiled from the disk cache when the Segmenter is
   made) against a warm call in that process, and the Segmenter's construction time.
On a shared machine absolute times vary with the other programs' load (printed with each section);
the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fmscope import samples
from fmscope.imaging import io
from fmscope.imaging.predictor import Segmenter
from fmscope.metrics import dice

VARIANTS = (("torch", "fp32"), ("torch", "fast"), ("openvino", "fp32"), ("openvino", "fast"))
NAMES = {
    ("torch", "fp32"): "torch fp32",
    ("torch", "fast"): "torch fast (bf16 autocast)",
    ("openvino", "fp32"): "OpenVINO exact (fp32)",
    ("openvino", "fast"): "OpenVINO fast",
}


def load() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def gemm_seconds(dtype: torch.dtype, threads: int, side: int = 2048) -> float:
    torch.set_num_threads(threads)
    a, b = torch.rand(side, side, dtype=dtype), torch.rand(side, side, dtype=dtype)
    started = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - started


def encoder_flops(segmenter: Segmenter, batch: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        segmenter.model.net.image_encoder(batch)
    return float(counter.get_total_flops())


def speed(segmenters: dict, batch: torch.Tensor, repeats: int) -> dict:
    flops = encoder_flops(segmenters[VARIANTS[0]], batch)
    print(
        f"== ms per encoder pass, medians of {repeats} interleaved rounds ({load()}); {flops / 1e9:.1f} GFLOP per pass",
        flush=True,
    )
    results = {}
    for threads in (1, 2):
        for segmenter in segmenters.values():
            segmenter.encoder.prepare(threads)
            segmenter.encoder(batch, threads)  # warm-up
        times: dict = {key: [] for key in [*VARIANTS, "gemm fp32", "gemm bf16"]}
        for _ in range(repeats):
            for key, segmenter in segmenters.items():
                torch.set_num_threads(threads)
                started = time.perf_counter()
                segmenter.encoder(batch, threads)
                times[key].append(time.perf_counter() - started)
            times["gemm fp32"].append(gemm_seconds(torch.float32, threads))
            times["gemm bf16"].append(gemm_seconds(torch.bfloat16, threads))
        median = {key: float(np.median(value)) for key, value in times.items()}
        gemm = {"fp32": 2 * 2048**3 / median["gemm fp32"] / 1e9, "fast": 2 * 2048**3 / median["gemm bf16"] / 1e9}
        print(f"-- {threads} thread(s): GEMM {gemm['fp32']:.0f} GFLOP/s fp32, {gemm['fast']:.0f} GFLOP/s bf16")
        for key in VARIANTS:
            rate = flops / median[key] / 1e9
            ratio = median[VARIANTS[0]] / median[key]
            print(
                f"{NAMES[key]:<28} {median[key] * 1000:7.0f} ms  {ratio:4.1f}x torch fp32  {rate:5.0f} GFLOP/s "
                f"= {100 * rate / gemm[key[1]]:4.0f} % of GEMM ({key[1] if key[1] == 'fp32' else 'bf16'})",
                flush=True,
            )
            results[(key, threads)] = (median[key], ratio)
    return results


def parity(segmenters: dict, image: np.ndarray, boxes: list, batch: torch.Tensor) -> dict:
    print(f"== parity against torch fp32: {len(boxes)} nuclei, default ROI zoom ({load()})", flush=True)
    reference = segmenters[VARIANTS[0]]
    reference.set_image(image)
    expected = reference.predict_many(boxes)
    embedding = reference.encoder(batch, 2)
    figures = {}
    for key in VARIANTS[1:]:
        segmenter = segmenters[key]
        segmenter.set_image(image)
        scores = [dice(a.mask, b.mask) for a, b in zip(segmenter.predict_many(boxes), expected)]
        difference = float(np.abs(segmenter.encoder(batch, 2) - embedding).max())
        figures[key] = (float(np.mean(scores)), float(np.min(scores)), difference)
        print(
            f"{NAMES[key]:<28} Dice mean {np.mean(scores):.4f} min {np.min(scores):.4f}; "
            f"embedding max |diff| {difference:.1e}",
            flush=True,
        )
    return figures


FRESH = r"""
import json, sys, time
started = time.perf_counter()
from fmscope import samples
from fmscope.imaging import io
from fmscope.imaging.predictor import Segmenter
backend, precision, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
image = io.read_image(samples.get_case("nuclei").image_path)
made = time.perf_counter()
segmenter = Segmenter("litemedsam", device="cpu", backend=backend, precision=precision, threads=threads)
made = time.perf_counter() - made
segmenter.set_image(image)
batch = segmenter.model_input()[0][None]
timed = []
for _ in range(4):
    begun = time.perf_counter()
    segmenter.encoder(batch, segmenter.thread_policy.apply())
    timed.append(time.perf_counter() - begun)
print(json.dumps({"construct": made, "first": timed[0], "warm": sorted(timed[1:])[1]}))
"""


def fresh_process() -> None:
    print(f"== first encoder call in a fresh process vs a warm call there ({load()})", flush=True)
    for backend, precision, threads in (
        ("openvino", "fp32", 1),
        ("openvino", "fp32", 2),
        ("openvino", "fast", 1),
        ("openvino", "fast", 2),
        ("torch", "fp32", 1),
    ):
        out = subprocess.run(
            [sys.executable, "-c", FRESH, backend, precision, str(threads)], check=True, capture_output=True, text=True
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        print(
            f"{NAMES[(backend, precision)]:<28} {threads} thread(s): Segmenter made in {figures['construct']:.2f} s; "
            f"first call {figures['first'] * 1000:.0f} ms, warm {figures['warm'] * 1000:.0f} ms = "
            f"{figures['first'] / figures['warm']:.2f}x",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--nuclei", type=int, default=20)
    parser.add_argument("--skip-fresh", action="store_true")
    args = parser.parse_args()
    case = samples.get_case("nuclei")
    image, labels = io.read_image(case.image_path), io.read_image(case.labels_path)
    boxes = list(samples.boxes_from_labels(labels).values())[: args.nuclei]
    segmenters = {
        key: Segmenter("litemedsam", device="cpu", backend=key[0], precision=key[1], threads=2) for key in VARIANTS
    }
    print(
        f"OpenVINO fast = {getattr(segmenters[VARIANTS[3]].encoder.network, 'hint', '?')} on this CPU; "
        f"{os.cpu_count()} CPUs"
    )
    segmenters[VARIANTS[0]].set_image(image)
    batch = segmenters[VARIANTS[0]].model_input()[0][None]
    speed(segmenters, batch, args.repeats)
    parity(segmenters, image, boxes, batch)
    if not args.skip_fresh:
        fresh_process()


if __name__ == "__main__":
    main()
