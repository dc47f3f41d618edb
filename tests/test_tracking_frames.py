"""Frame sources: arrays, TIFF stacks, image folders, videos (PyAV), cine DICOM (pydicom), volumes."""

from __future__ import annotations

import av
import numpy as np
import pytest
import tifffile
from PIL import Image

from fmscope.errors import FmscopeError
from fmscope.imaging.io import read_volume
from fmscope.imaging.tracking import open_frames
from fmscope.imaging.tracking.frames import VideoFrames
from fmscope.samples import sample_data_dir

ECHO = sample_data_dir() / "echo_a4c_cine.dcm"  # echocardiogram cine loop (30 frames, 30 fps)


def gradient_frames(n: int = 12, shape=(48, 64)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.stack([((xx * 3 + yy + 17 * t) % 256) for t in range(n)]).astype(np.uint8)


def write_video(path, frames: np.ndarray, fps: int = 12) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "0", "g": "4"}  # keyframe every 4 frames, so random access must seek
        for frame in frames:
            rgb = np.repeat(frame[..., None], 3, axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_arrays_and_their_shapes():
    grey = open_frames(gradient_frames(5))
    assert (grey.n_frames, grey.shape, grey.rgb, grey.kind) == (5, (48, 64), False, "stack")
    colour = open_frames(np.zeros((3, 20, 30, 4), np.uint8))
    assert colour.rgb and colour[2].shape == (20, 30, 3)
    with pytest.raises(FmscopeError, match="4D stack .* without a named time axis"):
        open_frames(np.zeros((3, 4, 20, 30), np.uint16))
    with pytest.raises(FmscopeError, match="Frame 5 is outside"):
        grey[5]


def test_tiff_stack_folder_and_their_errors(tmp_path):
    frames = gradient_frames(6)
    tifffile.imwrite(tmp_path / "stack.tif", frames, metadata={"axes": "TYX"})
    stack = open_frames(tmp_path / "stack.tif")
    assert stack.n_frames == 6 and np.array_equal(stack[4], frames[4])
    tifffile.imwrite(tmp_path / "tz.tif", np.zeros((2, 3, 16, 16), np.uint16), metadata={"axes": "TZYX"})
    with pytest.raises(FmscopeError, match="time and z together"):
        open_frames(tmp_path / "tz.tif")
    tifffile.imwrite(tmp_path / "q.tif", np.zeros((2, 3, 16, 16), np.uint16))
    with pytest.raises(FmscopeError, match="without a named time axis"):
        open_frames(tmp_path / "q.tif")
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in (10, 2, 1):  # natural order: 1, 2, 10
        Image.fromarray(frames[t % 6]).save(folder / f"frame{t}.png")
    pictures = open_frames(folder)
    assert pictures.n_frames == 3 and np.array_equal(pictures[2], frames[10 % 6])


def test_video_is_decoded_lazily_with_random_access(tmp_path):
    frames = gradient_frames(12)
    write_video(tmp_path / "clip.mp4", frames)
    video = open_frames(tmp_path / "clip.mp4")
    assert isinstance(video, VideoFrames) and video.n_frames == 12 and video.fps == pytest.approx(12)
    assert video.rgb and video.shape == (48, 64)
    sequential = [video[i].copy() for i in range(12)]
    for i in (9, 2, 7, 0, 11):  # jumps backwards and forwards seek and decode the same pictures
        assert np.array_equal(video[i], sequential[i])
    assert np.abs(sequential[5][..., 0].astype(int) - frames[5]).mean() < 3  # lossless-ish encoding
    assert len(video._cache) <= video._cache_frames  # never the whole video in memory


def test_bad_videos_are_refused(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(FmscopeError, match="Cannot read .*empty.mp4 as a video"):
        open_frames(tmp_path / "empty.mp4")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    with pytest.raises(FmscopeError, match="as a video"):
        open_frames(tmp_path / "noise.mp4")


def test_cine_dicom_frame_at_a_time():
    echo = open_frames(ECHO)
    assert (echo.n_frames, echo.shape, echo.rgb, echo.kind) == (30, (240, 320), True, "video")
    assert echo.fps == pytest.approx(30, rel=1e-3)
    assert echo[29].dtype == np.uint8 and echo[29].shape == (240, 320, 3) and echo[29].std() > 10


def test_volume_keeps_geometry():
    path = sample_data_dir() / "ct_lung_volume.nrrd"
    frames = open_frames(path)
    volume = read_volume(path)
    assert frames.kind == "volume" and frames.n_frames == volume.array.shape[0]
    assert frames.volume.spacing == volume.spacing and frames.spacing == (volume.spacing[1], volume.spacing[0])
    assert np.array_equal(frames[3], volume.array[3])


def test_a_colour_picture_and_a_picture_renamed_mp4_are_not_frames(tmp_path):
    tifffile.imwrite(tmp_path / "picture.tif", np.zeros((96, 96, 3), np.uint8), photometric="rgb")
    with pytest.raises(FmscopeError, match=r"single 2D image \(96, 96, 3\) \(axes YXS\)"):
        open_frames(tmp_path / "picture.tif")
    stack = np.arange(3 * 32 * 32, dtype=np.uint16).reshape(3, 32, 32)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    assert open_frames(tmp_path / "stack.tif").n_frames == 3  # written without axes: still 3 frames
    (tmp_path / "stack.mp4").write_bytes((tmp_path / "stack.tif").read_bytes())
    with pytest.raises(FmscopeError, match="is not a video: it holds a TIFF image"):
        open_frames(tmp_path / "stack.mp4")


def test_a_video_damaged_mid_stream_names_each_bad_frame_never_blank(tmp_path):
    """Bytes zeroed in the middle of the mp4's data: the frames they held raise an error naming the
    frame and the file; the frames before and after the damage (from the next keyframe) decode."""
    frames = np.random.default_rng(0).integers(0, 256, (24, 48, 64), dtype=np.uint8)
    path = tmp_path / "damaged.mp4"
    write_video(path, frames)
    data = bytearray(path.read_bytes())
    start, end = data.index(b"mdat") + 4, data.index(b"moov")  # the frames' data, then the index
    middle = start + (end - start) * 2 // 5
    data[middle : middle + (end - start) // 5] = bytes((end - start) // 5)
    path.write_bytes(bytes(data))
    video = open_frames(path)
    assert video.n_frames == 24
    bad = []
    for index in range(video.n_frames):
        try:
            frame = video[index]
        except FmscopeError as error:
            assert f"{path}" in str(error) and f"frame {index}" in str(error)
            bad.append(index)
            continue
        grey = frame.astype(int).mean(axis=-1)
        assert np.abs(grey - frames[index]).mean() < 10, index  # the right picture, never a blank one
    assert bad and bad[0] > 0 and bad[-1] < 23, bad
    assert bad == list(range(bad[0], bad[-1] + 1))  # only the damaged stretch
    video = open_frames(path)
    assert np.abs(video[23].astype(int).mean(axis=-1) - frames[23]).mean() < 10  # a jump past the damage


@pytest.mark.parametrize("written", ["stack", "page by page"])
def test_cmyk_palette_and_white_is_zero_time_lapses_read_as_their_pictures(tmp_path, written):
    """A time-lapse stored as CMYK, palette or MINISWHITE TIFF (the kinds the picture reader converts) gives each
    frame as `fmscope segment` reads that frame alone (as viewers show it), with the note; not raw ink / index /
    inverted values."""
    from fmscope.imaging import io

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (3, 20, 24), dtype=np.uint8)
    colormap = (np.stack([np.arange(256) * 257, np.arange(256)[::-1] * 257, np.full(256, 40 * 257)])).astype(np.uint16)
    cmyk = rng.integers(0, 256, (3, 20, 24, 4), dtype=np.uint8)
    kinds = {
        "palette.tif": (grey, {"photometric": "palette", "colormap": colormap}, "palette"),
        "white.tif": (grey, {"photometric": "miniswhite"}, "MINISWHITE"),
        "cmyk.tif": (cmyk, {"photometric": "separated"}, "CMYK"),
    }
    for name, (stack, options, what) in kinds.items():
        path = tmp_path / name
        if written == "stack":
            tifffile.imwrite(path, stack, metadata={"axes": "TYXS" if stack.ndim == 4 else "TYX"}, **options)
        else:
            for frame in stack:
                tifffile.imwrite(path, frame, append=True, metadata=None, **options)
        frames = open_frames(path)
        assert len(frames) == 3 and any(what in note for note in frames.notes), (name, frames.notes)
        for index, frame in enumerate(stack):
            tifffile.imwrite(tmp_path / "alone.tif", frame, **options)
            assert np.array_equal(frames[index], io.load_image(tmp_path / "alone.tif").array), (name, index)
        assert not np.array_equal(frames[1], stack[1])  # not the stored ink / index / inverted values
