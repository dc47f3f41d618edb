"""Whole-slide expression from H&E (issue 27): ``fmscope image-expression predict`` on a whole-slide-sized scan
(20,000 and 40,000 px a side) against the same tissue as an ordinary image, peak memory, time and predictions side
by side in one run (a 4,200 px scan is the smallest that fmscope reads lazily).

The tissue: the real Visium mouse-brain H&E (``sample_data/visium_mouse_brain``, 600 x 600 px at 14.03 µm per
pixel). The scans: that image enlarged (bicubic) to ``side`` px at 14.03 x 600 / side µm per pixel (20k: 0.42 µm,
a 20x scanner's pixel), written as a tiled (512) zlib BigTIFF with a pyramid of 2x levels in SubIFDs, band by band
(never whole in memory here either). The model: ``fmscope image-expression train`` on the Visium spots
(``--n-genes 20 --epochs 5``; its held-out figures are not the point here). Each input runs ``fmscope
image-expression predict INPUT --microns-per-pixel P --model M -o OUT.zarr`` in a fresh Python process that
reports its own peak resident memory (``ru_maxrss``) and wall time. The scans' predictions are compared with the
ordinary image's and with the smallest scan's at the grid points both have (within 20 µm): Pearson r per gene over
the points, mean over genes. The ordinary image reaches the encoder's 8 µm per pixel by enlarging, a scan by
shrinking its bicubic enlargement: their pixels differ, so the scans' agreement with each other is the check that
the size of the file changes nothing.

Run: ``python benchmarks/whole_slide_expression.py [--sides 4200 20000 40000] [--folder DIR]`` (minutes; a 40k scan
file takes ~1-2 GB of disk). Prints one line per input, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import tifffile
from scipy.spatial import cKDTree

from fmscope.omics.image_expression_slide import slide_tissue
from fmscope.omics.io import read_slide

VISIUM = Path(__file__).resolve().parents[1] / "sample_data" / "visium_mouse_brain"
TILE = 512
BAND = 2048  # rows of the scan generated at once (side x BAND x 3 bytes)
CHILD = """
import json, resource, sys, time
started = time.perf_counter()
from fmscope.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def enlarged_bands(rgb: np.ndarray, side: int):
    """The (H, W, 3) ``rgb`` enlarged to ``side`` x ``side`` (bicubic), as bands of ``BAND`` rows, top first."""
    scale = side / rgb.shape[0]
    for top in range(0, side, BAND):
        rows = min(BAND, side - top)
        shift = np.float32([[scale, 0, (scale - 1) / 2], [0, scale, (scale - 1) / 2 - top]])  # pixel centres
        yield cv2.warpAffine(rgb, shift, (side, rows), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def tiles_of(bands, side: int):
    """The tiles (row-major) of an image given as bands of ``BAND`` rows (BAND a multiple of TILE)."""
    for band in bands:
        for top in range(0, band.shape[0], TILE):
            for left in range(0, side, TILE):
                tile = np.zeros((TILE, TILE, 3), np.uint8)
                part = band[top : top + TILE, left : left + TILE]
                tile[: part.shape[0], : part.shape[1]] = part
                yield tile


def write_scan(path: Path, rgb: np.ndarray, side: int) -> None:
    """A pyramidal tiled BigTIFF of ``rgb`` enlarged to ``side`` px (levels down to ~2,000 px)."""
    sides = [side]
    while sides[-1] // 2 >= 2000:
        sides.append(sides[-1] // 2)
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        for index, level in enumerate(sides):
            writer.write(
                tiles_of(enlarged_bands(rgb, level), level),
                shape=(level, level, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="zlib",
                subifds=len(sides) - 1 if index == 0 else None,
                subfiletype=1 if index else 0,
            )


def run(arguments: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip()[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 2) µm, values (N, genes)) of a prediction store."""
    from fmscope.omics.io import read_slide as read

    slide = read(path)
    matrix = slide.adata.X
    return np.asarray(slide.adata.obsm["spatial"]), np.asarray(
        matrix.toarray() if hasattr(matrix, "toarray") else matrix
    )


def agreement(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> tuple[float, int]:
    """Mean over genes of Pearson r between the two at matched points (within 20 µm), and the points matched."""
    distance, index = cKDTree(other[0]).query(reference[0])
    matched = distance < 20
    a, b = reference[1][matched], other[1][index[matched]]
    r = [np.corrcoef(a[:, g], b[:, g])[0, 1] for g in range(a.shape[1]) if a[:, g].std() > 0 and b[:, g].std() > 0]
    return float(np.mean(r)), int(matched.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[4200, 20000, 40000])
    parser.add_argument("--folder", type=Path, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="fmscope_wsi_"))
    tissue = slide_tissue(read_slide(VISIUM))
    model = folder / "brain.pt"
    if not model.is_file():
        run(["image-expression", "train", str(VISIUM), "-o", str(model), "--n-genes", "20", "--epochs", "5"])
    inputs = [(tissue.rgb.shape[0], folder / "tissue.tif", tissue.microns_per_pixel)]
    tifffile.imwrite(inputs[0][1], tissue.rgb, photometric="rgb")
    for side in args.sides:
        path = folder / f"scan_{side}.tif"
        if not path.is_file():
            write_scan(path, tissue.rgb, side)
        inputs.append((side, path, tissue.microns_per_pixel * tissue.rgb.shape[0] / side))
    rows = []
    for side, path, mpp in inputs:
        out = folder / f"predicted_{side}.zarr"
        measured = run(
            ["image-expression", "predict", str(path), "--microns-per-pixel", f"{mpp:.6f}", "--model", str(model),
             "-o", str(out), "--png", str(folder / f"predicted_{side}.png")]
        )  # fmt: skip
        rows.append((side, mpp, path.stat().st_size, measured, predictions(out)))
        print(
            f"{side} px ({mpp:.3f} µm/px, {path.stat().st_size / 2**20:.0f} MB file): {measured['seconds']:.1f} s, "
            f"peak {measured['peak_mb']:.0f} MB",
            flush=True,
        )
    base, first_scan = rows[0], rows[min(1, len(rows) - 1)]
    print(
        "\n| input | µm per px | file | peak memory | time | points | mean r vs the ordinary image "
        f"| mean r vs the {first_scan[0]:,} px scan |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for side, mpp, size, measured, predicted in rows:
        r_base, matched = agreement(base[4], predicted)
        r_scan, _ = agreement(first_scan[4], predicted)
        print(
            f"| {side:,} x {side:,} | {mpp:.3f} | {size / 2**20:.0f} MB | {measured['peak_mb']:.0f} MB "
            f"({measured['peak_mb'] / base[3]['peak_mb']:.2f}x) | {measured['seconds']:.1f} s "
            f"({measured['seconds'] / base[3]['seconds']:.2f}x) | {matched} | {r_base:.3f} | {r_scan:.3f} |"
        )


if __name__ == "__main__":
    main()
