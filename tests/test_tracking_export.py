"""Export of tracked label stacks: TIFF, per-object per-frame CSV, Cell Tracking Challenge folder."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from fmscope.errors import FmscopeError
from fmscope.imaging.tracking.export import (
    ctc_tracks,
    object_table,
    tracks_data,
    write_ctc,
    write_label_stack,
    write_table,
)
from fmscope.samples import get_case


@pytest.fixture(scope="module")
def tracks() -> np.ndarray:
    """Ground-truth tracks of a HeLa corner: (6, 128, 128) uint16, cells enter, leave and divide."""
    return tifffile.imread(get_case("hela_timelapse").labels_path)[:6, :128, :128].astype(np.uint16)


def test_table_rows_are_areas_and_centroids(tracks):
    rows = object_table(tracks)
    assert len(rows) == sum(len(np.unique(frame)) - 1 for frame in tracks)
    assert [(r.obj, r.frame) for r in rows] == sorted((r.obj, r.frame) for r in rows)
    for row in rows[::7]:
        mask = tracks[row.frame] == row.obj
        assert row.area == mask.sum()
        assert np.allclose((row.y, row.x), ndimage.center_of_mass(mask))
    data = tracks_data(tracks, objects={rows[0].obj})
    assert data.shape[1] == 4 and set(data[:, 0]) == {rows[0].obj}


def test_tiff_and_csv_round_trip(tracks, tmp_path):
    write_label_stack(tracks, tmp_path / "labels.tif")
    back = tifffile.imread(tmp_path / "labels.tif")
    assert back.dtype == np.uint16 and np.array_equal(back, tracks)
    count = write_table(tracks, tmp_path / "objects.csv")
    with open(tmp_path / "objects.csv", newline="") as handle:
        read = list(csv.DictReader(handle))
    assert len(read) == count == len(object_table(tracks))
    for line in read[::5]:
        mask = tracks[int(line["frame"])] == int(line["object"])
        assert int(line["area_px"]) == mask.sum()
        cy, cx = ndimage.center_of_mass(mask)
        assert abs(float(line["centroid_y"]) - cy) < 1e-3 and abs(float(line["centroid_x"]) - cx) < 1e-3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_ctc_folder_round_trip_and_gaps(tracks, tmp_path):
    labels = tracks.copy()
    obj = int(np.unique(labels[0])[1])
    labels[2][labels[2] == obj] = 0  # a gap on frame 2
    folder = tmp_path / "ctc"
    write_ctc(np.concatenate([labels, labels[:2]]), folder)  # an earlier run's 8 frames: its folder is replaced whole
    count = write_ctc(labels, folder)
    assert sorted(p.name for p in folder.iterdir()) == [f"mask{i:03d}.tif" for i in range(6)] + ["res_track.txt"]
    rows = [tuple(int(v) for v in line.split()) for line in (folder / "res_track.txt").read_text().splitlines()]
    assert len(rows) == count and rows == ctc_tracks(labels)
    back = np.stack([tifffile.imread(folder / f"mask{i:03d}.tif") for i in range(6)])
    assert back.dtype == np.uint16
    for label, first, last, parent in rows:  # every track is present on each frame from B to E (no gaps)
        present = [i for i in range(6) if (back[i] == label).any()]
        assert present == list(range(first, last + 1))
    after = max(rows)[0]  # the gap cuts obj's track: its frames after the gap get a new label, obj its parent
    assert after > labels.max() and (obj, 0, 1, 0) in rows and (after, 3, 5, obj) in rows
    assert np.array_equal(back == after, (labels == obj) & (np.arange(6) >= 3)[:, None, None])
    assert np.array_equal(np.where(back == after, obj, back), labels)


def test_bad_stacks_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(FmscopeError):
        write_label_stack(np.zeros((4, 4), np.uint16), tmp_path / "a.tif")
    with pytest.raises(FmscopeError):
        write_ctc(np.full((2, 4, 4), -1, np.int32), tmp_path / "ctc")
    assert not list(tmp_path.iterdir())


def test_nifti_label_volume_keeps_the_geometry(tmp_path):
    import SimpleITK as sitk

    from fmscope.imaging.io import read_volume
    from fmscope.imaging.tracking.export import write_label_volume

    image = sitk.GetImageFromArray(np.zeros((4, 20, 30), np.int16))
    c, s = np.cos(0.4), np.sin(0.4)
    image.SetSpacing((0.6, 0.9, 3.0))
    image.SetOrigin((5.5, -40.0, 12.25))
    image.SetDirection((1, 0, 0, 0, c, -s, 0, s, c))
    sitk.WriteImage(image, str(tmp_path / "image.nii.gz"))
    volume = read_volume(tmp_path / "image.nii.gz")
    labels = np.zeros((4, 20, 30), np.int32)
    labels[1:3, 5:9, 10:20] = 3
    labels[3, 0:2, 0:2] = 700
    for name in ("labels.nii.gz", "labels.nrrd"):
        write_label_volume(labels, volume, tmp_path / name)
        back = read_volume(tmp_path / name)
        assert back.array.dtype == np.uint16 and np.array_equal(back.array, labels)
        assert np.allclose(back.spacing, volume.spacing) and np.allclose(back.origin, volume.origin)
        assert np.allclose(back.direction, volume.direction, atol=1e-6)
    with pytest.raises(FmscopeError, match="not on the volume's grid"):
        write_label_volume(labels[:2], volume, tmp_path / "short.nii.gz")
    assert not (tmp_path / "short.nii.gz").exists()
