"""DICOM series as exports really leave them, read by the one volume reader (``fmscope.imaging.io.read_volume``):
slices with their own rescale slope (PET), positions rounded to two decimals, files copied twice; and a multi-frame
cine stored JPEG Lossless, read by the one frames reader (``open_frames``).

NUC1-NUC4: SimpleITK's series reader cast a PET series to its first slice's pixel type (70,000 Bq/ml read as 4,464,
SimpleITK#1636); a 0.625 mm series written "%.2f" was refused as "unevenly spaced ... restore the missing files";
"IM0007 - Copy.dcm" made a series "several images per position (echoes, phases)"; pydicom without plugins could not
decode JPEG Lossless (pydicom#1282). The files are written by pydicom as scanners write them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGLosslessSV1, generate_uid

from fmscope.errors import FmscopeError
from fmscope.imaging.io import read_volume
from fmscope.imaging.slice_positions import uneven_positions
from fmscope.imaging.tracking.frames import open_frames

PET, CT = "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.2"


def _write_slice(path: Path, stored: np.ndarray, z: str, series: dict[str, str], number: int, slope: str = "1",
                 sop_uid: str | None = None) -> None:  # fmt: skip
    """One classic single-slice DICOM (uint16, explicit VR little endian) at ImagePositionPatient (0, 0, ``z``)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = series["class"], sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series["study"], series["uid"]
    ds.FrameOfReferenceUID, ds.Modality, ds.PatientID = series["frame"], series["modality"], "1"
    ds.SeriesNumber, ds.InstanceNumber = 3, number
    ds.ImageOrientationPatient, ds.ImagePositionPatient = ["1", "0", "0", "0", "1", "0"], ["0", "0", z]
    ds.PixelSpacing = ["0.8", "0.8"]
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, "0"
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _series(modality: str) -> dict[str, str]:
    return {"class": PET if modality == "PT" else CT, "modality": modality, "study": generate_uid(),
            "uid": generate_uid(), "frame": generate_uid()}  # fmt: skip


def _ct_series(folder: Path, zs: list[str]) -> np.ndarray:
    """A CT series of 32 x 32 slices at the written positions ``zs``; returns the stored pixels (z, y, x)."""
    folder.mkdir()
    series = _series("CT")
    stored = np.random.default_rng(0).integers(900, 1400, (len(zs), 32, 32))
    for k, z in enumerate(zs):
        _write_slice(folder / f"IM{k:04d}.dcm", stored[k], z, series, k + 1)
    return stored


def test_pet_slices_with_their_own_rescale_slope_read_at_their_activity(tmp_path):
    """NUC1: slice 0 empty with slope 1 (integers), slices 1-5 at slope 70000 / 32767 with a 70,000 Bq/ml lesion:
    every slice rescaled by its own slope in float32 (within 0.01 %), with a note naming the slopes."""
    (tmp_path / "pet").mkdir()
    series, slope = _series("PT"), float(f"{70000 / 32767:.6g}")
    activity = np.zeros((6, 24, 24))
    activity[1:] = 5000.0
    activity[1:, 10:14, 10:14] = 70000.0
    for k in range(6):
        this = slope if k else 1.0
        _write_slice(tmp_path / "pet" / f"IM{k:04d}.dcm", np.round(activity[k] / this), "%.2f" % (3.27 * k), series,
                     k + 1, f"{this:.6g}")  # fmt: skip
    volume = read_volume(tmp_path / "pet")
    assert volume.array.dtype == np.float32
    assert np.allclose(volume.array, activity, rtol=1e-4, atol=1.0)
    assert volume.spacing[2] == pytest.approx(3.27, abs=1e-6)
    assert volume.notes == (
        "its slices carry their own rescale slope (1 to 2.1363): each slice rescaled by its own, in float32 (not cast "
        "to the first slice's pixel type)",
    )


def test_positions_written_to_two_decimals_read_on_their_grid_and_a_lost_file_still_refused(tmp_path):
    """NUC2: 0.625 mm slices written "%.2f" (gaps 0.62 / 0.63 mm) read on a 0.625 mm grid (first to last, no
    drift); the same series with a file lost is refused naming the gap; positions written to one decimal cannot
    excuse a gap 0.5 mm off (test_realworld_imaging covers 2.5 / 3 mm)."""
    zs = [-100 + 0.625 * k for k in range(16)]
    stored = _ct_series(tmp_path / "round", ["%.2f" % z for z in zs])
    volume = read_volume(tmp_path / "round")
    assert volume.array.shape == (16, 32, 32) and np.array_equal(volume.array, stored)
    assert volume.spacing[2] == pytest.approx(0.625, abs=1e-3) and volume.origin[2] == pytest.approx(-100)
    _ct_series(tmp_path / "lost", ["%.2f" % z for k, z in enumerate(zs) if k != 7])
    with pytest.raises(FmscopeError, match=r"1.25 mm between slices at -96.25 and -95 mm \(1 file missing\?\)"):
        read_volume(tmp_path / "lost")


def test_gaps_each_within_tolerance_that_drift_off_the_grid_are_refused():
    """Gaps of 1 and 1.009 mm (each within 1 % of the 1 mm median) in two runs of 20: read on an even grid the slices
    would lie up to 0.09 mm from where they were scanned, more than the 0.01 mm allowed: refused naming the drift;
    the same gaps alternating stay on the grid and pass."""
    runs = np.cumsum([0.0] + [1.0] * 20 + [1.009] * 20).tolist()
    assert "drift from an even grid: the file at 20 mm lies 0.09 mm from its place" in uneven_positions(runs, "file")
    alternating = np.cumsum([0.0] + [1.0, 1.009] * 20).tolist()
    assert uneven_positions(alternating, "file") is None


def test_files_copied_twice_are_read_once_with_a_note_and_echoes_still_refused(tmp_path):
    """NUC3: byte-identical copies "IM0003 (1).dcm" and "IM0007 - Copy.dcm" (the same SOP Instance UID), and a
    re-export of slice 5 under another UID with the same position and pixels, are each read once: 10 slices,
    a note naming each copy and the file kept; a file at a slice's position with other pixels (an echo) is not a
    copy: the series is refused as several images per position."""
    folder = tmp_path / "ct"
    stored = _ct_series(folder, [f"{2.5 * k:g}" for k in range(10)])
    shutil.copy2(folder / "IM0003.dcm", folder / "IM0003 (1).dcm")
    shutil.copy2(folder / "IM0007.dcm", folder / "IM0007 - Copy.dcm")
    header = pydicom.dcmread(folder / "IM0005.dcm")
    _write_slice(folder / "export_5.dcm", stored[5], "12.5", {"class": CT, "modality": "CT",
                 "study": header.StudyInstanceUID, "uid": header.SeriesInstanceUID,
                 "frame": header.FrameOfReferenceUID}, 6)  # fmt: skip
    volume = read_volume(folder)
    assert volume.array.shape == (10, 32, 32) and np.array_equal(volume.array, stored)
    notes = "\n".join(volume.notes)
    uid = pydicom.dcmread(folder / "IM0003.dcm").SOPInstanceUID
    assert f"IM0003 (1).dcm is a copy of IM0003.dcm (the same SOP instance, UID {uid}" in notes
    assert "IM0007 - Copy.dcm is a copy of IM0007.dcm" in notes
    assert "export_5.dcm is a copy of IM0005.dcm (the same pixels" in notes
    echo = stored[4].copy()
    echo[0, 0] += 1
    _write_slice(folder / "echo_4.dcm", echo, "10", {"class": CT, "modality": "CT", "study": header.StudyInstanceUID,
                 "uid": header.SeriesInstanceUID, "frame": header.FrameOfReferenceUID}, 5)  # fmt: skip
    with pytest.raises(FmscopeError, match="11 files share 10 slice positions"):
        read_volume(folder)


def test_a_jpeg_lossless_cine_is_decoded_by_gdcm_with_a_note(tmp_path):
    """NUC4: an XA cine of 4 frames stored JPEG Lossless SV1 (as angiography systems write it; pydicom has no
    decoder without plugins) reads frame by frame equal to the frames encoded, with a note saying GDCM decoded it."""
    frames = np.random.default_rng(1).integers(0, 255, (4, 40, 48), dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.12.1", generate_uid()
    meta.TransferSyntaxUID = JPEGLosslessSV1
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality, ds.PatientID = generate_uid(), generate_uid(), "XA", "1"
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.FrameTime = 40, 48, 4, "66.7"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([imagecodecs.jpeg8_encode(f, lossless=True, predictor=1) for f in frames])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "xa.dcm", enforce_file_format=True)
    cine = open_frames(tmp_path / "xa.dcm")
    assert cine.n_frames == 4 and all(np.array_equal(cine[i], frames[i]) for i in range(4))
    assert cine.notes == ("xa.dcm (JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection "
                          "Value 1])) decoded by GDCM (SimpleITK), all frames",)  # fmt: skip


def _write_unplaced_frames(folder: Path, order: list[int], sop_class: str, instance: bool = True) -> list[np.ndarray]:
    """Single-frame files of one series without Image Position / Orientation (the US, Secondary Capture IODs have
    no Image Plane module), named by their UID (file order random); the file of frame t carries Instance Number
    ``order[t] + 1`` (and Content Time in the same order). Returns each frame's pixels by Instance Number."""
    study, series = generate_uid(), generate_uid()
    pixels = [np.full((24, 32), 10 * (k + 1), np.uint8) for k in range(len(order))]
    for k in order:
        pixels[k][4:8, k : k + 4] = 250
        uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = sop_class, uid, study, series
        ds.Modality, ds.SeriesNumber = "US" if sop_class.endswith(".6.1") else "OT", 3
        if instance:
            ds.InstanceNumber = k + 1
        ds.ContentDate, ds.ContentTime = "20260101", f"1200{k:02d}.000"
        ds.Rows, ds.Columns = 24, 32
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = pixels[k].tobytes()
        ds.save_as(folder / f"{uid}.dcm", enforce_file_format=True)
    return pixels


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.permutations(list(range(5))),
    sop_class=st.sampled_from(["1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.7"]),  # US, SC
    instance=st.booleans(),
)
def test_single_frame_images_without_positions_are_frames_in_instance_number_order(
    tmp_path_factory, order, sop_class, instance
):
    """NUE3: a folder of single-frame Ultrasound / Secondary Capture files (no Image Position / Orientation by their
    IOD; files named by UID, written in any order): the frames reader reads them as time frames in Instance Number
    order (Content Time when there is none), with a note (was: refused as a volume, fix "resample to an even
    grid"); the volume reader refuses them as 2D images naming `fmscope track`, never resampling."""
    folder = tmp_path_factory.mktemp("us_cine")
    pixels = _write_unplaced_frames(folder, order, sop_class, instance)
    frames = open_frames(folder)
    assert (frames.n_frames, frames.shape, frames.kind) == (5, (24, 32), "video")
    assert all(np.array_equal(frames[t], pixels[t]) for t in range(5))
    how = "Instance Number order (1 to 5)" if instance else "Content Time order"
    assert any("without slice positions" in note and how in note for note in frames.notes), frames.notes
    with pytest.raises(FmscopeError, match="(?s)2D images without a place in space.*fmscope track") as refused:
        read_volume(folder)
    assert "resample" not in str(refused.value).lower()
