"""A cine DICOM cut short (NumberOfFrames says N, the pixel data holds fewer) is refused as truncated,
naming what it holds, by the tracking engine, the napari reader and ``fmscope track`` (never taken
for a single-frame DICOM nor read with missing frames)."""

from __future__ import annotations

import pydicom
import pytest

from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging.tracking import open_frames
from fmscope.napari.video_reader import video_layer_data
from fmscope.samples import sample_data_dir

ECHO = sample_data_dir() / "echo_a4c_cine.dcm"  # JPEG baseline, 30 frames of 320 x 240 RGB
FRAME_BYTES = 320 * 240 * 3


def cut(tmp_path, keep: float, name: str = "cut.dcm"):
    data = ECHO.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_a_compressed_cine_cut_in_half_is_refused_as_truncated(tmp_path):
    path = cut(tmp_path, 0.5)
    for read in (open_frames, video_layer_data):
        with pytest.raises(
            FmscopeError,
            match=r"cut.dcm is truncated or damaged: its header says 30 frames of "
            r"320x240 pixels, but its pixel data holds [\d,]+ bytes "
            r"\(12 whole frames\)",
        ):
            read(path)


def test_an_uncompressed_cine_holding_five_frames_names_them(tmp_path):
    native = pydicom.dcmread(ECHO)
    native.decompress()
    native.save_as(tmp_path / "cut.dcm")
    data = (tmp_path / "cut.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-100])  # the last frame 100 bytes short
    with pytest.raises(FmscopeError, match=f"holds {30 * FRAME_BYTES - 100:,} bytes \\(29 whole frames\\)"):
        open_frames(tmp_path / "cut.dcm")
    native.PixelData = native.PixelData[: 5 * FRAME_BYTES]  # a consistent file, 5 frames of the 30 promised
    native.save_as(tmp_path / "five.dcm")
    with pytest.raises(FmscopeError, match=f"holds {5 * FRAME_BYTES:,} bytes \\(5 whole frames\\)"):
        open_frames(tmp_path / "five.dcm")


@pytest.mark.parametrize("tag, extra", [(b"\x28\x00\x08\x00", 0), (b"\xe0\x7f\x10\x00", 0), (b"\xe0\x7f\x10\x00", 8)])
def test_a_file_cut_in_its_header_is_not_a_single_frame(tmp_path, tag, extra):
    """Cut just before NumberOfFrames (the header no longer names 30 frames), just before the pixel
    data, and inside the pixel data's element header."""
    data = ECHO.read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: data.index(tag) + extra])
    with pytest.raises(FmscopeError, match="cut.dcm is (a )?truncated or damaged") as caught:
        open_frames(path)
    assert "single-frame" not in str(caught.value)


def test_track_refuses_a_truncated_cine_with_exit_1(tmp_path, capsys):
    path = cut(tmp_path, 0.8)
    code = main(
        ["track", str(path), "--frame", "0", "--box", "100", "60", "200", "160", "-o", str(tmp_path / "labels.tif")]
    )
    err = capsys.readouterr().err
    assert code == 1 and "truncated or damaged" in err and "30 frames" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.dcm"]


def test_a_complete_cine_and_a_single_frame_dicom_still_read(tmp_path):
    assert open_frames(ECHO).n_frames == 30
    one = pydicom.dcmread(ECHO)
    one.NumberOfFrames = 1
    one.save_as(tmp_path / "one.dcm")
    with pytest.raises(FmscopeError, match="is a single-frame DICOM"):
        open_frames(tmp_path / "one.dcm")
