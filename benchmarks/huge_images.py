"""Huge images (issue 27): peak memory and time of ``fmscope segment`` with one box on 2k, 20k and 40k square tiled
TIFFs holding the same object at the same place, side by side in one run.

The images: zeros (uint8) with the real nuclei sample (512 x 512, stardist, mapped to uint8 by its own automatic
window) pasted at (768, 768), written as tiled (256 x 256) zlib TIFFs tile by tile (a 40k image is never in
memory here either). The box: one nucleus of the sample. Each size runs ``fmscope segment IMAGE --box ... -o
LABELS.tif`` in a fresh Python process that reports its own peak resident memory (``ru_maxrss``) and wall time;
the 2k image takes the ordinary (eager) path, the 20k and 40k ones the lazy path. "The prompt" is the time
``fmscope segment`` prints for its prompts (reading the crop, encoder, decoder), without imports and model
loading. The masks are compared with the 2k one inside the box's crop (Dice), and pixels labelled outside it
are counted.

Run: ``python benchmarks/huge_images.py [--sizes 2000 20000 40000] [--folder DIR]`` (a few minutes; the files
take about 3 MB each). Prints one line per size, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import zarr

from fmscope import samples
from fmscope.imaging import io
from fmscope.imaging.intensity import auto_intensity
from fmscope.metrics import dice

OFFSET = 768  # where the sample's top-left corner goes (y = x), a multiple of the lattice crops' step
BOX = (410, 443, 441, 466)  # x0, y0, x1, y1 of a nucleus in the sample
TILE = 256
CHILD = """
import json, resource, sys, time
started = time.perf_counter()
from fmscope.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def sample8() -> np.ndarray:
    case = samples.get_case("nuclei")
    image = io.read_image(case.image_path)
    return auto_intensity(image).to_uint8(image)


def write_image(path: Path, side: int, sample: np.ndarray) -> None:
    """A ``side`` x ``side`` uint8 tiled TIFF: zeros with ``sample`` at (OFFSET, OFFSET), written tile by tile."""

    def tiles():
        for ty in range(0, side, TILE):
            for tx in range(0, side, TILE):
                tile = np.zeros((TILE, TILE), np.uint8)
                top, left = max(ty, OFFSET), max(tx, OFFSET)
                bottom = min(ty + TILE, OFFSET + sample.shape[0], side)
                right = min(tx + TILE, OFFSET + sample.shape[1], side)
                if top < bottom and left < right:
                    tile[top - ty : bottom - ty, left - tx : right - tx] = sample[
                        top - OFFSET : bottom - OFFSET, left - OFFSET : right - OFFSET
                    ]
                yield tile

    tifffile.imwrite(path, tiles(), shape=(side, side), dtype=np.uint8, tile=(TILE, TILE), compression="zlib")


def run_one(image: Path, output: Path) -> dict:
    box = [str(v + OFFSET) for v in BOX]
    command = [sys.executable, "-c", CHILD, "segment", str(image), "--box", *box, "-o", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{image.name}: {done.stderr.strip()[-2000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    wrote = next(line for line in done.stdout.splitlines() if line.startswith("wrote "))
    measured["prompt_seconds"] = float(re.search(r"\(([\d.]+) s\)$", wrote).group(1))  # predict alone, as printed
    return measured


def read_labels(path: Path, crop: tuple[int, int, int, int]) -> tuple[np.ndarray, int]:
    """The labels inside ``crop`` (y0, x0, y1, x1) and the count of labelled pixels outside it."""
    with tifffile.TiffFile(path) as tiff:
        labels = zarr.open(tiff.pages[0].aszarr(), mode="r")
        y0, x0, y1, x1 = crop
        inside = np.asarray(labels[y0:y1, x0:x1])
        total = sum(
            int(np.count_nonzero(labels[row : row + 4096, :])) for row in range(0, labels.shape[0], 4096)
        )  # band by band: the 40k labels are never whole in memory
    return inside, total - int(np.count_nonzero(inside))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 40000])
    parser.add_argument("--folder", type=Path, help="keep the images and labels here (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="fmscope_huge_"))
    sample = sample8()
    # the crop every size reads: 3x the box around it is far inside the 2k image, so the same on all sizes
    crop = (OFFSET + 384, OFFSET + 384, OFFSET + 512, OFFSET + 512)
    rows = []
    for side in args.sizes:
        image, output = folder / f"image_{side}.tif", folder / f"labels_{side}.tif"
        started = time.perf_counter()
        write_image(image, side, sample)
        built = time.perf_counter() - started
        measured = run_one(image, output)
        inside, outside = read_labels(output, crop)
        rows.append((side, measured, inside, outside, image.stat().st_size))
        print(
            f"{side} px: built in {built:.1f} s ({image.stat().st_size / 2**20:.1f} MB file), segment "
            f"{measured['seconds']:.2f} s (prompt {measured['prompt_seconds']:.2f} s), peak "
            f"{measured['peak_mb']:.0f} MB, {outside} px labelled outside the crop",
            flush=True,
        )
    base = rows[0]
    print(
        "\n| image (uint8, tiled) | peak memory | time (whole command) | time (the prompt) | mask Dice vs first "
        "| labels outside crop |"
    )
    print("|---|---|---|---|---|---|")
    for side, measured, inside, outside, _ in rows:
        ratio_memory = measured["peak_mb"] / base[1]["peak_mb"]
        ratio_time = measured["seconds"] / base[1]["seconds"]
        print(
            f"| {side:,} x {side:,} | {measured['peak_mb']:.0f} MB ({ratio_memory:.2f}x) | "
            f"{measured['seconds']:.2f} s ({ratio_time:.2f}x) | {measured['prompt_seconds']:.2f} s "
            f"({measured['prompt_seconds'] / base[1]['prompt_seconds']:.2f}x) | "
            f"{dice(inside > 0, base[2] > 0):.4f} | {outside} |"
        )


if __name__ == "__main__":
    main()
