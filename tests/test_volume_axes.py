"""Volume files with axes besides z, y, x: a TIFF's channel and time axes, a NIfTI-2's time axis.

The volume reader (``fmscope volume``, batch volume rows, the Slicer module, train-segmenter) reads a TIFF by its
series axes as the time-lapse reader does (SimpleITK read an ImageJ ZCYX hyperstack as 2 x Z interleaved slices), and
a NIfTI-2 cine (x, y, 1, t) as NIfTI-1 (it was taken for a 3D image of t components per voxel).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile

from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging import io
from fmscope.imaging.tracking import open_frames

RNG = np.random.default_rng(0)
ZCYX = RNG.integers(0, 4000, (4, 2, 12, 10), dtype=np.uint16)  # 4 z slices of 2 channels


def test_an_imagej_zcyx_hyperstack_is_refused_naming_its_channels_never_interleaved(tmp_path, capsys):
    """`fmscope volume` on a 2-channel ImageJ z-stack: exit 1 naming the 2 channels and the axes, nothing written;
    the channel saved as the fix says reads as its own 4 slices."""
    path, out = tmp_path / "zcyx.tif", tmp_path / "labels.nii.gz"
    tifffile.imwrite(path, ZCYX, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(FmscopeError, match=r"2 channels \(axes ZCYX, shape \(4, 2, 12, 10\)\)") as refused:
        io.read_volume(path)
    assert "Split Channels" in refused.value.fix and "imread('zcyx.tif')[:, 0]" in refused.value.fix
    code = main(["volume", str(path), "--slice", "1", "--box", "2", "2", "8", "8", "-o", str(out)])
    assert code == 1 and "2 channels" in capsys.readouterr().err and not out.exists()
    tifffile.imwrite(tmp_path / "one.tif", tifffile.imread(path)[:, 0], imagej=True, metadata={"axes": "ZYX"})
    assert np.array_equal(io.read_volume(tmp_path / "one.tif").array, ZCYX[:, 0])


@pytest.mark.parametrize(
    ("axes", "data", "fix"),
    [
        ("TYX", ZCYX[:, 0], "Use 'fmscope track'"),
        ("TZYX", ZCYX.swapaxes(0, 1), "imread('t.tif')[0, :]"),
        ("ZYXS", RNG.integers(0, 255, (4, 12, 10, 3), dtype=np.uint8), "8-bit"),
    ],
)
def test_tiff_time_and_colour_axes_are_refused_as_volumes(tmp_path, axes, data, fix):
    """A time-lapse (T), a time-lapse of z-stacks and an RGB z-stack given as a volume: refused by their axes."""
    tifffile.imwrite(tmp_path / "t.tif", data, imagej=True, metadata={"axes": axes})
    with pytest.raises(FmscopeError, match=f"axes {axes}") as refused:
        io.read_volume(tmp_path / "t.tif")
    assert fix in refused.value.fix


def test_tiff_z_stacks_are_read_by_their_axes_with_their_voxel_size(tmp_path):
    """ImageJ (spacing, unit) and OME (PhysicalSize*) z-stacks keep their voxel size in mm; ImageJ without a z step
    takes 1 unit (as ImageJ does) and says so; plain multi-page TIFFs (3 pages, stored as planar samples by
    tifffile, or 5) and pages appended one at a time read as their slices, 1 apart."""
    stack = ZCYX[:, 0]
    tifffile.imwrite(
        tmp_path / "ij.tif",
        stack,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "spacing": 2.5, "unit": "um"},
    )
    tifffile.imwrite(
        tmp_path / "ij_no_z.tif", stack, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "ZYX", "unit": "um"}
    )
    tifffile.imwrite(
        tmp_path / "z.ome.tif",
        stack,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0},
    )
    volume = io.read_volume(tmp_path / "ij.tif")
    assert np.array_equal(volume.array, stack) and np.allclose(volume.spacing, (5e-4, 5e-4, 2.5e-3))
    volume = io.read_volume(tmp_path / "ij_no_z.tif")
    assert np.allclose(volume.spacing, (5e-4, 5e-4, 1e-3)) and "no z step" in volume.notes[0]
    volume = io.read_volume(tmp_path / "z.ome.tif")
    assert np.array_equal(volume.array, stack) and np.allclose(volume.spacing, (5e-4, 5e-4, 2e-3))
    for pages in (3, 5):
        data = RNG.integers(0, 255, (pages, 12, 10), dtype=np.uint8)
        tifffile.imwrite(tmp_path / f"plain{pages}.tif", data)
        volume = io.read_volume(tmp_path / f"plain{pages}.tif")
        assert np.array_equal(volume.array, data) and volume.spacing == (1.0, 1.0, 1.0)
    for page in stack:
        tifffile.imwrite(tmp_path / "appended.tif", page, append=True)
    assert np.array_equal(io.read_volume(tmp_path / "appended.tif").array, stack)


def test_a_nifti2_cine_is_read_as_the_same_nifti1_cine(tmp_path):
    """A 4D NIfTI-2 (x, y, 1, t; nibabel's Nifti2Image) given as a volume: refused as the NIfTI-1 file is (time, not
    16 components per voxel); as frames: the same time points, pixel size, frame rate and geometry as NIfTI-1."""
    data = RNG.integers(0, 500, (8, 6, 1, 16)).astype(np.int16)
    frames, messages = [], []
    for version, kind in ((1, nib.Nifti1Image), (2, nib.Nifti2Image)):
        image = kind(data, np.diag([0.7, 0.8, 5.0, 1.0]))
        image.header.set_xyzt_units("mm", "msec")
        image.header["pixdim"][4] = 40.0
        path = tmp_path / f"cine{version}.nii"
        image.to_filename(str(path))
        with pytest.raises(FmscopeError, match=r"fourth axis is time \(16 time points") as refused:
            io.read_volume(path)
        messages.append(str(refused.value).replace(path.name, "") + refused.value.fix)
        frames.append(open_frames(path))
    assert messages[0] == messages[1] and "components" not in messages[1]
    one, two = frames
    assert one.n_frames == two.n_frames == 16 and np.array_equal(np.stack(list(two)), data[:, :, 0].transpose(2, 1, 0))
    assert np.allclose(two.spacing, one.spacing) and two.fps == one.fps == 25.0
    assert np.allclose(two.geometry.spacing, one.geometry.spacing)
    assert np.allclose(two.geometry.direction, one.geometry.direction)
    assert np.allclose(two.geometry.origin, one.geometry.origin)
