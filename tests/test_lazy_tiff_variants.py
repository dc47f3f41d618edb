"""The lazy TIFF reader (issue 27) on Hypothesis-generated TIFFs: tiled (tile sides 16-128) or striped (any strip
height), uint8 / uint16 / int16 / float32 / float64, uncompressed / zlib / LZW / zstd / packbits, grey, grey + alpha,
RGB or RGBA (interleaved or planar; alpha unassociated or associated), plain or OME-TIFF. Each small file is opened
lazily through ``io.open_image`` (its huge threshold lowered to 0 pixels by its parameter) and random crops must equal
tifffile's full read of the file with its alpha dropped (grey + alpha -> grey, RGBA -> RGB), which is also what the
eager reader (``io.load_image``) reads."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmscope.imaging import io
from fmscope.imaging.lazy_image import LazyImage

DTYPES = ("uint8", "uint16", "int16", "float32", "float64")
COMPRESSIONS = (None, "zlib", "lzw", "zstd", "packbits")


@st.composite
def tiffs(draw) -> dict:
    """How to write one TIFF: its pixels and tifffile.imwrite's layout arguments."""
    height, width = draw(st.integers(17, 200)), draw(st.integers(17, 200))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    samples = draw(st.sampled_from((1, 2, 3, 4)))  # grey, grey + alpha, RGB, RGBA
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    shape = (height, width, samples) if samples > 1 else (height, width)
    if dtype.kind == "f":
        pixels = rng.normal(100, 50, size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        pixels = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    layout: dict = {"compression": draw(st.sampled_from(COMPRESSIONS))}
    if draw(st.booleans()):
        layout["tile"] = (16 * draw(st.integers(1, 8)), 16 * draw(st.integers(1, 8)))
    else:
        layout["rowsperstrip"] = draw(st.integers(1, height))
    layout["photometric"] = "rgb" if samples > 2 else "minisblack"
    if samples > 1:
        layout["planarconfig"] = draw(st.sampled_from(("contig", "separate")))
    if samples in (2, 4):  # Fiji / GIMP / QuPath transparency
        layout["extrasamples"] = [draw(st.sampled_from(("unassalpha", "assocalpha")))]
    ome = draw(st.booleans())
    return {"pixels": pixels, "layout": layout, "ome": ome}


def _full_read(path: Path) -> np.ndarray:
    """tifffile's whole read of the first series, samples last, alpha dropped (grey + alpha -> grey, RGBA -> RGB):
    what every crop is compared with."""
    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        array, axes = series.asarray(), series.axes
    if "S" in axes:
        array = np.moveaxis(array, axes.index("S"), -1)
        array = array[..., :3] if array.shape[-1] in (3, 4) else array[..., 0]
    return array


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiffs(), st.data())
def test_generated_tiffs_read_lazily_equal_tifffiles_full_read(case, data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("image.ome.tif" if case["ome"] else "image.tif")
        pixels = case["pixels"]
        planar = case["layout"].get("planarconfig") == "separate"  # tifffile takes planar samples first: (3, H, W)
        tifffile.imwrite(path, np.moveaxis(pixels, -1, 0) if planar else pixels, ome=case["ome"], **case["layout"])
        expected = _full_read(path)
        with io.open_image(path, eager_max_pixels=0) as lazy:
            assert isinstance(lazy, LazyImage)
            assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
            height, width = lazy.shape[:2]
            for _ in range(3):
                y0, x0 = data.draw(st.integers(0, height - 1)), data.draw(st.integers(0, width - 1))
                y1, x1 = data.draw(st.integers(y0 + 1, height)), data.draw(st.integers(x0 + 1, width))
                assert np.array_equal(lazy.read(y0, x0, y1, x1), expected[y0:y1, x0:x1])
            samples = pixels if pixels.ndim == 2 else pixels[..., :3] if pixels.shape[-1] > 2 else pixels[..., 0]
            assert np.array_equal(samples, expected)  # and the file holds what was written
        assert np.array_equal(io.load_image(path).array, expected)  # the eager reader reads the same picture


def test_open_image_opens_a_tiff_once(tmp_path, monkeypatch):
    """One TiffFile per open_image call, lazy or read whole (the header is not read by a second open)."""
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, np.arange(64 * 80, dtype=np.uint16).reshape(64, 80), tile=(16, 32), compression="zlib")
    opened = []

    class Counted(tifffile.TiffFile):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(io.tifffile, "TiffFile", Counted)
    with io.open_image(path, eager_max_pixels=0) as lazy:
        assert isinstance(lazy, LazyImage) and lazy.read(0, 0, 64, 80).shape == (64, 80)
    assert len(opened) == 1
    whole = io.open_image(path)
    assert len(opened) == 2
    assert np.array_equal(whole.array, np.arange(64 * 80, dtype=np.uint16).reshape(64, 80))
