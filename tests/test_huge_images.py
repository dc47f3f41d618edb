"""Huge images (issue 27): one box on a 6000 x 6000 tiled TIFF or OME-Zarr holding the real nuclei sample reads
only its crop, gives the mask of the ordinary 512 x 512 image, and writes a tiled label TIFF; layouts that cannot
be read in parts are refused by name (real LiteMedSAM, real files written with tifffile and zarr)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from cli_runner import run_cli

from fmscope.errors import Cancelled, FmscopeError
from fmscope.imaging import io, lazy_image
from fmscope.imaging.intensity import auto_intensity
from fmscope.imaging.lazy_image import LazyImage
from fmscope.metrics import dice
from fmscope.progress import Progress

SIDE = 6000  # 36 M pixels: above EAGER_MAX_PIXELS, so read lazily
OFFSET = (2048, 3072)  # (y, x) where the 512 x 512 sample is pasted (multiples of the lattice step: same crops)
BOX = np.array([410.0, 443.0, 441.0, 466.0])  # a nucleus of the sample, away from its borders


@pytest.fixture(scope="module")
def sample8(nuclei) -> np.ndarray:
    """The nuclei sample as uint8 (its own automatic window), so every reader uses the same pixels as is."""
    image = nuclei[0]
    return auto_intensity(image).to_uint8(image)


@pytest.fixture(scope="module")
def huge(tmp_path_factory, sample8) -> tuple[np.ndarray, Path, Path]:
    """(the image in memory, a tiled zlib TIFF of it, an OME-Zarr 0.4 of it): zeros with the sample pasted."""
    folder = tmp_path_factory.mktemp("huge")
    image = np.zeros((SIDE, SIDE), np.uint8)
    image[OFFSET[0] : OFFSET[0] + 512, OFFSET[1] : OFFSET[1] + 512] = sample8
    tiff = folder / "huge.tif"
    tifffile.imwrite(tiff, image, tile=(256, 256), compression="zlib")
    store = folder / "huge.ome.zarr"
    group = zarr.open_group(store, mode="w", zarr_format=2)
    level = group.create_array("0", shape=image.shape, chunks=(256, 256), dtype=image.dtype, fill_value=0)
    level[OFFSET[0] : OFFSET[0] + 512, OFFSET[1] : OFFSET[1] + 512] = sample8  # the other chunks: the fill value
    group.attrs["multiscales"] = [
        {"version": "0.4", "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
         "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}]}
    ]  # fmt: skip
    return image, tiff, store


def _eager_mask(segmenter, sample8: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The box's mask on the ordinary 512 x 512 image, inside its crop, and the crop moved to the huge image."""
    segmenter.set_image(sample8)
    result = segmenter.predict(box=BOX)
    y0, x0, y1, x1 = result.crop
    return result.mask[y0:y1, x0:x1], (y0 + OFFSET[0], x0 + OFFSET[1], y1 + OFFSET[0], x1 + OFFSET[1])


@pytest.mark.slow
def test_a_box_on_a_huge_tiled_tiff_reads_only_its_crop_and_masks_as_the_ordinary_image(segmenter, sample8, huge):
    reference, crop = _eager_mask(segmenter, sample8)
    image = io.open_image(huge[1])
    assert isinstance(image, LazyImage) and image.shape == (SIDE, SIDE) and image.chunks == (256, 256)
    box = BOX + [OFFSET[1], OFFSET[0], OFFSET[1], OFFSET[0]]
    with image:
        tracemalloc.start()
        try:
            segmenter.set_image(image)
            result = segmenter.predict(box=box)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.crop == crop and result.mask.shape == reference.shape
    assert dice(result.mask, reference) >= 0.99
    # numpy / zarr memory of the whole call against the image's size: an eager read (the image, its RGB) would be 4x;
    # measured 0.24x, most of it the crop's embedding (256 x 64 x 64 float32, 4 MB, cached) whatever the image's size
    assert peak / image.pixels < 0.4, f"peak {peak / 2**20:.1f} MB for a {image.pixels / 2**20:.0f} MB image"
    with pytest.raises(FmscopeError, match="too large to zoom on"):  # no whole-image embedding of a huge image
        segmenter.predict(box=[100, 100, 3000, 3000])


def test_segment_on_a_huge_ome_zarr_writes_a_tiled_label_tiff_of_the_crop(segmenter, sample8, huge, tmp_path):
    image, tiff, store = huge
    with io.open_image(store) as from_zarr, io.open_image(tiff) as from_tiff:
        assert from_zarr.shape == from_tiff.shape == (SIDE, SIDE)
        assert np.array_equal(from_zarr.read(2000, 3000, 2700, 3700), image[2000:2700, 3000:3700])
        assert np.array_equal(from_tiff[2000:2700, 3000:3700], image[2000:2700, 3000:3700])
    reference, crop = _eager_mask(segmenter, sample8)
    box = BOX + [OFFSET[1], OFFSET[0], OFFSET[1], OFFSET[0]]
    output = tmp_path / "labels.tif"
    result = run_cli("segment", store, "--box", *box, "-o", output)
    assert result.returncode == 0, result.stderr
    with tifffile.TiffFile(output) as written:
        page = written.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256) and page.compression == 8
        assert page.shape == (SIDE, SIDE) and page.software == "fmscope"
        labels = zarr.open(page.aszarr(), mode="r")
        y0, x0, y1, x1 = crop
        assert dice(np.asarray(labels[y0:y1, x0:x1]) == 1, reference) >= 0.99
        assert int(np.count_nonzero(labels[y0:y1, x0:x1])) == int(np.count_nonzero(labels[:, :]))  # nothing outside

    # a file fmscope did not write is never replaced, and nothing is done before saying so
    before = tiff.read_bytes()
    refused = run_cli("segment", store, "--box", *box, "-o", tiff)
    assert refused.returncode == 1 and "that fmscope did not write" in refused.stderr
    assert tiff.read_bytes() == before
    refused = run_cli("segment", tiff, "--box", *box, "-o", tmp_path / "labels.png")
    assert refused.returncode == 2 and "a tiled TIFF or an OME-Zarr only" in refused.stderr


@pytest.mark.slow
def test_segment_writes_an_ome_zarr_label_image_chunk_by_chunk(segmenter, sample8, huge, tmp_path):
    """``-o labels.ome.zarr`` on a huge image: an NGFF 0.4 multiscale label image holding only the chunks the mask
    touches (every level), readable by fmscope's own reader; replaced when fmscope wrote it, refused (nothing
    written) when it did not."""
    import shutil

    image, tiff, store = huge
    reference, crop = _eager_mask(segmenter, sample8)
    box = BOX + [OFFSET[1], OFFSET[0], OFFSET[1], OFFSET[0]]
    output = tmp_path / "labels.ome.zarr"
    result = run_cli("segment", tiff, "--box", *box, "-o", output)
    assert result.returncode == 0, result.stderr
    assert "OME-Zarr label image" in result.stdout
    group = zarr.open_group(output, mode="r")
    assert group.attrs["image-label"]["version"] == "0.4" and group.attrs["fmscope_output"]["written_by"] == "fmscope"
    paths = [dataset["path"] for dataset in group.attrs["multiscales"][0]["datasets"]]
    assert paths == ["0", "1", "2", "3"]  # 6000, 3000, 1500, 750 px: down to at most 1024 a side
    labels = group["0"]
    y0, x0, y1, x1 = crop
    assert dice(np.asarray(labels[y0:y1, x0:x1]) == 1, reference) >= 0.99
    stored = [p for p in (output / "0").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert 1 <= len(stored) <= 4  # the chunks (512 px) the mask touches, not 144
    rows, cols = zip(*(map(int, p.name.split(".")) for p in stored))
    assert int(
        np.count_nonzero(labels[min(rows) * 512 : (max(rows) + 1) * 512, min(cols) * 512 : (max(cols) + 1) * 512])
    )
    with io.open_image(output) as lazy:  # the picture family's reader opens it lazily, with its levels
        assert lazy.shape == (SIDE, SIDE) and len(lazy.coarser) == 3
        assert np.array_equal(lazy.read(y0, x0, y1, x1), np.asarray(labels[y0:y1, x0:x1]))

    again = run_cli("segment", tiff, "--box", *box, "-o", output)  # fmscope's own store: replaced
    assert again.returncode == 0, again.stderr
    foreign = tmp_path / "theirs.ome.zarr"
    shutil.copytree(store, foreign)
    before = sorted((p.relative_to(foreign), p.read_bytes()) for p in foreign.rglob("*") if p.is_file())
    refused = run_cli("segment", tiff, "--box", *box, "-o", foreign)
    assert refused.returncode == 1 and "was not written by fmscope" in refused.stderr
    assert sorted((p.relative_to(foreign), p.read_bytes()) for p in foreign.rglob("*") if p.is_file()) == before


def test_huge_tiff_layouts_read_in_parts_or_are_refused_by_name(huge, tmp_path, monkeypatch):
    image = huge[0]
    region = (2000, 3000, 2600, 3500)
    expected = image[2000:2600, 3000:3500]
    striped, raw, one_strip = tmp_path / "striped.tif", tmp_path / "raw.tif", tmp_path / "one_strip.tif"
    tifffile.imwrite(striped, image, compression="zlib", rowsperstrip=64)
    tifffile.imwrite(raw, image)  # uncompressed, contiguous: memory-mapped
    tifffile.imwrite(one_strip, image, compression="zlib", rowsperstrip=SIDE)
    pyramid = tmp_path / "pyramid.tif"  # whole-slide style: full resolution with a half-size level in a SubIFD
    with tifffile.TiffWriter(pyramid) as writer:
        writer.write(image, tile=(256, 256), compression="zlib", subifds=1)
        writer.write(image[::2, ::2], tile=(256, 256), compression="zlib", subfiletype=1)
    for path in (striped, raw, pyramid):
        with io.open_image(path) as lazy:
            assert lazy.shape == (SIDE, SIDE) and np.array_equal(lazy.read(*region), expected)
    monkeypatch.setattr(lazy_image, "MAX_CHUNK_BYTES", 16 * 2**20)  # one 36 MB strip: above the limit
    with pytest.raises(FmscopeError, match="cannot be read in parts") as refused:
        io.open_image(one_strip)
    assert "tile=(256, 256)" in refused.value.fix

    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((2, 4200, 4200), np.uint8), tile=(256, 256), compression="zlib")
    with pytest.raises(FmscopeError, match="holds a stack"):
        io.open_image(stack)
    channels = tmp_path / "channels.ome.zarr"
    group = zarr.open_group(channels, mode="w", zarr_format=2)
    group.create_array("0", shape=(2, 4200, 4200), chunks=(1, 512, 512), dtype=np.uint8)
    group.attrs["multiscales"] = [{"axes": ["c", "y", "x"], "datasets": [{"path": "0"}]}]
    with pytest.raises(FmscopeError, match="holds a stack"):
        io.open_image(channels)
    assert json.loads((channels / ".zattrs").read_text())  # a real OME-Zarr group was refused, not a broken folder


def test_a_huge_16_bit_image_gets_one_window_from_its_fixed_sample(tmp_path):
    side = 4200  # 17.6 M pixels: lazy
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60000, size=(side, side), dtype=np.uint16) // rng.integers(1, 50, size=(1, side)).astype(
        np.uint16
    )  # columns of different brightness: a window from part of the image would differ
    path = tmp_path / "wide16.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib")
    centres = [(2 * i + 1) * side // (2 * lazy_image.SAMPLE_GRID) for i in range(lazy_image.SAMPLE_GRID)]
    half = lazy_image.SAMPLE_SIDE // 2
    sample = np.concatenate(
        [image[cy - half : cy + half, cx - half : cx + half].ravel() for cy in centres for cx in centres]
    )
    with io.open_image(path) as lazy:
        window = lazy.intensity()
        assert window == auto_intensity(sample) and window == lazy.intensity()  # documented sample, same every time
        assert window != auto_intensity(image[:512, :512])  # not a crop's own window


def test_read_resampled_takes_the_pyramid_level_it_needs_band_by_band(huge, tmp_path, monkeypatch):
    """A whole-slide view (image-expression's tissue at the encoder's scale) comes from the coarsest level at least
    as fine as asked, read in bands: each level is made distinct so the level read shows in the pixels."""
    import cv2

    image = huge[0]
    marked = np.full((SIDE // 2, SIDE // 2), 200, np.uint8)  # the "half-size level": not image[::2, ::2]
    pyramid = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(pyramid) as writer:
        writer.write(image, tile=(256, 256), compression="zlib", subifds=1)
        writer.write(marked, tile=(256, 256), compression="zlib", subfiletype=1)
    store = tmp_path / "pyramid.ome.zarr"
    group = zarr.open_group(store, mode="w", zarr_format=2)
    group.create_array("0", shape=image.shape, chunks=(256, 256), dtype=np.uint8)[:] = image
    group.create_array("1", shape=marked.shape, chunks=(256, 256), dtype=np.uint8)[:] = marked
    group.attrs["multiscales"] = [{"axes": ["y", "x"], "datasets": [{"path": "0"}, {"path": "1"}]}]
    monkeypatch.setattr(lazy_image, "MAX_CHUNK_BYTES", 2**20)  # bands of 256 rows: many bands
    for path in (pyramid, store):
        with io.open_image(path) as lazy:
            assert [level.shape for level in lazy.coarser] == [marked.shape]
            finer = lazy.read_resampled(1.5)  # the half-size level is too coarse for 1.5x: full resolution
            expected = cv2.resize(image, (4000, 4000), interpolation=cv2.INTER_AREA)
            assert finer.shape == (4000, 4000) and np.abs(finer.astype(int) - expected).mean() < 1.0
            coarse = lazy.read_resampled(4)
            assert coarse.shape == (1500, 1500) and np.all(coarse == 200)  # 4x: from the half-size level
    with io.open_image(huge[1]) as lazy:  # no pyramid: full resolution; bands of 256 rows end on output rows,
        assert not lazy.coarser  # so the result is one whole-image resize exactly
        assert np.array_equal(lazy.read_resampled(4), cv2.resize(image, (1500, 1500), interpolation=cv2.INTER_AREA))
        with pytest.raises(FmscopeError, match="at least 1"):
            lazy.read_resampled(0.5)


def test_arrays_held_elsewhere_are_lazy_images_through_one_adapter(tmp_path):
    """dask and zarr arrays (napari's layer data) wrap as LazyImage: reads equal numpy's, RGB samples last, stacks
    refused by name."""
    import dask.array as da

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 4000, size=(300, 500), dtype=np.uint16)
    rgb = rng.integers(0, 255, size=(300, 500, 3), dtype=np.uint8)
    stored = zarr.create_array(tmp_path / "grey.zarr", shape=grey.shape, chunks=(64, 128), dtype=grey.dtype)
    stored[...] = grey
    for array, expected, chunks in (
        (da.from_array(grey, chunks=(100, 250)), grey, (100, 250)),
        (stored, grey, (64, 128)),
        (da.from_array(rgb, chunks=(128, 128, 3)), rgb, (128, 128)),
    ):
        lazy = lazy_image.from_array(array, "a test array")
        assert lazy.shape == expected.shape and lazy.chunks == chunks and lazy.dtype == expected.dtype
        assert np.array_equal(lazy.read(37, 101, 290, 333), expected[37:290, 101:333])
        assert np.array_equal(lazy[5:6, 400:], expected[5:6, 400:])
    with pytest.raises(FmscopeError, match="a lazy image is"):
        lazy_image.from_array(da.zeros((2, 300, 500)), "a stack")
    # a dask multiscale (napari's data[1:]): its levels serve large crops
    half = da.from_array(grey[::2, ::2], chunks=(50, 125))
    multiscale = lazy_image.from_array(da.from_array(grey, chunks=(100, 250)), "a multiscale", coarser=[half])
    assert multiscale.level(1).chunks == (50, 125) and multiscale.level_for((0, 0, 300, 300), 150) == (1, 2)
    assert np.array_equal(multiscale.read_level(1, 2, (10, 20, 110, 220)), grey[::2, ::2][5:55, 10:110])
    with pytest.raises(FmscopeError, match="lower-resolution level"):
        lazy_image.from_array(grey, "a multiscale", coarser=[rgb])


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.float32])
def test_a_volume_read_in_ranges_gets_the_whole_arrays_window_and_never_a_larger_range(dtype):
    """VolumeRanges (what the Slicer module hands the engine above its size limit): the automatic window equals
    auto_intensity of the whole array exactly (integers through a histogram, floats through a third pass over the
    bins that hold the percentiles), every range read holds at most ``max_bytes``, and the slices are the array's."""
    from fmscope.imaging.volume_ranges import VolumeRanges

    rng = np.random.default_rng(int(np.dtype(dtype).itemsize))
    volume = (rng.normal(size=(9, 31, 17)) * 900).astype(dtype)
    volume[:2] = volume.min()  # padding: the low percentile falls among equal values
    if volume.dtype.kind == "f":
        volume[3, :4, :4] = np.nan  # not finite: left out of the window (and refused when that slice is read)
    slice_bytes = volume[0].nbytes
    source = VolumeRanges(
        lambda first, last: volume[first : last + 1].copy(), volume.shape, volume.dtype, 2 * slice_bytes
    )
    assert source.intensity(None) == auto_intensity(volume)
    assert all(last - first + 1 <= 2 for first, last in source.ranges_read)
    source.ranges_read.clear()
    for index in (8, 7, 0, 1, 5):
        assert np.array_equal(source[index], volume[index])
    assert source.ranges_read == [(8, 8), (6, 7), (0, 1), (4, 5)]  # aligned ranges, each read once in turn
    if volume.dtype.kind == "f":
        with pytest.raises(FmscopeError, match="NaN"):
            source[3]
    seen = []  # the window's passes report each range read, and stop once cancelled
    progress = Progress(lambda done, total, message: seen.append((done, total, message)))
    assert source.intensity(None, progress) == auto_intensity(volume)
    assert seen[-1][0] == len(seen) and {message for *_, message in seen} == {"reading the volume"}
    progress.cancel()
    with pytest.raises(Cancelled):
        source.intensity(None, progress)


@pytest.mark.slow
def test_a_box_much_larger_than_the_models_input_is_read_from_the_pyramid_level_it_needs(segmenter, sample8, tmp_path):
    """A ~500 px box (crop 1,491 px; LiteMedSAM's input 256 px) on a 4-level OME-Zarr pyramid is read from the
    2x level (the coarsest where the crop still spans PYRAMID_OVERSAMPLING x 256 = 512 px: 746; 4x would give 373),
    the mask mapped back to the full-resolution crop: Dice >= 0.99 against the same box read at full resolution
    (measured 0.9966), reading a quarter of its chunks (counted by the store) and none of level 0; the same pyramid
    as a tiled TIFF (levels in SubIFDs, as scanners write them) gives the same crop and encoder input."""
    import cv2
    import torch

    class CountingStore(zarr.storage.LocalStore):
        """The local store, counting the chunks read per pyramid level."""

        chunks: dict[str, int] = {}

        async def get(self, key, prototype, byte_range=None):
            value = await super().get(key, prototype, byte_range)
            level, _, name = key.partition("/")
            if value is not None and name[:1].isdigit():
                self.chunks[level] = self.chunks.get(level, 0) + 1
            return value

    image = np.zeros((SIDE, SIDE), np.uint8)
    image[1000:5096, 1000:5096] = cv2.resize(sample8[256:, 256:], (4096, 4096), interpolation=cv2.INTER_LINEAR)
    box = (BOX - 256) * 16 + 1000  # the nucleus, 16x larger
    group = zarr.open_group(tmp_path / "pyramid.ome.zarr", mode="w", zarr_format=2)
    level, pyramid_levels = image, []
    for index in range(4):  # 6000, 3000, 1500, 750 px
        group.create_array(str(index), shape=level.shape, chunks=(128, 128), dtype=np.uint8)[:] = level
        pyramid_levels.append(level)
        level = cv2.resize(level, (level.shape[1] // 2, level.shape[0] // 2), interpolation=cv2.INTER_AREA)
    store = CountingStore(tmp_path / "pyramid.ome.zarr", read_only=True)
    levels = [zarr.open_array(store, path=str(index), mode="r") for index in range(4)]
    pyramid_image = LazyImage(levels[0], "YX", "pyramid", (128, 128), coarser=tuple(levels[1:]))
    full_image = LazyImage(levels[0], "YX", "full resolution", (128, 128))  # the same store without its pyramid
    results, chunks = [], []
    for lazy in (pyramid_image, full_image):
        segmenter.set_image(lazy)  # reads its fixed sample of level 0 (the cache identity)
        store.chunks.clear()
        results.append(segmenter.predict(box=box))
        chunks.append(dict(store.chunks))
    pyramid, reference = results
    assert pyramid_image.level_for(reference.crop, 512) == (1, 2)  # the 2x level
    assert pyramid.crop == pyramid_image.snap(reference.crop, 2)  # widened by < 2 px to that level's blocks
    assert all(abs(a - b) < 2 for a, b in zip(pyramid.crop, reference.crop))
    assert pyramid.mask.shape == (pyramid.crop[2] - pyramid.crop[0], pyramid.crop[3] - pyramid.crop[1])
    on_image = [np.zeros(image.shape, bool) for _ in results]
    for canvas, result in zip(on_image, results):
        y0, x0, y1, x1 = result.crop
        canvas[y0:y1, x0:x1] = result.mask
    assert dice(*on_image) >= 0.99, dice(*on_image)
    assert set(chunks[0]) == {"1"} and set(chunks[1]) == {"0"}, chunks
    assert chunks[0]["1"] <= chunks[1]["0"] / 3, chunks  # 128 px chunks: about a quarter

    tiff = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(tiff) as writer:
        writer.write(pyramid_levels[0], tile=(256, 256), subifds=3)
        for lower in pyramid_levels[1:]:
            writer.write(lower, tile=(256, 256), subfiletype=1)
    segmenter.set_image(pyramid_image)
    expected = segmenter.model_input(pyramid.crop)
    with io.open_image(tiff) as lazy:
        segmenter.set_image(lazy)
        assert segmenter.zoom_crops_near(box, 0) == [pyramid.crop]  # the box's own crop, on the 2x level's blocks
        tensor, geometry = segmenter.model_input(pyramid.crop)  # the encoder's input: the same pixels
    assert torch.equal(tensor, expected[0]) and geometry == expected[1]


def test_masks_of_a_pyramid_crop_are_upsampled_in_bands_as_torch_would():
    """upsampled_masks (a crop read from a pyramid level: its full-resolution mask without full-size logits) thresholds
    what torch's bilinear resize (align_corners=False) gives, band by band; ties at zero aside (< 1e-5 of pixels)."""
    import torch
    import torch.nn.functional as F

    from fmscope.imaging.predictor import upsampled_masks

    rng = np.random.default_rng(0)
    for h, w, height, width in [(200, 150, 1491, 1117), (37, 90, 500, 333), (10, 10, 10, 10)]:
        logits = rng.normal(size=(2, h, w)).astype(np.float32)
        resized = F.interpolate(torch.from_numpy(logits)[:, None], size=(height, width), mode="bilinear")
        masks = upsampled_masks(logits, (height, width), band=100)
        assert masks.shape == (2, height, width) and masks.dtype == bool
        assert np.mean(masks != (resized[:, 0] > 0).numpy()) < 1e-5
