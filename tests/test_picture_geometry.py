"""A microscopy picture's pixel size and position (OME-Zarr, OME-TIFF, ImageJ TIFF) kept from input to labels.

NUB7: ``fmscope segment img.ome.zarr -o labels.ome.zarr`` wrote labels at scale 1, no unit, no translation, so
napari / any NGFF viewer put them 3x too small and away from the object (napari/napari#5512).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmscope.cli import main
from fmscope.imaging import io
from fmscope.imaging.ome_zarr_labels import write_ome_zarr_labels
from fmscope.imaging.picture_geometry import output_note
from fmscope.imaging.tiled_labels import write_tiled_labels

NGFF_UNITS = ("nanometer", "micrometer", "millimeter")


def _ome_zarr(path: Path, image: np.ndarray, unit: str | None, scale: float, shift: tuple[float, float]) -> None:
    """An NGFF 0.4 image: level 0 at ``scale``, level 1 at twice it, the multiscale translated by ``shift``."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=image, chunks=(64, 64))
    group.create_array("1", data=image[::2, ::2], chunks=(64, 64))
    axes = [{"name": name, "type": "space", **({"unit": unit} if unit else {})} for name in "yx"]
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [scale, scale]}]},
                {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [2 * scale, 2 * scale]}]},
            ],
            "coordinateTransformations": [{"type": "translation", "translation": list(shift)}],
        }
    ]


def _level0(store: Path) -> tuple[np.ndarray, np.ndarray, list]:
    """(scale (y, x), translation (y, x), axes) of a written label store's level 0."""
    multiscale = json.loads((store / ".zattrs").read_text())["multiscales"][0]
    scale, shift = np.ones(2), np.zeros(2)
    for transform in multiscale["datasets"][0]["coordinateTransformations"]:
        if transform["type"] == "scale":
            scale, shift = scale * transform["scale"], shift * transform["scale"]
        else:
            shift = shift + transform["translation"]
    return scale, shift, multiscale["axes"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    unit=st.sampled_from((*NGFF_UNITS, None)),
    scale=st.floats(0.01, 50),
    shift=st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)),
)
def test_ome_zarr_labels_carry_the_inputs_scale_translation_and_unit(tmp_path_factory, unit, scale, shift):
    """Generated NGFF images (unit, level-0 scale, multiscale translation): the label store's every level k maps
    its pixels to the image's space (scale x 2**k, the same translation, the same unit), and reads back with the
    image's geometry."""
    folder = tmp_path_factory.mktemp("ngff")
    image = np.arange(128 * 96, dtype=np.uint16).reshape(128, 96)
    _ome_zarr(folder / "img.ome.zarr", image, unit, scale, shift)
    read = io.open_image(folder / "img.ome.zarr")
    assert read.geometry is not None and read.geometry.unit == (unit or "")
    labels = np.zeros((128, 96), np.uint8)
    labels[10:40, 20:50] = 1
    write_ome_zarr_labels(folder / "labels.ome.zarr", labels.shape, np.uint8, [(0, 0, labels)], geometry=read.geometry)
    got_scale, got_shift, axes = _level0(folder / "labels.ome.zarr")
    assert np.allclose(got_scale, scale, rtol=1e-9) and np.allclose(got_shift, shift[::1], rtol=1e-9, atol=1e-9)
    assert [axis.get("unit") for axis in axes] == [unit, unit]
    back = io.open_image(folder / "labels.ome.zarr")
    assert back.geometry.spacing == pytest.approx(read.geometry.spacing)
    assert back.geometry.origin == pytest.approx(read.geometry.origin, abs=1e-9)


def test_tiff_labels_carry_an_ome_or_imagej_tiffs_pixel_size(tmp_path):
    """OME-TIFF (PhysicalSizeX / Y, µm or nm) and ImageJ TIFF (unit + resolution) inputs: the pixel size is read
    (in mm, unit kept), and label TIFFs, whole or tiled, carry it (OME-XML + resolution tags) so they read back
    the same; a plain TIFF's dots per inch is not a pixel size."""
    image = np.zeros((64, 80), np.uint16)
    tifffile.imwrite(
        tmp_path / "a.ome.tif",
        image,
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.5, "PhysicalSizeXUnit": "µm"},
    )
    tifffile.imwrite(
        tmp_path / "b.ome.tif",
        image,
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 250, "PhysicalSizeY": 250, "PhysicalSizeXUnit": "nm",
                  "PhysicalSizeYUnit": "nm"},
    )  # fmt: skip
    tifffile.imwrite(tmp_path / "c.tif", image, imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "um"})
    tifffile.imwrite(tmp_path / "d.tif", image, resolution=(72, 72), resolutionunit="INCH")
    expected = {"a.ome.tif": (0.325e-3, 0.5e-3), "b.ome.tif": (0.25e-3, 0.25e-3), "c.tif": (0.65e-3, 0.65e-3)}
    assert io.load_image(tmp_path / "d.tif").geometry is None
    labels = np.zeros((64, 80), np.uint8)
    labels[5:20, 5:30] = 3
    for name, spacing in expected.items():
        geometry = io.load_image(tmp_path / name).geometry
        assert geometry.spacing == pytest.approx(spacing) and geometry.origin == (0.0, 0.0)
        io.write_image(labels, tmp_path / f"labels_{name}", geometry=geometry)
        write_tiled_labels(tmp_path / f"tiled_{name}", labels.shape, np.uint8, [(0, 0, labels)], geometry=geometry)
        for written in (f"labels_{name}", f"tiled_{name}"):
            back = io.load_image(tmp_path / written)
            assert back.geometry.spacing == pytest.approx(spacing), written
            assert np.array_equal(back.array, labels)
            with tifffile.TiffFile(tmp_path / written) as tiff:
                assert tiff.pages[0].tags["XResolution"].value[0] / tiff.pages[0].tags["XResolution"].value[1] == (
                    pytest.approx(10 / spacing[0])
                )


@pytest.mark.slow
def test_segment_writes_labels_on_the_inputs_micrometres(tmp_path, capsys):
    """The NUB7 case through the CLI (real LiteMedSAM, one call): an OME-Zarr (0.325 µm, origin (100, 200) µm) gives
    OME-Zarr labels at scale 0.325 µm with its translation (the OME-TIFF's reading is checked above); a PNG output
    of a calibrated picture says it keeps no pixel size."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    image = rng.normal(200, 20, (256, 256))
    image[(yy - 100) ** 2 + (xx - 150) ** 2 < 30**2] += 1500
    _ome_zarr(tmp_path / "img.ome.zarr", np.clip(image, 0, None).astype(np.uint16), "micrometer", 0.325, (100, 200))
    out = tmp_path / "labels.ome.zarr"
    assert main(["segment", str(tmp_path / "img.ome.zarr"), "--box", "115", "65", "185", "135", "-o", str(out)]) == 0
    scale, translation, axes = _level0(out)
    assert np.allclose(scale, 0.325) and np.allclose(translation, (100, 200)) and axes[0]["unit"] == "micrometer"
    assert 2000 < int((zarr.open_array(str(out / "0"), mode="r")[:] > 0).sum()) < 3500
    assert "keeps" not in capsys.readouterr().out
    geometry = io.open_image(tmp_path / "img.ome.zarr").geometry
    note = output_note(geometry, tmp_path / "labels.png", io.VOLUME_SUFFIXES)
    assert "labels.png keeps no pixel size or position" in note
    assert output_note(geometry, tmp_path / "labels.tif", io.VOLUME_SUFFIXES).startswith("labels.tif keeps the pixel")


def test_a_calibrated_tiff_timelapse_keeps_its_pixel_size_in_the_label_stack(tmp_path):
    """An OME-TIFF time-lapse (T, Y, X) with PhysicalSizeX / Y 0.5 µm: the frames' spacing is 0.0005 mm (y, x), and
    the label stack written as TIFF carries it as resolution tags (20,000 pixels per cm), as NIfTI as its spacing."""
    from fmscope.imaging.tracking.export import write_label_stack
    from fmscope.imaging.tracking.frames import open_frames

    stack = np.zeros((3, 32, 40), np.uint16)
    tifffile.imwrite(
        tmp_path / "movie.ome.tif",
        stack,
        ome=True,
        metadata={"axes": "TYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    frames = open_frames(tmp_path / "movie.ome.tif")
    assert frames.spacing == pytest.approx((0.0005, 0.0005))
    write_label_stack(stack, tmp_path / "labels.tif", frames.spacing)
    with tifffile.TiffFile(tmp_path / "labels.tif") as tiff:
        numerator, denominator = tiff.pages[0].tags["XResolution"].value
        assert numerator / denominator == pytest.approx(20000) and tiff.pages[0].tags["ResolutionUnit"].value == 3
    write_label_stack(stack, tmp_path / "labels.nii.gz", frames.spacing)
    assert io.read_volume(tmp_path / "labels.nii.gz").spacing[:2] == pytest.approx((0.0005, 0.0005))
