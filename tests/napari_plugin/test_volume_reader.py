"""The volume reader in a real viewer (pytest-qt, Xvfb), as users reach it (File > Open, drag and drop, Open
Sample): every volume placed at its physical points (direction, spacing, origin) as the engine reads it, DICOM
folders read with their spacing, a cine's pixel size kept, and the engine's refusal shown, not swallowed."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from napari.utils.notifications import notification_manager
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from fmscope.imaging import io
from fmscope.imaging.tracking.frames import open_frames
from fmscope.napari.segment_widget import BOXES, LABELS
from fmscope.samples import sample_data_dir

SPACING, ORIGIN = (0.8, 0.9, 3.0), (10.0, 20.0, 30.0)  # x, y, z mm
c, s = np.cos(0.4), np.sin(0.4)
DIRECTIONS = {  # row-major 3 x 3, SimpleITK's (LPS) convention
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "x and y flipped (RAS-stored, dcm2niix)": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "z flipped": (1, 0, 0, 0, 1, 0, 0, 0, -1),
    "x and y swapped": (0, 1, 0, 1, 0, 0, 0, 0, 1),
    "oblique": (c, -s, 0, s, c, 0, 0, 0, 1),
}


def world_of(layer, index_zyx) -> np.ndarray:
    return np.asarray(layer.data_to_world(np.asarray(index_zyx, float)))


def messages_while(action) -> list[str]:
    seen = []

    def record(notification):
        seen.append(str(notification.message))

    notification_manager.notification_ready.connect(record)
    try:
        action()
    finally:
        notification_manager.notification_ready.disconnect(record)
    return seen


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_nifti_lands_at_its_physical_points_whatever_its_direction(make_napari_viewer, tmp_path, direction):
    array = np.zeros((6, 40, 50), np.int16)
    array[2, 10, 5] = 1000
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING), image.SetOrigin(ORIGIN), image.SetDirection(DIRECTIONS[direction])
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tmp_path / "ct.nii.gz"), plugin="fmscope")  # File > Open with fmscope's reader
    for index_xyz in [(5, 10, 2), (0, 0, 0), (49, 39, 5)]:
        physical = np.array(image.TransformIndexToPhysicalPoint(index_xyz))
        assert np.allclose(world_of(layer, index_xyz[::-1]), physical[::-1], atol=1e-4), (direction, index_xyz)
    assert np.asarray(layer.data)[2, 10, 5] == 1000  # the file's voxels, not a flipped copy


def test_the_segment_panels_layers_lie_on_an_oblique_volume(make_napari_viewer, open_widget, tmp_path):
    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 400, (4, 48, 40)).astype(np.int16))
    image.SetSpacing(SPACING), image.SetOrigin(ORIGIN), image.SetDirection(DIRECTIONS["oblique"])
    sitk.WriteImage(image, str(tmp_path / "oblique.nii.gz"))
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tmp_path / "oblique.nii.gz"), plugin="fmscope")
    open_widget(viewer, "Segment")
    for name in (LABELS, BOXES):
        assert np.allclose(world_of(viewer.layers[name], (3, 47, 39)), world_of(layer, (3, 47, 39))), name


def test_a_dicom_series_folder_opens_with_its_spacing_and_geometry(make_napari_viewer, tmp_path):
    folder = tmp_path / "CT_series"
    folder.mkdir()
    array = (np.random.default_rng(0).integers(0, 200, (5, 32, 32)) - 1000).astype(np.int16)
    uid = "1.2.826.0.1.3680043.2.1125.1"
    for k in range(5):
        plane = sitk.GetImageFromArray(array[k : k + 1])
        plane.SetSpacing((0.7, 0.7, 2.5)), plane.SetOrigin((-5.0, 7.0, 2.5 * k))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for tag, value in [("0020|000e", uid), ("0020|000d", uid + ".0"), ("0008|0060", "CT"),
                           ("0020|0013", str(k + 1)), ("0020|0032", f"-5\\7\\{2.5 * k}"),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0028|0030", "0.7\\0.7"),
                           ("0008|0018", uid + f".{k + 10}")]:  # fmt: skip
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        writer.Execute(plane)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(folder), plugin="fmscope")  # a folder dragged onto napari
    volume = io.read_volume(folder)
    assert np.array_equal(layer.data, volume.array) and layer.data.shape == (5, 32, 32)
    assert np.allclose(layer.scale, (2.5, 0.7, 0.7)) and np.allclose(layer.translate, (0, 7, -5))
    assert layer.metadata["fmscope_volume"].spacing == volume.spacing  # the Track panel's NIfTI export has it


def test_the_ct_sample_and_its_file_lie_in_the_same_place(make_napari_viewer):
    viewer = make_napari_viewer()
    sample = viewer.open_sample("fmscope", "ct_lung_volume")  # File > Open Sample
    [read] = viewer.open(str(sample_data_dir() / "ct_lung_volume.nrrd"), plugin="fmscope")
    for layer in sample:
        assert np.allclose(layer.scale, read.scale) and np.allclose(layer.translate, read.translate), layer.name
        assert np.allclose(layer.affine.affine_matrix, read.affine.affine_matrix)
    assert not np.allclose(read.translate, 0)  # the file's origin, (-657.5, -174.4, -76.4) mm


def test_a_volume_fmscope_refuses_shows_its_reason_and_adds_no_layer(make_napari_viewer, tmp_path):
    path = tmp_path / "cine4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 4, 3), np.int16), np.eye(4)), path)
    viewer = make_napari_viewer()
    seen = messages_while(lambda: viewer.open(str(path), plugin="fmscope"))
    assert not len(viewer.layers)
    assert any("time" in m and "Fix:" in m for m in seen), seen


def test_a_cine_dicom_layer_has_its_pixel_spacing(make_napari_viewer, tmp_path):
    path = tmp_path / "cine_mr.dcm"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = "MR", generate_uid(), generate_uid(), "x"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 40, 60, 12
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing, ds.FrameTime = [2.0, 1.0], 40.0
    ds.PixelData = np.zeros((12, 40, 60), np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="fmscope")
    assert open_frames(path).spacing == (2.0, 1.0)
    assert np.allclose(layer.scale, (1.0, 2.0, 1.0))  # 80 mm x 60 mm of anatomy, drawn so
