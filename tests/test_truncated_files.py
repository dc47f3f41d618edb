"""Files cut short (an interrupted download or copy) are refused as truncated, never read with the gap blank.

NUB9: SimpleITK read a .nii / .nii.gz cut to 60 % as a volume whose last slices were 0 (ITK#6575), and fmscope
segmented it without a word. OpenCV reads a JPEG cut short with its missing rows grey; ITK says "No such file or
directory" for a MetaImage cut short.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging import io
from fmscope.imaging.labels import read_label_image


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[: max(1, int(len(data) * fraction))])
    return cut


def _refused_as_truncated(read, path: Path) -> None:
    with pytest.raises(FmscopeError) as raised:
        read(path)
    assert (
        "truncated" in str(raised.value) and str(path) in str(raised.value) and "Copy or download" in str(raised.value)
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    suffix=st.sampled_from((".nii", ".nii.gz")),
    dtype=st.sampled_from((np.int16, np.uint8, np.float32)),
    slices=st.integers(2, 12),
    fraction=st.floats(0.5, 0.995),
)
def test_a_nifti_cut_short_is_refused_as_truncated(tmp_path_factory, suffix, dtype, slices, fraction):
    """Generated NIfTI volumes (.nii / .nii.gz, data type, slices) cut anywhere past their header: refused by the
    volume, picture and label readers naming the file; the whole file reads as saved."""
    folder = tmp_path_factory.mktemp("nifti")
    volume = np.random.default_rng(slices).integers(1, 100, (40, 48, slices)).astype(dtype)
    path = folder / f"ct{suffix}"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.5, 1])), path)
    assert np.array_equal(io.read_volume(path).array, volume.transpose(2, 1, 0))
    cut = _cut(path, fraction)
    assert suffix != ".nii" or cut.stat().st_size > 352  # fraction >= 0.5 keeps the 352-byte header: voxels are cut
    for read in (io.read_volume, io.read_grid, read_label_image):
        _refused_as_truncated(read, cut)


def test_complete_gzip_variants_pass_and_the_cli_refuses_a_cut_volume_writing_nothing(tmp_path, capsys):
    """A .nii.gz of two gzip members (pigz / bgzip style; its trailer's size is the last member's) and one with
    zero padding after the stream read as saved; ``fmscope volume`` on a cut .nii.gz exits 1 with one message and
    writes nothing."""
    volume = np.arange(32 * 32 * 6, dtype=np.int16).reshape(6, 32, 32)
    nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0), np.eye(4)), tmp_path / "ct.nii")
    raw = (tmp_path / "ct.nii").read_bytes()
    (tmp_path / "members.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    (tmp_path / "padded.nii.gz").write_bytes(gzip.compress(raw) + b"\0" * 512)
    for name in ("members.nii.gz", "padded.nii.gz"):
        assert np.array_equal(io.read_volume(tmp_path / name).array, volume), name
    cut = _cut(tmp_path / "members.nii.gz", 0.7)
    out = tmp_path / "labels.nii.gz"
    code = main(["volume", str(cut), "--slice", "2", "--box", "4", "4", "20", "20", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "truncated" in err and "Traceback" not in err and not out.exists()


def test_metaimage_nrrd_tiff_png_and_jpeg_cut_short_are_refused_as_truncated(tmp_path):
    """MetaImage (raw, zlib), NRRD (raw, gzip), TIFF (striped, zlib, tiled), PNG and JPEG cut to 60 %: refused as
    truncated by the reader of their family (volumes; pictures and label images); a JPEG with bytes after its end
    (phones append data) and an EXIF thumbnail reads."""
    volume = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 900, (8, 40, 40)).astype(np.int16))
    for name, compress in (("a.mha", False), ("b.mha", True), ("c.nrrd", False), ("d.nrrd", True)):
        sitk.WriteImage(volume, str(tmp_path / name), useCompression=compress)
        _refused_as_truncated(io.read_volume, _cut(tmp_path / name, 0.6))
    picture = np.random.default_rng(1).integers(0, 255, (96, 128), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "e.tif", picture)
    tifffile.imwrite(tmp_path / "f.tif", picture, compression="zlib")
    tifffile.imwrite(tmp_path / "g.tif", picture, tile=(32, 32))
    cv2.imwrite(str(tmp_path / "h.png"), picture)
    cv2.imwrite(str(tmp_path / "i.jpg"), np.dstack([picture] * 3))
    for name in ("e.tif", "f.tif", "g.tif", "h.png", "i.jpg"):
        cut = _cut(tmp_path / name, 0.6)
        for read in (io.load_image, read_label_image):
            _refused_as_truncated(read, cut)
    jpeg = (tmp_path / "i.jpg").read_bytes()
    (tmp_path / "trailing.jpg").write_bytes(jpeg + b"\x00MOTION-PHOTO-DATA" * 40)
    assert io.load_image(tmp_path / "trailing.jpg").array.shape == (96, 128, 3)


def test_a_metaimage_whose_detached_data_file_is_short_or_missing_names_that_file(tmp_path, capsys):
    """NUC5: a .mhd + .raw pair (LUNA16's layout) whose .raw is cut to 60 % is refused as truncated naming scan.raw
    and the bytes the header promises; without its .raw the message names the missing data file and the fix (keep
    it beside the .mhd); through ``fmscope volume`` exit 1, nothing written. The pair whole, and a .raw with a
    ``HeaderSize`` of bytes before the voxels, read as saved."""
    volume = np.random.default_rng(2).integers(-500, 900, (6, 24, 24)).astype(np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(tmp_path / "scan.mhd"))
    assert np.array_equal(io.read_volume(tmp_path / "scan.mhd").array, volume)
    raw = (tmp_path / "scan.raw").read_bytes()
    (tmp_path / "skip.raw").write_bytes(b"\xff" * 64 + raw)
    header = (tmp_path / "scan.mhd").read_text().replace("ElementDataFile = scan.raw", "HeaderSize = 64\n"
                                                         "ElementDataFile = skip.raw")  # fmt: skip
    (tmp_path / "skip.mhd").write_text(header)
    assert np.array_equal(io.read_volume(tmp_path / "skip.mhd").array, volume)
    (tmp_path / "scan.raw").write_bytes(raw[: int(len(raw) * 0.6)])
    with pytest.raises(FmscopeError, match=f"promises 24 x 24 x 6 voxels of MET_SHORT \\({len(raw):,} bytes") as cut:
        io.read_volume(tmp_path / "scan.mhd")
    assert str(cut.value).startswith(f"{tmp_path / 'scan.raw'} is truncated") and "Copy or download" in str(cut.value)
    (tmp_path / "scan.raw").unlink()
    out = tmp_path / "labels.nii.gz"
    code = main(["volume", str(tmp_path / "scan.mhd"), "--slice", "2", "--box", "4", "4", "20", "20", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "scan.raw, which is missing" in err and "Put scan.raw beside scan.mhd" in err
    assert "Traceback" not in err and not out.exists()


def test_a_tiff_timelapse_cut_short_is_refused_as_truncated(tmp_path):
    """The frames reader (``fmscope track``) and the label reader refuse a TIFF stack cut short as truncated
    (uncompressed: its data run past the end; zlib: its chain of pages points past the end, where tifffile read
    the pages before the cut as 'a single 2D image')."""
    from fmscope.imaging.tracking.frames import open_frames

    stack = np.random.default_rng(2).integers(0, 255, (6, 48, 64), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", stack)
    tifffile.imwrite(tmp_path / "zlib.tif", stack, compression="zlib")
    for name in ("plain.tif", "zlib.tif"):
        _refused_as_truncated(open_frames, _cut(tmp_path / name, 0.6))
    _refused_as_truncated(read_label_image, tmp_path / "cut_zlib.tif")  # a label stack: not its first slices


def test_an_ome_zarr_with_chunks_not_stored_is_read_with_a_note(tmp_path):
    """An OME-Zarr image whose level 0 lacks a chunk file (an interrupted copy, or zarr leaving out a chunk equal to
    the fill value: indistinguishable): read, the missing chunk as the fill value, with a note counting them; a
    complete store has no note."""
    import zarr

    group = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=np.full((128, 128), 7, np.uint16), chunks=(64, 64))
    group.attrs["multiscales"] = [
        {"version": "0.4", "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
         "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}]}
    ]  # fmt: skip
    assert io.open_image(tmp_path / "img.ome.zarr").note == ""
    (tmp_path / "img.ome.zarr" / "0" / "1.1").unlink()
    image = io.open_image(tmp_path / "img.ome.zarr")
    assert "1 of 4 chunks" in image.note and "fill value 0" in image.note
    assert int((image.array == 0).sum()) == 64 * 64


def test_a_gzipped_nifti_named_nii_is_refused_naming_the_rename(tmp_path, capsys):
    """A .nii.gz saved (or downloaded) under a .nii name: every reader (volume, picture, labels, frames) and the CLI
    refuse it naming the gzip compression and the rename (was: SimpleITK's "Unable to determine ImageIO reader")."""
    from fmscope.imaging.tracking import open_frames

    nib.save(nib.Nifti1Image(np.zeros((16, 12, 3), np.int16), np.eye(4)), tmp_path / "ct.nii.gz")
    (tmp_path / "ct.nii").write_bytes((tmp_path / "ct.nii.gz").read_bytes())
    for read in (io.read_volume, io.load_image, read_label_image, open_frames):
        with pytest.raises(FmscopeError, match=r"(?s)is gzip-compressed \(a .nii.gz file\) but named .nii.*ct.nii.gz"):
            read(tmp_path / "ct.nii")
    out = str(tmp_path / "l.nii")
    assert main(["volume", str(tmp_path / "ct.nii"), "--slice", "1", "--box", "1", "1", "8", "8", "-o", out]) == 1
    assert "gzip-compressed" in capsys.readouterr().err and not (tmp_path / "l.nii").exists()
