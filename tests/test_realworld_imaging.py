"""Images, slices and DICOM folders as people's scanners, exports and editors write them (issue 14).

Each reproducer in shared/cases/realworld (case1, case3, case5, case6, extra 1-bit) is here with
the value it must give, next to variants of the same kind: channels and bit depths, extreme
shapes, DICOM folders with several series or uneven slices, 2D medical geometry, exit codes.
The CLI runs in-process (``fmscope.cli.main``) except where the process's exit code is the point.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging import dicom_series, io
from fmscope.metrics import dice


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run ``fmscope ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:  # argparse
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def md5s(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- kind 1: channels and bit depths ------------------------------------------------------------


@pytest.fixture(scope="module")
def ellipse() -> tuple[np.ndarray, np.ndarray]:
    """case1's picture: uint8 noise around 60 with a bright ellipse (2065 px), and the ellipse."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    truth = ((xx - 128) / 30.0) ** 2 + ((yy - 120) / 22.0) ** 2 <= 1
    return np.clip(rng.normal(60, 12, (256, 256)) + 120 * truth, 0, 255).astype(np.uint8), truth


ELLIPSE_BOX = [95, 95, 161, 145]


def test_png_with_alpha_segments_like_plain_grey_cli(tmp_path, capsys, ellipse):
    """case1: a grey + alpha PNG (mode LA) through `fmscope segment`: Dice >= 0.965, input untouched."""
    grey, truth = ellipse
    path = tmp_path / "gray_alpha.png"
    Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), mode="LA").save(path)
    before = md5s(tmp_path)
    code, out, err = cli(capsys, "segment", path, "--box", *ELLIPSE_BOX, "-o", tmp_path / "labels.tif")
    assert code == 0, err
    assert md5s(tmp_path)[path.name] == before[path.name]
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == truth.shape and dice(labels > 0, truth) >= 0.965


def _pictures(grey: np.ndarray, folder: Path) -> dict[str, Path]:
    """The same grey picture as files carry it: RGBA, palette, 16-bit RGB PNG, RGBA and planar RGB TIFF."""
    opaque = np.full_like(grey, 255)
    paths = {name: folder / name for name in ("rgba.png", "palette.png", "rgb16.png", "rgba.tif", "planar.tif")}
    Image.fromarray(np.dstack([grey, grey, grey, opaque]), mode="RGBA").save(paths["rgba.png"])
    Image.fromarray(grey, mode="L").convert("P").save(paths["palette.png"])
    rgb16 = np.dstack([grey, grey, grey]).astype(np.uint16) * 257
    cv2.imwrite(str(paths["rgb16.png"]), rgb16)  # 16 bits per channel (Pillow cannot write these)
    tifffile.imwrite(paths["rgba.tif"], np.dstack([grey, grey, grey, opaque]), photometric="rgb", extrasamples=[2])
    tifffile.imwrite(paths["planar.tif"], np.stack([grey, grey, grey]), photometric="rgb", planarconfig="separate")
    return paths


def test_channels_and_bit_depths_are_read_as_the_picture(tmp_path, ellipse):
    grey, _ = ellipse
    for name, path in _pictures(grey, tmp_path).items():
        array = io.read_image(path)
        assert array.shape == (256, 256, 3), name
        scale = 257 if name == "rgb16.png" else 1
        assert array.dtype == (np.uint16 if scale == 257 else np.uint8), name
        assert np.array_equal(array[..., 1], grey.astype(array.dtype) * scale), name  # 16 bits kept, not cut to 8


def test_one_bit_png_is_black_and_white_0_255(tmp_path):
    square = np.zeros((128, 128), bool)
    square[40:80, 50:90] = True
    Image.fromarray(square).convert("1").save(tmp_path / "bw.png")
    array = io.read_image(tmp_path / "bw.png")
    assert array.dtype == np.uint8 and np.array_equal(array, square * np.uint8(255))


def test_pictures_segment_like_the_grey_original(segmenter, tmp_path, ellipse):
    """RGBA, palette and 16-bit RGB files give the grey picture's mask; a 1-bit picture its square."""
    grey, truth = ellipse
    segmenter.set_image(grey)
    reference = segmenter.predict(box=ELLIPSE_BOX).mask
    assert dice(reference, truth) >= 0.965
    for name in ("rgba.png", "palette.png", "rgb16.png"):
        segmenter.set_image(io.read_image(_pictures(grey, tmp_path)[name]))
        assert dice(segmenter.predict(box=ELLIPSE_BOX).mask, reference) >= 0.98, name
    square = np.zeros((128, 128), bool)
    square[40:80, 50:90] = True
    Image.fromarray(square).convert("1").save(tmp_path / "bw.png")
    segmenter.set_image(io.read_image(tmp_path / "bw.png"))
    assert dice(segmenter.predict(box=[45, 35, 95, 85]).mask, square) >= 0.977  # extra 1-bit case
    segmenter.set_image(square)  # a bool array through the API: no numpy TypeError
    assert dice(segmenter.predict(box=[45, 35, 95, 85]).mask, square) >= 0.977


def test_float_image_with_inf_and_nan_is_segmented(segmenter, tmp_path, ellipse):
    """A float TIFF whose background holds inf and NaN (ratio images, masked exports)."""
    grey, truth = ellipse
    image = grey.astype(np.float32) / 10.0
    image[:20] = np.inf
    image[-20:, :40] = np.nan
    tifffile.imwrite(tmp_path / "ratio.tif", image)
    segmenter.set_image(io.read_image(tmp_path / "ratio.tif"))
    assert dice(segmenter.predict(box=ELLIPSE_BOX).mask, truth) >= 0.965
    assert segmenter.mapped_image[0, 0, 0] == 255 and segmenter.mapped_image[-1, 0, 0] == 0


def test_only_a_real_third_axis_is_a_stack(tmp_path, ellipse):
    grey, _ = ellipse
    tifffile.imwrite(tmp_path / "channels.tif", np.stack([grey, grey]), imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(FmscopeError, match="2 channels"):
        io.read_image(tmp_path / "channels.tif")
    volume = sitk.GetImageFromArray(np.stack([grey, grey, grey]))
    sitk.WriteImage(volume, str(tmp_path / "three.nii.gz"))
    with pytest.raises(FmscopeError, match="volume of 3 slices"):
        io.read_image(tmp_path / "three.nii.gz")


# -- kind 2: extreme shapes ----------------------------------------------------------------------


def _strip(h: int, w: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """case5's bar along the long axis of an h x w strip, and its box."""
    rng = np.random.default_rng(1)
    truth = np.zeros((h, w), bool)
    if h < w:
        truth[1 : h - 1, w // 8 : w - w // 8] = True
        box = [w // 8 - 5, 0, w - w // 8 + 5, h - 1]
    else:
        truth[h // 8 : h - h // 8, 1 : w - 1] = True
        box = [0, h // 8 - 5, w - 1, h - h // 8 + 5]
    return np.clip(rng.normal(50, 5, (h, w)) + 150 * truth, 0, 255).astype(np.uint8), truth, box


@pytest.mark.parametrize("shape", [(6, 4000), (4000, 6), (12, 3000)])
def test_very_elongated_images_are_refused_by_shape(segmenter, shape):
    """case5 (API): no cv2 error, no one-pixel-high model input; FmscopeError naming the shape."""
    image, _, box = _strip(*shape)
    segmenter.set_image(image)
    with pytest.raises(FmscopeError, match="too elongated.*aspect ratio"):
        segmenter.predict(box=box)


def test_very_elongated_image_cli_exits_1_and_writes_nothing(tmp_path, capsys):
    """case5 (CLI): 6 x 4000 strip, exit 1 with the shape named, the folder as before."""
    image, _, box = _strip(6, 4000)
    tifffile.imwrite(tmp_path / "image.tif", image)
    before = md5s(tmp_path)
    code, _, err = cli(capsys, "segment", tmp_path / "image.tif", "--box", *box, "-o", tmp_path / "labels.tif")
    assert code == 1 and "too elongated" in err and "Traceback" not in err
    assert md5s(tmp_path) == before


def test_small_object_in_a_long_strip_is_segmented_through_roi_zoom(segmenter):
    """Too long for one embedding, but a small object's crop is square enough: right mask."""
    rng = np.random.default_rng(0)
    truth = np.zeros((16, 4000), bool)
    truth[3:13, 2000:2012] = True
    segmenter.set_image(np.clip(rng.normal(50, 5, truth.shape) + 150 * truth, 0, 255).astype(np.uint8))
    result = segmenter.predict(box=[1996, 0, 2016, 15])
    assert result.crop is not None and dice(result.mask, truth) >= 0.95


def test_a_4_to_1_image_still_segments(segmenter):
    image, truth, box = _strip(512, 2048)
    segmenter.set_image(image)
    assert dice(segmenter.predict(box=box).mask, truth) >= 0.954


@pytest.mark.parametrize("size", [3, 4, 16])
def test_tiny_images_give_a_mask_of_their_size(segmenter, size):
    image = np.full((size, size + 1), 30, np.uint8)
    image[size // 3 : size - size // 3, size // 3 : size - size // 3 + 1] = 220
    segmenter.set_image(image)
    mask = segmenter.predict(box=[0, 0, size, size - 1]).mask
    assert mask.shape == image.shape and mask[size // 2, size // 2]


# -- kind 3: DICOM folders as exports lay them out ------------------------------------------------

STUDY = "1.2.826.0.1.3680043.8.498.10"
PIXEL, SIZE, RADIUS = 0.8, 128, 12.0
CENTRE = (64 * PIXEL, 60 * PIXEL, 24.0)  # x, y, z in mm


def _ct_slice(z: float, rng: np.random.Generator) -> np.ndarray:
    """case3's axial CT slice at z mm: a 0 HU body with a 200 HU sphere of radius 12 mm."""
    yy, xx = np.mgrid[:SIZE, :SIZE] * PIXEL
    body = ((xx - 51.2) / 45) ** 2 + ((yy - 51.2) / 38) ** 2 <= 1
    sphere = (xx - CENTRE[0]) ** 2 + (yy - CENTRE[1]) ** 2 + (z - CENTRE[2]) ** 2 <= RADIUS**2
    return (np.where(body, 0, -1000) + 200 * sphere + rng.normal(0, 10, (SIZE, SIZE))).astype(np.int16)


def write_series(
    folder: Path,
    series: str,
    number: int,
    description: str,
    positions: list[tuple[float, ...]],
    orientations: list[str] | None = None,
    image_type: str = "ORIGINAL\\PRIMARY\\AXIAL",
    prefix: str = "IM",
) -> None:
    """DICOM files of one series (SimpleITK + GDCM), one per position (x, y, z mm), 0.8 mm pixels."""
    rng = np.random.default_rng(number)
    folder.mkdir(parents=True, exist_ok=True)
    for i, position in enumerate(positions):
        image = sitk.GetImageFromArray(_ct_slice(position[2], rng))
        image.SetSpacing((PIXEL, PIXEL))
        orientation = orientations[i] if orientations else "1\\0\\0\\0\\1\\0"
        for key, value in [
            ("0008|0060", "CT"),
            ("0010|0010", "ANONYMOUS"),
            ("0008|103e", description),
            ("0008|0008", image_type),
            ("0020|000d", STUDY),
            ("0020|000e", series),
            ("0020|0011", str(number)),
            ("0008|0018", f"{series}.{i + 1}"),
            ("0020|0013", str(i + 1)),
            ("0020|0032", "\\".join(f"{v:g}" for v in position)),
            ("0020|0037", orientation),
            ("0028|1052", "0"),
            ("0028|1053", "1"),
        ]:
            image.SetMetaData(key, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"{prefix}{number:02d}_{i + 1:04d}.dcm"))
        writer.Execute(image)


def axial(zs) -> list[tuple[float, float, float]]:
    return [(0.0, 0.0, float(z)) for z in zs]


CT_UID, LOCALIZER_UID, LUNG_UID = (
    "1.2.826.0.1.3680043.8.498.20",
    "1.2.826.0.1.3680043.8.498.21",
    "1.2.826.0.1.3680043.8.498.22",
)
THREE_PLANES = ["1\\0\\0\\0\\1\\0", "1\\0\\0\\0\\0\\-1", "0\\1\\0\\0\\0\\-1"]


def test_missing_slice_is_refused_with_the_gap_cli(tmp_path, capsys):
    """case3: one file of a 3 mm series lost: exit 1 naming the uneven spacing and the gap, folder untouched."""
    write_series(tmp_path / "series", CT_UID, 2, "axial 3mm", axial(z for z in range(0, 42, 3) if z != 9))
    before = md5s(tmp_path)
    code, _, err = cli(
        capsys,
        "volume",
        tmp_path / "series",
        "--slice",
        7,
        "--box",
        46,
        42,
        82,
        78,
        "--window",
        "abdomen",
        "-o",
        tmp_path / "labels.nii.gz",
    )
    assert code == 1 and "Traceback" not in err
    assert "unevenly spaced" in err and "6 mm between slices at 6 and 12 mm (1 file missing?)" in err
    assert md5s(tmp_path) == before and not (tmp_path / "labels.nii.gz").exists()


def test_uneven_reconstruction_gaps_are_refused(tmp_path):
    write_series(tmp_path, CT_UID, 2, "axial", axial([0, 2.5, 5, 8, 10.5, 13]))
    with pytest.raises(FmscopeError, match=r"unevenly spaced: 2.5 mm apart except 3 mm between slices at 5 and 8"):
        io.read_volume(tmp_path)


def test_repeated_positions_are_refused(tmp_path):
    """Two echoes in one series: two images per position are not one volume."""
    write_series(tmp_path, CT_UID, 2, "dual echo", axial([0, 0, 3, 3, 6, 6]))
    with pytest.raises(FmscopeError, match="6 files share 3 slice positions"):
        io.read_volume(tmp_path)


def test_localizer_beside_the_ct_reads_the_ct(tmp_path):
    """A three-plane scout (its own series, three orientations) and the CT in one export folder."""
    write_series(
        tmp_path,
        LOCALIZER_UID,
        1,
        "scout",
        [(0, 0, 20), (0, 40, 0), (40, 0, 0)],
        THREE_PLANES,
        image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
        prefix="SC",
    )
    write_series(tmp_path, CT_UID, 2, "axial 3mm", axial(range(0, 42, 3)))
    stacks = dicom_series.list_stacks(tmp_path)
    assert sorted((s.series_uid, len(s.files), s.plane, s.volumetric) for s in stacks) == [
        (CT_UID, 14, "axial", True),
        (LOCALIZER_UID, 1, "axial", False),
        (LOCALIZER_UID, 1, "coronal", False),
        (LOCALIZER_UID, 1, "sagittal", False),
    ]
    assert [s.number for s in stacks] == [1, 2, 3, 4] and stacks[3].series_uid == CT_UID
    volume = io.read_volume(tmp_path)
    assert volume.array.shape == (14, SIZE, SIZE)
    assert np.allclose(volume.spacing, (PIXEL, PIXEL, 3.0)) and np.allclose(volume.origin, 0)
    assert np.allclose(volume.direction, np.eye(3).ravel()) and "axial 3mm" in volume.source


def test_two_reconstructions_are_listed_and_series_picks_one(tmp_path, capsys):
    write_series(tmp_path, CT_UID, 2, "axial 3mm", axial(range(0, 42, 3)))
    write_series(tmp_path, LUNG_UID, 3, "axial 1.5mm lung", axial(np.arange(0, 21, 1.5)), prefix="LU")
    before = md5s(tmp_path)
    code, _, err = cli(
        capsys, "volume", tmp_path, "--slice", 3, "--box", 46, 42, 82, 78, "-o", tmp_path.parent / "never.nii.gz"
    )
    assert code == 1 and "holds 2 volumetric series" in err and "--series" in err
    assert "[1] series 2 'axial 3mm' CT: 14 slices 128 x 128" in err and "[2] series 3 'axial 1.5mm lung'" in err
    assert md5s(tmp_path) == before and not (tmp_path.parent / "never.nii.gz").exists()
    lung = io.read_volume(tmp_path, series="2")
    assert lung.array.shape[0] == 14 and np.isclose(lung.spacing[2], 1.5)
    assert np.isclose(io.read_volume(tmp_path, series=CT_UID).spacing[2], 3.0)
    with pytest.raises(FmscopeError, match="has no series '7'"):
        io.read_volume(tmp_path, series="7")


def test_mixed_orientations_in_one_series_are_separate_stacks(tmp_path):
    """One series holding an axial stack and sagittal reformats: each read on its own true grid."""
    sagittal = [(float(x), 0.0, 40.0) for x in (30, 32, 34, 36)]
    write_series(
        tmp_path,
        CT_UID,
        2,
        "axial + reformats",
        axial(range(0, 15, 3)) + sagittal,
        ["1\\0\\0\\0\\1\\0"] * 5 + [THREE_PLANES[2]] * 4,
    )
    with pytest.raises(FmscopeError, match="holds 2 volumetric series") as refused:
        io.read_volume(tmp_path)
    assert "axial" in str(refused.value) and "sagittal" in str(refused.value)
    with pytest.raises(FmscopeError, match="names 2 stacks"):
        io.read_volume(tmp_path, series=CT_UID)
    stacks = {s.plane: s for s in dicom_series.list_stacks(tmp_path)}
    side = io.read_volume(tmp_path, series=str(stacks["sagittal"].number))
    assert side.array.shape == (4, SIZE, SIZE) and np.isclose(side.spacing[2], 2.0)
    direction = np.reshape(side.direction, (3, 3))  # columns: row, column, slice normal
    assert np.allclose(direction[:, 0], (0, 1, 0)) and np.allclose(direction[:, 1], (0, 0, -1))
    assert np.allclose(direction[:, 2], (-1, 0, 0)) and np.allclose(side.origin, (36, 0, 40))
    assert io.read_volume(tmp_path, series=str(stacks["axial"].number)).array.shape == (5, SIZE, SIZE)


def test_one_multi_frame_file_is_a_volume(tmp_path):
    """An enhanced (multi-frame) export: one file holding the whole series."""
    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 100, (5, 32, 32)).astype(np.int16))
    image.SetSpacing((0.5, 0.5, 2.0))
    for key, value in [("0008|0060", "CT"), ("0020|000d", STUDY), ("0020|000e", CT_UID)]:
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(tmp_path / "enhanced.dcm"))
    volume = io.read_volume(tmp_path)
    assert volume.array.shape == (5, 32, 32) and np.allclose(volume.spacing, (0.5, 0.5, 2.0))
    assert np.array_equal(volume.array, sitk.GetArrayFromImage(image))


def _enhanced_ct(path: Path, positions: list[float], per_frame_measures: bool, order: list[int]) -> np.ndarray:
    """An Enhanced CT Image Storage file (pydicom, as NU7): 24 x 20 int16 frames, frame k's value k, 0.7 x 0.6 mm
    pixels (shared or per-frame PixelMeasuresSequence), frame i at z = positions[order[i]]; returns the frames as
    stored (frames, rows, columns)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    enhanced_ct = "1.2.840.10008.5.1.4.1.1.2.1"
    frames = np.stack([np.full((24, 20), order[i], np.int16) for i in range(len(order))])
    frames[:, 0, :3] = 100  # a marker: row 0, columns 0-2
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = enhanced_ct, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = enhanced_ct, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = STUDY, CT_UID, generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.PatientName, ds.PatientID = "CT", 1, 1, "Test", "1"
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.SamplesPerPixel = 24, 20, len(order), 1
    ds.PhotometricInterpretation, ds.ImageType = "MONOCHROME2", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.7, 0.6], 2.5
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([orientation])
    if not per_frame_measures:
        shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    items = []
    for index in order:
        item, plane = Dataset(), Dataset()
        plane.ImagePositionPatient = [-20.0, -10.0, positions[index]]
        item.PlanePositionSequence = Sequence([plane])
        if per_frame_measures:
            item.PixelMeasuresSequence = Sequence([measures])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.PixelData = frames.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    assert isinstance(pydicom.dcmread(path), Dataset)
    return frames


@pytest.mark.parametrize("per_frame_measures", [False, True])
@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]])
def test_an_enhanced_multi_frame_file_is_read_on_its_functional_groups_grid(tmp_path, per_frame_measures, order):
    """NU7's kind, evenly spaced: pixel spacing from the shared or per-frame PixelMeasuresSequence (not GDCM's
    1 x 1 x 1 mm), frames sorted by their PlanePositionSequence whatever their order in the file, origin at the
    lowest frame."""
    _enhanced_ct(tmp_path / "ct" / "enhanced.dcm", [0.0, 2.5, 5.0, 7.5, 10.0], per_frame_measures, order)
    volume = io.read_volume(tmp_path / "ct")
    assert np.allclose(volume.spacing, (0.6, 0.7, 2.5)) and np.allclose(volume.origin, (-20.0, -10.0, 0.0))
    assert np.allclose(volume.direction, np.eye(3).ravel())
    assert [int(volume.array[k, 5, 5]) for k in range(5)] == [0, 1, 2, 3, 4]  # slice k is the frame at z = 2.5 k
    assert (volume.array[:, 0, :3] == 100).all()


def test_an_enhanced_multi_frame_file_with_a_missing_frame_is_refused_cli(tmp_path, capsys):
    """NU7: frames at 0, 5, 10, 20, 25, 30 mm (the one at 15 lost): exit 1 naming the gap, nothing written."""
    _enhanced_ct(tmp_path / "ct" / "enhanced.dcm", [0.0, 5.0, 10.0, 20.0, 25.0, 30.0], False, [0, 1, 2, 3, 4, 5])
    before = md5s(tmp_path)
    code, _, err = cli(capsys, "volume", tmp_path / "ct", "--slice", 2, "--box", 2, 2, 12, 12, "-o", tmp_path / "l.nii")
    assert code == 1 and "Traceback" not in err
    assert "unevenly spaced" in err and "10 mm between slices at 10 and 20 mm (1 frame missing?)" in err
    assert "6 slices 24 x 20, 0.7 x 0.6 mm pixels, axial" in err  # the listing from the functional groups
    assert md5s(tmp_path) == before


def test_folder_without_images_names_its_subfolders(tmp_path):
    write_series(tmp_path / "DICOM" / "S0001", CT_UID, 2, "axial", axial([0, 3, 6]))
    with pytest.raises(FmscopeError, match="(?s)No DICOM images.*subfolders \\(DICOM\\)"):
        io.read_volume(tmp_path)


@pytest.mark.slow
def test_series_chosen_from_a_folder_segments_on_its_true_grid(tmp_path, capsys):
    """`fmscope volume FOLDER --series N` beside a localizer: spacing 3 mm, Dice with the sphere >= 0.963."""
    write_series(
        tmp_path,
        LOCALIZER_UID,
        1,
        "scout",
        [(0, 0, 20), (0, 40, 0)],
        THREE_PLANES[:2],
        image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
        prefix="SC",
    )
    write_series(tmp_path, CT_UID, 2, "axial 3mm", axial(range(0, 42, 3)))
    out = tmp_path.parent / "labels.nii.gz"
    code, stdout, err = cli(
        capsys,
        "volume",
        tmp_path,
        "--series",
        3,
        "--slice",
        8,
        "--box",
        46,
        42,
        82,
        78,
        "--window",
        "abdomen",
        "-o",
        out,
    )
    assert code == 0, err
    assert "DICOM series read: [3] series 2 'axial 3mm'" in stdout
    labels = sitk.ReadImage(str(out))
    assert np.allclose(labels.GetSpacing(), (PIXEL, PIXEL, 3.0)) and np.allclose(labels.GetOrigin(), 0)
    k, j, i = np.mgrid[:14, :SIZE, :SIZE]
    sphere = ((i * PIXEL - CENTRE[0]) ** 2 + (j * PIXEL - CENTRE[1]) ** 2 + (k * 3.0 - CENTRE[2]) ** 2) <= RADIUS**2
    assert dice(sitk.GetArrayFromImage(labels) > 0, sphere) >= 0.963


# -- kind 4: 2D medical images keep their geometry -------------------------------------------------


def _hu_slice() -> tuple[np.ndarray, np.ndarray]:
    """case6's slice: 256 x 256 HU, a 15 px 300 HU disk at (150, 110) in a 0 HU body."""
    yy, xx = np.mgrid[:256, :256]
    body = ((xx - 128) / 110.0) ** 2 + ((yy - 128) / 90.0) ** 2 <= 1
    lesion = (xx - 150) ** 2 + (yy - 110) ** 2 <= 15**2
    rng = np.random.default_rng(2)
    return (np.where(body, 0, -1000) + np.where(lesion, 300, 0) + rng.normal(0, 15, (256, 256))).astype(
        np.int16
    ), lesion


def _with_geometry(array: np.ndarray, three_d: bool, spacing=(0.7, 0.7)) -> sitk.Image:
    image = sitk.GetImageFromArray(array[None] if three_d else array)
    image.SetSpacing((*spacing, 5.0) if three_d else spacing)
    image.SetOrigin((120.5, 95.25, -42.5) if three_d else (120.5, 95.25))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1) if three_d else (-1, 0, 0, -1))
    return image


def _same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetDimension() == b.GetDimension()
        and a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-3)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-3)
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["slice2d.nii.gz", "slice3d.nii.gz", "slice.dcm", "anisotropic.nrrd"])
def test_single_medical_slice_keeps_its_geometry_and_eval_compares_on_its_grid(tmp_path, capsys, name):
    """case6 (2D NIfTI, one-slice NIfTI, one DICOM file) and a 2D NRRD with 0.5 x 0.9 mm pixels:
    the mask has the input's dimension, size, spacing, origin, direction, Dice >= 0.948; eval
    against the truth on the input's grid gives that Dice, NSD in mm."""
    hu, lesion = _hu_slice()
    spacing = (0.5, 0.9) if name == "anisotropic.nrrd" else (0.7, 0.7)
    image = _with_geometry(hu, name in ("slice3d.nii.gz", "slice.dcm"), spacing)
    if name == "slice.dcm":
        for key, value in [
            ("0008|0060", "CT"),
            ("0020|000d", STUDY),
            ("0020|000e", CT_UID),
            ("0028|1052", "0"),
            ("0028|1053", "1"),
        ]:
            image.SetMetaData(key, value)
    path, out = tmp_path / name, tmp_path / "labels.nii.gz"
    sitk.WriteImage(image, str(path))
    given = sitk.ReadImage(str(path))
    before = md5s(tmp_path)
    code, _, err = cli(capsys, "segment", path, "--box", 132, 92, 168, 128, "--window", "abdomen", "-o", out)
    assert code == 0, err
    assert md5s(tmp_path)[name] == before[name]
    written = sitk.ReadImage(str(out))
    assert _same_geometry(written, given)
    mask = sitk.GetArrayFromImage(written).reshape(lesion.shape) > 0
    assert dice(mask, lesion) >= 0.948
    truth = sitk.GetImageFromArray(lesion.astype(np.uint8).reshape(sitk.GetArrayFromImage(given).shape))
    truth.CopyInformation(given)
    sitk.WriteImage(truth, str(tmp_path / "truth.nii.gz"))
    code, report, err = cli(capsys, "eval", out, tmp_path / "truth.nii.gz", "--tolerance", 2)
    assert code == 0, err
    assert report.startswith(f"dice {dice(mask, lesion):.4f}  nsd@2mm ")


def test_eval_refuses_masks_on_different_grids(tmp_path, capsys):
    hu, lesion = _hu_slice()
    for name, origin in (("a.nii.gz", (120.5, 95.25)), ("b.nii.gz", (0.0, 0.0))):
        image = sitk.GetImageFromArray(lesion.astype(np.uint8))
        image.SetSpacing((0.7, 0.7))
        image.SetOrigin(origin)
        sitk.WriteImage(image, str(tmp_path / name))
    code, _, err = cli(capsys, "eval", tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    assert code == 1 and "different grids" in err and "origin (0.0, 0.0)" in err


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    order=st.permutations([0, 1, 2]),
    direction=st.sampled_from(
        [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1), (0, 1, 0, 1, 0, 0, 0, 0, -1)]
    ),
)
def test_eval_compares_the_same_voxels_stored_in_another_axis_order(tmp_path, capsys, flips, order, direction):
    """NU20 and its kind: a truth holding the prediction's voxel centres with axes flipped and / or swapped
    (RAS vs LPS storage, MONAI Orientationd, nibabel as_closest_canonical) is compared voxel by voxel (Dice 1.0
    for the same mask, a note says so); the same truth moved by one voxel is still refused as another grid."""
    mask = np.zeros((4, 7, 9), np.uint8)
    mask[1:3, 2:5, 3:8] = 1
    mask[0, 0, 0] = 1  # a corner: any wrong reordering loses it
    pred = sitk.GetImageFromArray(mask)
    pred.SetSpacing((0.7, 0.8, 2.5))
    pred.SetOrigin((-20.0, 10.0, 3.0))
    pred.SetDirection(direction)
    truth = sitk.PermuteAxes(sitk.Flip(pred, list(flips)), list(order))
    sitk.WriteImage(pred, str(tmp_path / "pred.nii.gz"))
    sitk.WriteImage(truth, str(tmp_path / "truth.nii.gz"))
    code, out, err = cli(capsys, "eval", tmp_path / "pred.nii.gz", tmp_path / "truth.nii.gz")
    assert code == 0, err
    assert "dice 1.0000" in out and ("another axis order" in err) == (any(flips) or list(order) != [0, 1, 2])
    moved = sitk.Image(truth)
    moved.SetOrigin(tuple(np.add(truth.GetOrigin(), np.reshape(truth.GetDirection(), (3, 3))[:, 0] * 0.7)))
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    code, _, err = cli(capsys, "eval", tmp_path / "pred.nii.gz", tmp_path / "moved.nii.gz")
    assert code == 1 and ("different grids" in err or "Shapes differ" in err)


def test_tiff_output_of_a_medical_slice_says_geometry_is_lost(tmp_path, capsys):
    hu, lesion = _hu_slice()
    sitk.WriteImage(_with_geometry(hu, False), str(tmp_path / "slice.nii.gz"))
    code, out, err = cli(
        capsys,
        "segment",
        tmp_path / "slice.nii.gz",
        "--box",
        132,
        92,
        168,
        128,
        "--window",
        "abdomen",
        "-o",
        tmp_path / "labels.tif",
    )
    assert code == 0, err
    assert "keeps no pixel size or position" in out
    assert dice(tifffile.imread(tmp_path / "labels.tif") > 0, lesion) >= 0.948


# -- kind 13: exit codes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--box", 1, 1, 9, 9, "--window", "40,abc"], "Cannot read window '40,abc'"),
        (["--box", 1, 1, 9, 9, "--window", "lungs"], "Unknown window preset 'lungs'"),
        ([], "No prompt given"),
        (["--point", 5, 5, "--label", 1, "--label", 0], "1 --point but 2 --label"),
        (["--box", 1, 1, 9, 9, "--box", 2, 2, 8, 8, "--point", 5, 5], "Points refine one object"),
    ],
)
def test_usage_mistakes_exit_2(tmp_path, capsys, ellipse, args, message):
    Image.fromarray(ellipse[0]).save(tmp_path / "image.png")
    before = md5s(tmp_path)
    code, _, err = cli(capsys, "segment", tmp_path / "image.png", *args, "-o", tmp_path / "labels.tif")
    assert code == 2 and message in err and "Traceback" not in err
    assert md5s(tmp_path) == before


@pytest.mark.parametrize(
    "output, message", [("image.png", "is the input"), ("labels.csv", "cannot write a '.csv' file")]
)
def test_bad_outputs_are_refused_before_any_work(tmp_path, capsys, ellipse, output, message):
    Image.fromarray(ellipse[0]).save(tmp_path / "image.png")
    before = md5s(tmp_path)
    code, _, err = cli(capsys, "segment", tmp_path / "image.png", "--box", *ELLIPSE_BOX, "-o", tmp_path / output)
    assert code == 1 and message in err
    assert md5s(tmp_path) == before


def test_unexpected_errors_are_one_message_not_a_traceback(capsys, monkeypatch, tmp_path):
    """Anything that escapes is a bug, and still reads as one message (FMSCOPE_DEBUG=1 shows it)."""
    from fmscope.imaging import labels

    def broken(path, instances=True):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(labels, "read_label_image", broken)  # eval reads both files through the label reader
    code, _, err = cli(capsys, "eval", tmp_path / "a.tif", tmp_path / "b.tif")
    assert code == 1 and "unexpected ZeroDivisionError: simulated bug" in err and "FMSCOPE_DEBUG" in err
    monkeypatch.setenv("FMSCOPE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["eval", str(tmp_path / "a.tif"), str(tmp_path / "b.tif")])


def test_exit_codes_of_the_process():
    """The installed entry point: wrong usage exits 2, a missing input 1, each without a traceback."""

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "fmscope.cli", *args],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            env=os.environ,
            timeout=300,
        )

    usage = run("eval", "only-one.tif")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    missing = run("eval", "nope.tif", "nope2.tif")
    assert missing.returncode == 1 and "No such file" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_show_the_picture(tmp_path, orientation):
    """A phone / camera JPEG stores its pixels sideways with an EXIF Orientation: fmscope reads the picture as
    Pillow's ImageOps.exif_transpose (and every viewer) shows it, and says so; box and mask are on that picture."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"photo{orientation}.png"  # lossless, so the pixels can be compared exactly
    picture.save(path, exif=exif)
    with Image.open(path) as reopened:
        shown = np.asarray(ImageOps.exif_transpose(reopened).convert("RGB"))
    image = io.load_image(path)
    assert np.array_equal(image.array, shown)
    assert (image.note == "") == (orientation == 1)


def test_segment_on_a_sideways_phone_jpeg_masks_the_object_as_shown(tmp_path):
    """The fresh-clone report's case: a disc drawn on the picture as shown, stored rotated with Orientation 6."""
    from PIL import Image

    height, width = 160, 200
    yy, xx = np.mgrid[:height, :width]
    disc = ((yy - 50) ** 2 + (xx - 140) ** 2) < 400
    shown = np.where(disc, 200, 40).astype(np.uint8)
    picture = Image.fromarray(np.rot90(shown, 1).copy())
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(tmp_path / "exif6.jpg", exif=exif, quality=95)
    from cli_runner import run_cli

    result = run_cli("segment", tmp_path / "exif6.jpg", "--box", 118, 28, 162, 72, "-o", tmp_path / "mask.tif")
    assert result.returncode == 0 and "EXIF orientation 6" in result.stdout, result.stderr
    mask = io.read_image(tmp_path / "mask.tif") > 0
    assert mask.shape == (height, width) and dice(mask, disc) > 0.9


def test_tiff_photometric_kinds_read_in_the_colours_viewers_show_or_are_refused(tmp_path):
    """NU15: a CMYK TIFF (Photoshop / print export, 8 and 16 bits), a palette TIFF and a MINISWHITE (inverted grey)
    TIFF read as Pillow shows them, with a note; CIELAB, uncompressed YCbCr and a two-ink separation are refused
    naming the interpretation; a huge CMYK TIFF read in parts and a CMYK label image are refused too."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    Image.fromarray(rgb).quantize(16).save(tmp_path / "palette.tif")
    tifffile.imwrite(tmp_path / "white.tif", grey, photometric="miniswhite")
    for name, what in (("cmyk.tif", "CMYK"), ("palette.tif", "palette"), ("white.tif", "MINISWHITE")):
        read = io.load_image(tmp_path / name)
        shown = np.asarray(Image.open(tmp_path / name).convert("RGB" if name != "white.tif" else "L"))
        assert read.array.dtype == np.uint8 and np.abs(read.array.astype(int) - shown).max() <= 1, name
        assert what in read.note
    cmyk16 = np.asarray(Image.open(tmp_path / "cmyk.tif")).astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "cmyk16.tif", cmyk16, photometric="separated")
    read16 = io.load_image(tmp_path / "cmyk16.tif").array
    assert read16.dtype == np.uint16 and np.abs(read16 / 257 - io.load_image(tmp_path / "cmyk.tif").array).max() <= 1
    Image.fromarray(rgb).convert("LAB").save(tmp_path / "lab.tif")
    tifffile.imwrite(tmp_path / "ycbcr.tif", rgb, photometric="ycbcr", subsampling=(1, 1))
    tifffile.imwrite(tmp_path / "inks.tif", cmyk16, photometric="separated", extratags=[(332, 3, 1, 2, True)])
    for name, kind in (("lab.tif", "CIELAB"), ("ycbcr.tif", "YCBCR"), ("inks.tif", "SEPARATED .* .InkSet 2")):
        with pytest.raises(FmscopeError, match=f"stores its pixels as {kind}"):
            io.load_image(tmp_path / name)
    with pytest.raises(FmscopeError, match="SEPARATED .* in a huge image"):
        io.open_image(tmp_path / "cmyk.tif", eager_max_pixels=0)
    from fmscope.imaging.labels import read_label_image

    with pytest.raises(FmscopeError, match="a colour picture, not a label image"):
        read_label_image(tmp_path / "cmyk.tif")


def write_non_image(path: Path, sop_class: str, frames: np.ndarray | None = None) -> None:
    """A DICOM object of ``sop_class`` (pydicom): with ``frames`` (n, rows, cols) of 0 / 1 a BINARY SEG's pixel data
    (1 bit, frames = segment x slice as dcmqi / highdicom write them), else no pixel data (RTSTRUCT, SR ...)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import pack_bits
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber = STUDY, generate_uid(), "SEG", 100
    if frames is not None:
        ds.Rows, ds.Columns, ds.NumberOfFrames = frames.shape[1], frames.shape[2], len(frames)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
        ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.PixelSpacing = [1, 0, 0, 0, 1, 0], [0, 0, 0], [1, 1]
        ds.PixelData = pack_bits(frames.astype(np.uint8))
    ds.save_as(path, enforce_file_format=True)


def test_dicom_seg_and_rtstruct_are_refused_wherever_an_image_is_read(tmp_path):
    """NU14: a DICOM SEG (frames = segment x slice, empty frames left out) read as a volume of its frames would be a
    wrong truth: refused naming the SEG and dcmqi / highdicom, as a file or a folder, by the label reader, the image
    and volume readers and the frames reader; an RTSTRUCT (no pixels) likewise; beside a CT series the CT is read."""
    from fmscope.imaging.labels import read_label_image
    from fmscope.imaging.tracking.frames import open_frames

    seg, rtstruct = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.481.3"
    frames = np.zeros((3, 16, 16), np.uint8)
    frames[:, 4:9, 5:11] = 1
    (tmp_path / "seg").mkdir()
    write_non_image(tmp_path / "seg" / "seg.dcm", seg, frames)
    (tmp_path / "rt").mkdir()
    write_non_image(tmp_path / "rt" / "rtstruct.dcm", rtstruct)
    readers = (
        lambda p: read_label_image(p, instances=False),
        io.load_image,
        io.read_volume,
        io.read_grid,
        open_frames,
    )
    for path, kind in (
        (tmp_path / "seg" / "seg.dcm", "a DICOM SEG"),
        (tmp_path / "seg", "a DICOM SEG"),
        (tmp_path / "rt", "a DICOM RTSTRUCT"),
    ):
        for read in readers:
            if path.is_dir() and read is io.load_image:
                continue  # a folder is not one picture (refused as such)
            with pytest.raises(FmscopeError, match=f"is {kind}.*not an image") as error:
                read(path)
            assert "segimage2itkimage" in error.value.fix and "highdicom" in error.value.fix
    write_series(tmp_path / "seg", CT_UID, 2, "axial 3mm", axial(range(0, 12, 3)))
    assert io.read_volume(tmp_path / "seg").array.shape == (4, SIZE, SIZE)  # the SEG beside it is no stack


def test_a_tiff_of_several_same_size_images_is_refused_naming_its_series(tmp_path):
    """A multi-position OME-TIFF (series Pos0, Pos1) given to `fmscope segment` was segmented on Pos0 without a word:
    refused naming the series and how to save one; a slide's smaller thumbnail series does not count."""
    picture = np.random.default_rng(0).integers(0, 255, (32, 40), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "positions.ome.tif", ome=True) as writer:
        writer.write(picture, metadata={"axes": "YX", "Name": "Pos0"})
        writer.write(picture[::-1], metadata={"axes": "YX", "Name": "Pos1"})
    with pytest.raises(FmscopeError, match=r"holds 2 series .*0: Pos0 .*1: Pos1.*segments one image") as error:
        io.load_image(tmp_path / "positions.ome.tif")
    assert "series=1" in error.value.fix
    with tifffile.TiffWriter(tmp_path / "thumbnail.tif") as writer:
        writer.write(picture)
        writer.write(picture[::4, ::4])
    assert np.array_equal(io.load_image(tmp_path / "thumbnail.tif").array, picture)


# -- kind 5: NIfTI headers (qform / sform as SPM, FSL, nibabel write them; NIfTI-2; time) ----------------------


def _rotation(angle_deg: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _nifti(path: Path, qform: np.ndarray, qcode: int, sform: np.ndarray, scode: int, version: int = 1) -> np.ndarray:
    """A 24 x 20 x 4 int16 NIfTI (nibabel) with the given transforms and codes; returns its data as (z, y, x)."""
    data = np.random.default_rng(0).integers(-50, 50, (24, 20, 4)).astype(np.int16)
    image = (nib.Nifti2Image if version == 2 else nib.Nifti1Image)(data, None)
    image.set_qform(qform, qcode)
    image.set_sform(sform, scode)
    image.to_filename(str(path))
    return data.transpose(2, 1, 0)


def _affine(zooms, angle: float, offset) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = _rotation(angle) @ np.diag(zooms)
    affine[:3, 3] = offset
    return affine


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    qcode=st.sampled_from([0, 1, 2]),
    scode=st.sampled_from([0, 1, 2, 4]),
    angle=st.sampled_from([0.0, 12.5, 90.0]),
    moved=st.sampled_from([(0.0, 0.0, 0.0), (55.0, 65.0, -50.0)]),
    version=st.sampled_from([1, 2]),
    suffix=st.sampled_from([".nii", ".nii.gz"]),
)
def test_nifti_labels_carry_the_inputs_qform_sform_and_codes(tmp_path, qcode, scode, angle, moved, version, suffix):
    """NU5 and its kind: whatever qform / sform / codes a NIfTI-1 or NIfTI-2 holds (SPM's coregistration: a new
    sform beside the old qform; neither code set), fmscope's label volume carries them as they are, so nibabel /
    FSL (sform first) and ITK (qform first) each put the labels where they put the image; the voxels are those
    nibabel reads."""
    zooms = (0.8, 0.9, 3.0)
    qform = _affine(zooms, 0.0, (-25.0, -25.0, -10.0))
    sform = _affine(zooms, angle, np.add((-25.0, -25.0, -10.0), moved))
    path = tmp_path / f"in_v{version}_{qcode}_{scode}{suffix}"
    data = _nifti(path, qform, qcode, sform, scode, version)
    volume = io.read_volume(path)
    assert np.array_equal(volume.array, data)
    labels = (volume.array > 0).astype(np.uint16)
    out = tmp_path / f"labels_{version}_{qcode}_{scode}{suffix}"
    out.unlink(missing_ok=True)
    io.write_volume(labels, volume, out)
    given_, written = nib.load(str(path)), nib.load(str(out))
    assert type(written.header) is type(given_.header)
    for field in ("qform_code", "sform_code"):
        assert int(written.header[field]) == int(given_.header[field])
    assert np.allclose(written.header.get_qform(), given_.header.get_qform(), atol=1e-4)
    assert np.allclose(written.header.get_sform(), given_.header.get_sform(), atol=1e-4)
    assert np.allclose(written.affine, given_.affine, atol=1e-4)
    assert np.array_equal(np.asanyarray(written.dataobj).transpose(2, 1, 0), labels)
    if version == 1:  # ITK reads both: the same grid
        a, b = sitk.ReadImage(str(path)), sitk.ReadImage(str(out))
        assert np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetDirection(), b.GetDirection())


def test_a_one_slice_nifti_mask_carries_the_inputs_sform(tmp_path):
    """The 2D path (fmscope segment on a one-slice NIfTI) writes its mask with the input's qform and sform."""
    path, out = tmp_path / "slice.nii.gz", tmp_path / "mask.nii.gz"
    image = nib.Nifti1Image(np.ones((16, 12, 1), np.int16), None)
    image.set_qform(_affine((0.7, 0.7, 5.0), 0, (1, 2, 3)), 1)
    image.set_sform(_affine((0.7, 0.7, 5.0), 30, (40, 50, 60)), 2)
    image.to_filename(str(path))
    loaded = io.load_image(path)
    io.write_image(np.ones(loaded.array.shape, np.uint8), out, geometry=loaded.geometry)
    written = nib.load(str(out))
    assert written.shape == (16, 12, 1) and int(written.header["sform_code"]) == 2
    assert np.allclose(written.header.get_sform(), image.header.get_sform(), atol=1e-4)
    assert np.allclose(written.header.get_qform(), image.header.get_qform(), atol=1e-4)


def test_nifti_transforms_fmscope_cannot_choose_between_are_refused_by_name(tmp_path, capsys):
    """A sform of other voxel sizes than the qform, a sheared sform (NU19 b), and a NIfTI whose two transforms
    differ written to a format of one transform (NRRD; `fmscope volume -o .mha` before any work): refused naming
    both transforms and a fix that applies."""
    zooms = (0.8, 0.9, 3.0)
    qform = _affine(zooms, 0, (0, 0, 0))
    _nifti(tmp_path / "zooms.nii", qform, 1, _affine((1.0, 0.9, 3.0), 0, (0, 0, 0)), 2)
    with pytest.raises(FmscopeError, match="other voxel sizes") as refused:
        io.read_volume(tmp_path / "zooms.nii")
    assert "copysform2qform" in refused.value.fix and "0.8 x 0.9 x 3 mm" in str(refused.value)
    sheared = qform.copy()
    sheared[0, 1] = 0.1
    _nifti(tmp_path / "shear.nii", qform, 0, sheared, 2)
    with pytest.raises(FmscopeError, match="sheared") as refused:
        io.read_volume(tmp_path / "shear.nii")
    assert "Resample" in refused.value.fix and "Give a NIfTI" not in refused.value.fix
    _nifti(tmp_path / "spm.nii", qform, 1, _affine(zooms, 0, (30, 40, -60)), 2)
    volume = io.read_volume(tmp_path / "spm.nii")
    with pytest.raises(FmscopeError, match="qform and sform place its voxels differently") as refused:
        io.write_volume(np.zeros(volume.array.shape, np.uint16), volume, tmp_path / "labels.nrrd")
    assert ".nii.gz" in refused.value.fix and not (tmp_path / "labels.nrrd").exists()
    mha = tmp_path / "labels.mha"
    code, _, err = cli(capsys, "volume", tmp_path / "spm.nii", "--slice", 1, "--box", 2, 2, 9, 9, "-o", mha)
    assert code == 1 and "qform and sform place its voxels differently" in err and not mha.exists()


def test_a_4d_nifti_is_refused_as_time_not_channels(tmp_path):
    """A cine MR NIfTI (x, y, 1, t) given as a volume: refused naming its time axis (NU11's file, for 'volume')."""
    image = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((1, 8, 8), np.int16)) for _ in range(3)])
    sitk.WriteImage(image, str(tmp_path / "cine.nii.gz"))
    with pytest.raises(FmscopeError, match="fourth axis is time \\(3 time points") as refused:
        io.read_volume(tmp_path / "cine.nii.gz")
    assert "multi-channel" not in str(refused.value) + refused.value.fix


@pytest.mark.parametrize("mode", ["L", "P"])
def test_a_label_png_with_an_exif_orientation_turns_with_its_picture(tmp_path, mode):
    """A mask saved with the phone picture's EXIF orientation (grey or indexed PNG) is read turned as viewers show
    it, as the picture is: `eval` compares the same pixels, and the note says so."""
    from fmscope.imaging.labels import read_label_image

    shown = np.zeros((40, 60), np.uint8)
    shown[5:15, 30:50] = 1  # an object in the upper right of the picture as shown
    stored = Image.fromarray(np.rot90(shown, 1).copy(), mode="L")  # orientation 6: stored turned left
    stored = stored.convert("P") if mode == "P" else stored
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "mask.png", exif=exif)
    picture = Image.fromarray(np.rot90(np.where(shown > 0, 200, 30).astype(np.uint8), 1).copy())
    picture.save(tmp_path / "photo.png", exif=exif)
    labels = read_label_image(tmp_path / "mask.png", instances=False)
    assert labels.array.shape == io.load_image(tmp_path / "photo.png").array.shape[:2] == (40, 60)
    assert np.array_equal(labels.array > 0, shown > 0)
    assert any("EXIF orientation 6" in note for note in labels.notes)
