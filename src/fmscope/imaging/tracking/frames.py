"""Frame sources: one interface over arrays, TIFF stacks, image folders, videos, cine DICOM and volumes.

A :class:`FrameSource` hands out one frame at a time as a numpy array, (H, W) for grey or
(H, W, 3) for colour, in the file's own dtype (uint8 video, uint16 microscopy, HU for CT).
Videos and multi-frame DICOM are decoded lazily, so a long video is never held in memory;
volumes use z as the frame axis and keep their geometry (``volume``) for writing labels back.
This module is the one reader of the frames family (docs/formats.md, "Frames"): videos are turned
as players show them (display matrix), TIFF stacks are read by their axes (series written page by
page, ImageJ hyperstacks, OME axes in any order; a channel axis is chosen or refused, never taken
for time). What the reader decided is listed in ``FrameSource.notes`` for the front ends to show.
Frames too large to read whole (a lazy dask / zarr stack, a tiled TIFF stack of huge pages) are
:class:`LazyStackFrames`, tracked inside a fixed window (:class:`WindowFrames`) that reads only its chunks.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile

from fmscope.atomic import file_suffix
from fmscope.errors import FmscopeError
from fmscope.imaging import complete_files, dicom_objects, dicom_series, picture_geometry, tiff_colour
from fmscope.imaging.dicom_codecs import decode_all_frames
from fmscope.imaging.dicom_pixels import check_pixel_data
from fmscope.imaging.io import (
    TIFF_SUFFIXES,
    VOLUME_SUFFIXES,
    Geometry,
    Volume,
    file_dimension,
    is_dicom,
    picture_animation,
    read_image,
    read_medical_image,
    read_volume,
    refuse_several_series,
    volume_of_stack,
)
from fmscope.imaging.lazy_image import EAGER_MAX_PIXELS
from fmscope.imaging.tiff_axes import appended_pages, arrange_axes, series_axes

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class FrameSource:
    """Frames of one sequence. Subclasses set the attributes and implement :meth:`_read`.

    Attributes: ``n_frames``; ``height``, ``width`` (pixels); ``rgb`` (frames are (H, W, 3));
    ``dtype``; ``fps`` (frames per second, None when unknown); ``spacing`` ((y, x) pixel size,
    None when unknown); ``kind`` (``"video"``, ``"volume"`` or ``"stack"``); ``volume`` (the
    :class:`Volume` a volume source came from, else None); ``geometry`` (a 4D image of one slice's own geometry,
    its four axes x, y, z = 1, t as SimpleITK gives them, with a NIfTI's raw header: where the slice lies in
    patient space, which time-lapse labels keep; None for other sources); ``name`` (for messages).
    """

    n_frames: int
    height: int
    width: int
    rgb: bool
    dtype: np.dtype
    fps: float | None = None
    spacing: tuple[float, float] | None = None
    kind: str = "stack"
    volume: Volume | None = None
    geometry: Geometry | None = None
    name: str = "frames"
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if not 0 <= index < self.n_frames:
            raise FmscopeError(
                f"Frame {index} is outside {self.name}'s frames 0..{self.n_frames - 1}.",
                f"Give a frame between 0 and {self.n_frames - 1}.",
            )
        return self._read(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(self.n_frames):
            yield self._read(index)

    def _read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return self.height, self.width

    def _set_geometry(self, first: np.ndarray) -> None:
        self.height, self.width = int(first.shape[0]), int(first.shape[1])
        self.rgb = first.ndim == 3
        self.dtype = first.dtype
        if self.height < 2 or self.width < 2:
            raise FmscopeError(
                f"{self.name} has frames of {self.width}x{self.height} pixels.", "Give frames of at least 2x2 pixels."
            )

    def _of_first_size(self, frame: np.ndarray, what: str) -> np.ndarray:
        """``frame`` when it has the first frame's height and width, else a refusal naming ``what`` (its file, or
        its index in the file)."""
        if frame.shape[:2] != self.shape:
            raise FmscopeError(
                f"{what} is {frame.shape[1]}x{frame.shape[0]}, the first frame {self.width}x{self.height}.",
                "Give frames of one size.",
            )
        return frame


def _as_frame(array: np.ndarray, name: str) -> np.ndarray:
    """A (H, W) or (H, W, 3) frame: alpha dropped, single-channel squeezed."""
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return array[..., :3]
    if array.ndim == 3 and array.shape[-1] == 1:
        return array[..., 0]
    if array.ndim != 2:
        raise FmscopeError(
            f"{name}: a frame has shape {array.shape}; frames must be (H, W) or (H, W, 3).",
            "Select one channel or z plane per frame first.",
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise FmscopeError(f"{name} contains NaN or infinite values.", "Replace them (np.nan_to_num) first.")
    return array


class ArrayFrames(FrameSource):
    """Frames of an in-memory array (T, H, W) or (T, H, W, 3|4); ``kind`` says what the axis 0 is."""

    def __init__(
        self,
        array: np.ndarray,
        *,
        kind: str = "stack",
        fps: float | None = None,
        spacing: tuple[float, float] | None = None,
        volume: Volume | None = None,
        name: str = "the array",
    ) -> None:
        array = np.asarray(array)
        self.name = name
        if array.ndim == 4 and array.shape[-1] not in (1, 3, 4):
            raise FmscopeError(
                f"{name} is a 4D stack {array.shape} without a named time axis.",
                "Give a (T, H, W) or (T, H, W, 3) sequence; select one z plane or channel, "
                "or name the axes (TIFF 'axes' metadata such as TYX / TYXS).",
            )
        if array.ndim not in (3, 4) or array.shape[0] < 1 or array.size == 0:
            raise FmscopeError(
                f"{name} has shape {array.shape}; a frame sequence is (T, H, W) or (T, H, W, 3).",
                "For a single 2D image use 'fmscope segment'.",
            )
        self.array = array
        self.n_frames = int(array.shape[0])
        self.kind, self.fps, self.spacing, self.volume = kind, fps, spacing, volume
        self._set_geometry(_as_frame(array[0], name))

    def _read(self, index: int) -> np.ndarray:
        return _as_frame(self.array[index], self.name)


# A window tracked in huge frames (LazyStackFrames.window_around): this many times the prompt's long side, at least
# MIN_WINDOW pixels a side, so an object may move 3.5 times its size (and at least 512 px less half its size) from
# where it was prompted before it reaches the window's edge. Not tuned on data: a larger window costs its pixels on
# every frame (the tracker's global motion, template search and labels run on the whole window).
WINDOW_FACTOR = 8
MIN_WINDOW = 1024


class LazyStackFrames(FrameSource):
    """Frames too large to read whole (more than ``EAGER_MAX_PIXELS`` each): a lazy (T, H, W) or (T, H, W, 3) array
    (a dask or zarr array, napari's layer data, tifffile's zarr store of a tiled multi-page TIFF) read region by
    region. Reading a whole frame (``frames[i]``) is refused; objects are tracked inside a window of the frames
    (:meth:`window`, :meth:`window_around`), which reads only the chunks that window touches on each frame."""

    def __init__(self, array, *, kind: str = "stack", name: str = "the array", closer=None) -> None:
        shape = tuple(int(size) for size in array.shape)
        self.name, self.kind, self.array, self._closer = name, kind, array, closer
        if len(shape) == 4 and shape[-1] not in (1, 3, 4) or len(shape) not in (3, 4) or shape[0] < 1:
            raise FmscopeError(
                f"{name} has shape {shape}; a frame sequence is (T, H, W) or (T, H, W, 3).",
                "Select one z plane or channel per frame first.",
            )
        self.n_frames, self.height, self.width = shape[:3]
        self.rgb, self.dtype = len(shape) == 4 and shape[-1] != 1, np.dtype(array.dtype)

    def region(self, index: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """Rows y0..y1-1, columns x0..x1-1 of frame ``index`` (clipped to the frame): (h, w) or (h, w, 3), a new
        array; only the chunks the rectangle touches are read."""
        y0, y1, x0, x1 = max(0, y0), min(self.height, y1), max(0, x0), min(self.width, x1)
        return _as_frame(np.array(self.array[int(index), y0:y1, x0:x1]), self.name)

    def too_large(self) -> FmscopeError:
        """The error for any use of a whole frame (reading one, tracking all of them)."""
        return FmscopeError(
            f"{self.name} has frames of {self.width} x {self.height} pixels: fmscope does not read a frame of more "
            f"than {EAGER_MAX_PIXELS} pixels whole.",
            "Track inside a window of the frames around the objects (frames.window_around(box) in Python; the napari "
            "Track panel does it from the first box), or crop the frames first.",
        )

    def _read(self, index: int) -> np.ndarray:
        raise self.too_large()

    def window(self, y0: int, x0: int, y1: int, x1: int) -> WindowFrames:
        """The frames' rectangle rows y0..y1-1, columns x0..x1-1 (clipped to the frames) as frames of their own."""
        return WindowFrames(self, (max(0, y0), max(0, x0), min(self.height, y1), min(self.width, x1)))

    def window_around(self, boxes) -> WindowFrames:
        """The window tracked for prompt ``boxes`` (one [x0, y0, x1, y1] or (n, 4), frame pixels): a square centred on
        the boxes' union, ``WINDOW_FACTOR`` x the longest box side (at least ``MIN_WINDOW``), grown to hold the union
        with that margin, moved inside the frames at their borders. It stays fixed while tracking: an object that
        leaves it ends as one leaving the field of view does."""
        boxes = np.atleast_2d(np.asarray(boxes, float))
        x0, y0 = boxes[:, :2].min(axis=0)
        x1, y1 = boxes[:, 2:].max(axis=0)
        longest = max(1.0, float((boxes[:, 2:] - boxes[:, :2]).max()))
        union = max(x1 - x0, y1 - y0)
        side = max(MIN_WINDOW, int(np.ceil(max(WINDOW_FACTOR * longest, union + (WINDOW_FACTOR - 1) * longest))))
        top = int(np.clip(round((y0 + y1) / 2 - side / 2), 0, max(0, self.height - side)))
        left = int(np.clip(round((x0 + x1) / 2 - side / 2), 0, max(0, self.width - side)))
        return self.window(top, left, top + side, left + side)

    def close(self) -> None:
        """Close the file the frames are read from (a TIFF), if any."""
        if self._closer is not None:
            self._closer()


class WindowFrames(FrameSource):
    """A fixed rectangle of a :class:`LazyStackFrames`' frames, as frames of their own (each read on demand: only
    the chunks the rectangle touches). ``origin``: (y, x) of the window's first pixel in the full frames, to place
    masks and labels found here; prompts and results are in window pixels."""

    def __init__(self, parent: LazyStackFrames, rectangle: tuple[int, int, int, int]) -> None:
        self.parent, self.rectangle = parent, rectangle
        y0, x0, y1, x1 = rectangle
        self.origin = (y0, x0)
        self.n_frames, self.kind, self.fps, self.spacing = parent.n_frames, parent.kind, parent.fps, parent.spacing
        self.name = f"{parent.name} (window rows {y0}..{y1 - 1}, columns {x0}..{x1 - 1})"
        self.height, self.width, self.rgb, self.dtype = y1 - y0, x1 - x0, parent.rgb, parent.dtype
        if self.height < 2 or self.width < 2:
            raise FmscopeError(f"{self.name} is empty.", "Give a window inside the frames.")

    def _read(self, index: int) -> np.ndarray:
        return self.parent.region(index, *self.rectangle)


def is_lazy_array(source) -> bool:
    """Whether ``source`` is an array held elsewhere (dask, zarr, ...): shape, dtype and slicing, not a numpy array."""
    return not isinstance(source, np.ndarray) and all(
        hasattr(source, name) for name in ("shape", "dtype", "__getitem__")
    )


def frames_of_array(array, kind: str = "stack", name: str = "the array") -> FrameSource:
    """Frames of a (T, H, W[, 3]) array: a :class:`LazyStackFrames` when it is lazy (:func:`is_lazy_array`) and its
    frames have more than ``EAGER_MAX_PIXELS`` pixels, else :class:`ArrayFrames` (read into memory)."""
    shape = tuple(int(size) for size in array.shape)
    if is_lazy_array(array) and len(shape) >= 3 and shape[1] * shape[2] > EAGER_MAX_PIXELS:
        return LazyStackFrames(array, kind=kind, name=name)
    return ArrayFrames(np.asarray(array), kind=kind, name=name)


class TiffSeriesFrames(FrameSource):
    """A time-lapse written one page at a time (``tifffile.imwrite(..., append=True)``, live-acquisition
    scripts): every TIFF series is one (H, W) or (H, W, 3) frame, read when asked for."""

    def __init__(self, path: Path, tif: tifffile.TiffFile) -> None:
        self.name, self._tif, self.kind = str(path), tif, "stack"
        self.n_frames, self.path = len(tif.series), path
        self.notes = (
            f"{path.name}: {self.n_frames} TIFF series of one page each (written page by page) "
            f"read as {self.n_frames} frames",
        )
        first, colour_note = self._pixels(0)
        self.notes += (colour_note,) if colour_note else ()
        self._set_geometry(first)

    def _pixels(self, index: int) -> tuple[np.ndarray, str]:
        """Frame ``index`` in the colours viewers show (CMYK, palette, MINISWHITE converted) and the note saying so."""
        series = self._tif.series[index]
        pixels, note = tiff_colour.as_picture(np.asarray(series.asarray()), series.keyframe, self.path)
        return _as_frame(pixels, self.name), note

    def _read(self, index: int) -> np.ndarray:
        return self._pixels(index)[0]


def tiff_holds_frames(path: str | os.PathLike) -> bool:
    """Whether the TIFF at ``path`` is a stack this reader reads as frames: single pages written one after another,
    or a first series with a stack axis (z, time, pages: any axis but Y, X, samples and channels) longer than 1,
    planar RGB pages of ``tifffile.imwrite`` counted as pages (as :func:`_tiff_frames` reads them). False for one
    2D image (a channel axis alone included: one picture's channels) and for a file tifffile cannot open (the
    picture reader names what is wrong with it)."""
    try:
        with tifffile.TiffFile(path) as tif:
            if appended_pages(tif):
                return True
            series = tif.series[0]
            axes = series_axes(series)
            return any(size > 1 and axis not in "YXSC" for axis, size in zip(axes, series.shape))
    except Exception:  # tifffile raises many types for damaged files
        return False


def _tiff_frames(path: Path, channel: int | None = None) -> FrameSource:
    """A TIFF stack: one series read by its axes (memory-mapped when stored uncompressed), or
    single-page series written one after another (one frame each). A TIFF cut short is refused as truncated; an
    OME / ImageJ TIFF's pixel size becomes the frames' ``spacing`` (mm)."""
    tif = None
    try:
        tif = tifffile.TiffFile(path)
        complete_files.require_whole_ifd_chain(tif, path)  # else the pages before a cut read as the whole stack
        if appended_pages(tif):
            if channel is not None:
                raise FmscopeError(
                    f"--channel {channel} was given, but {path} has no channel axis.", "Leave out --channel."
                )
            if _plane_pixels(tif.series[0].axes.upper(), tif.series[0].shape) > EAGER_MAX_PIXELS:
                return _huge_tiff_frames(path, tif, "T" + tif.series[0].axes.upper(), None, appended=True)
            return TiffSeriesFrames(path, tif)
        refuse_several_series(tif, path, "tracks one")
        series = tif.series[0]
        axes = series_axes(series)
        if _plane_pixels(axes, series.shape) > EAGER_MAX_PIXELS:
            return _huge_tiff_frames(path, tif, axes, channel)
        try:
            array = tifffile.memmap(path, mode="r") if series.dataoffset is not None else series.asarray()
        except (ValueError, tifffile.TiffFileError):
            array = series.asarray()
        if array.shape != tuple(series.shape):  # a memory map of the pages, with the axes of length 1
            array = array.reshape(series.shape)
        array, colour_note = tiff_colour.as_picture(array, series.keyframe, path)  # CMYK, palette, MINISWHITE
        axes += "S" * (array.ndim - len(axes))  # a palette's colours: a samples axis
        calibration = picture_geometry.from_tiff(tif)  # an OME / ImageJ TIFF's pixel size, kept in the labels
        tif.close()
    except FmscopeError:
        raise
    except Exception as error:
        short = complete_files.tiff_cut_short(tif, path) if tif is not None else None
        raise short or FmscopeError(
            f"Cannot read {path} as a TIFF stack ({type(error).__name__}: {str(error)[:200]}).",
            "Give a multi-page TIFF of frames (T, Y, X) or (T, Y, X, S).",
        ) from None
    array, frame_axis = arrange_axes(array, axes, path, channel)
    spacing = None if calibration is None else (calibration[0][1], calibration[0][0])  # (y, x) mm
    frames = ArrayFrames(array, kind="volume" if frame_axis == "Z" else "stack", spacing=spacing, name=str(path))
    frames.notes = (colour_note,) if colour_note else ()
    return frames


def _plane_pixels(axes: str, shape: tuple[int, ...]) -> int:
    """Y x X of a TIFF series of ``axes`` and ``shape``."""
    sizes = dict(zip(axes, shape))
    return sizes.get("Y", 1) * sizes.get("X", 1)


def _huge_tiff_frames(
    path: Path, tif: tifffile.TiffFile, axes: str, channel: int | None, appended: bool = False
) -> LazyStackFrames:
    """A TIFF stack whose frames have more than ``EAGER_MAX_PIXELS`` pixels, read lazily: tifffile's zarr store of the
    first series (full-resolution level; ``appended``: of every single-page series, stacked along ``axes``' leading
    T) as a dask array, arranged by its axes as :func:`arrange_axes` does (lazily). Pages stored in chunks (tiles,
    strips) larger than ``MAX_CHUNK_BYTES`` decoded are refused (every read would decode them whole). The frames keep
    ``tif`` open (``close()``)."""
    import dask.array
    import zarr

    from fmscope.imaging.lazy_image import MAX_CHUNK_BYTES

    try:
        series = tif.series[0]
        page = series.pages[0]
        if tiff_colour.needs_conversion(page):
            raise tiff_colour.refuse(page, path, " in frames too large to read whole")
        chunk_bytes = int(np.prod(page.chunks)) * np.dtype(series.dtype).itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise FmscopeError(
                f"{path} has frames of {page.imagewidth} x {page.imagelength} pixels stored in chunks of "
                f"{'x'.join(map(str, page.chunks))} pixels ({chunk_bytes / 2**20:.0f} MB decoded each): such frames "
                "cannot be read in parts, and are too large to read whole.",
                "Save the stack tiled, e.g. tifffile.imwrite(out, stack, tile=(256, 256), compression='zlib').",
            )
        stores = tif.series if appended else [series]
        arrays = [dask.array.from_zarr(zarr.open(item.aszarr(level=0), mode="r")) for item in stores]
        array = dask.array.stack(arrays) if appended else arrays[0]
        array, frame_axis = arrange_axes(array, axes, path, channel)
        kind = "volume" if frame_axis == "Z" else "stack"
        return LazyStackFrames(array, kind=kind, name=str(path), closer=tif.close)
    except BaseException:
        tif.close()
        raise


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class ImageFolderFrames(FrameSource):
    """A folder of images, one frame per file in natural order (frame2 before frame10)."""

    def __init__(self, folder: Path) -> None:
        self.name = str(folder)
        self.files = sorted(
            (p for p in folder.iterdir() if file_suffix(p) in IMAGE_SUFFIXES and not p.name.startswith(".")),
            key=lambda p: _natural_key(p.name),
        )
        if not self.files:
            raise FmscopeError(
                f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).",
                "Give a folder of PNG / JPEG / TIFF frames, a video file, or a TIFF stack.",
            )
        self.n_frames = len(self.files)
        self._set_geometry(self._read(0))

    def _read(self, index: int) -> np.ndarray:
        frame = _as_frame(read_image(self.files[index]), str(self.files[index]))
        return self._of_first_size(frame, str(self.files[index])) if index else frame


class AnimatedPictureFrames(FrameSource):
    """The frames of an animated GIF, APNG or animated WebP (several frames, as Pillow's ``ImageSequence`` reads
    them: each frame composed over the previous ones as viewers play it), one frame decoded per read.

    Frames are grey (H, W) when the first frame is grey (Pillow mode 1 / L / LA / I;16), else RGB (H, W, 3)
    (palette frames in their colours, alpha dropped); ``fps`` from the first frame's duration (milliseconds).
    The file stays open while the source lives (as a video's container does): Pillow decodes a GIF's frames in
    order, so reading frame k after frame k - 1 decodes one frame, where opening the file again would decode k.
    """

    def __init__(self, path: Path) -> None:
        from PIL import Image

        self.name, self.path, self.kind = str(path), path, "stack"
        self.n_frames, what = picture_animation(path)
        self._picture = Image.open(path)
        self._mode = {"1": "L", "L": "L", "LA": "L", "I;16": "I;16"}.get(self._picture.mode, "RGB")
        self._picture.load()  # WebP sets the first frame's duration when it decodes it
        duration = float(self._picture.info.get("duration") or 0)
        self.fps = 1000.0 / duration if duration > 0 else None
        self.notes = (f"{path.name}: an {what} of {self.n_frames} frames, read as time frames in their order",)
        self._set_geometry(self._read(0))

    def _read(self, index: int) -> np.ndarray:
        try:
            self._picture.seek(index)
            frame = np.asarray(self._picture.convert(self._mode))
        except (OSError, EOFError, ValueError) as error:
            raise FmscopeError(
                f"Cannot read frame {index} of {self.path} ({type(error).__name__}: {str(error)[:200]}).",
                "Save the animation again (or its frames to a folder) and track that.",
            ) from None
        frame = _as_frame(frame, self.name)
        return self._of_first_size(frame, f"Frame {index} of {self.path}") if index else frame


REENCODE = "Re-encode the video (ffmpeg -i in.mp4 out.mp4) or track the frames before the damage."

# Codecs ffmpeg uses to read a still picture as a one-frame "video" (a TIFF or PNG renamed .mp4).
STILL_IMAGE_CODECS = ("tiff", "png", "bmp", "gif", "webp", "jpeg2000", "sgi", "pam", "pgm", "ppm", "targa")


class VideoFrames(FrameSource):
    """A video file decoded lazily with PyAV: sequential reads decode forward, jumps seek to a keyframe.

    Only a few decoded frames are kept (``cache_frames``), so memory does not grow with the video.
    """

    def __init__(self, path: Path, cache_frames: int = 4) -> None:
        import av

        self.name, self.path, self.kind = str(path), path, "video"
        try:
            self._container = av.open(str(path))
            stream = self._container.streams.video[0]
            # Frame timestamps from the packets (no decoding), in presentation order.
            self._pts = sorted(p.pts for p in self._container.demux(stream) if p.pts is not None and p.size)
        except (IndexError, av.error.FFmpegError, OSError, ValueError) as error:
            raise FmscopeError(
                f"Cannot read {path} as a video ({type(error).__name__}: {str(error)[:200]}).",
                "Give an mp4 / avi / mov file that plays, a TIFF stack or a folder of frames.",
            ) from None
        if not self._pts:
            raise FmscopeError(f"{path} holds no video frames.", "Give a video that plays, with at least one frame.")
        if stream.codec_context.name in STILL_IMAGE_CODECS:
            raise FmscopeError(
                f"{path} is not a video: it holds a {stream.codec_context.name.upper()} image.",
                "Give the file its own suffix (.tif, .png, ...): TIFF stacks and folders of frames "
                "are read as time-lapses.",
            )
        self._stream = stream
        self._turns = 0
        self._turns = self._display_turns()
        self.notes = self.notes + self._pixel_aspect_note()
        self.n_frames = len(self._pts)
        self.fps = float(stream.average_rate) if stream.average_rate else None
        self._index_of_pts = {pts: i for i, pts in enumerate(self._pts)}
        self._decoder: Iterator | None = None
        self._next_index = -1
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = cache_frames
        self._set_geometry(self._read(0))

    def _pixel_aspect_note(self) -> tuple[str, ...]:
        """A note when the stream's sample aspect ratio (SAR: a pixel's width over its height, as PyAV / ffmpeg
        give it) is not 1:1 (SD capture video: PAL 16:15 / 64:45, NTSC 8:9 / 32:27), else (). The frames are not
        resampled: boxes, labels, centroids and areas are in stored pixels, which players stretch."""
        sar = self._stream.codec_context.sample_aspect_ratio or self._stream.sample_aspect_ratio
        if not sar or sar.numerator <= 0 or sar.denominator <= 0 or sar == 1:
            return ()
        stretch = float(sar)
        width = self._stream.codec_context.width
        return (
            f"{self.path.name}: its pixels are not square (sample aspect ratio, SAR {sar.numerator}:"
            f"{sar.denominator}): players show each pixel {stretch:.3g}x as wide as tall "
            f"({width} stored pixels wide shown as {round(width * stretch)}); fmscope does not resample the frames: "
            "boxes, labels, centroids and areas (area_px) are in stored pixels",
        )

    def _display_turns(self) -> int:
        """Quarter turns (counter-clockwise, as ``np.rot90``) that show the stored frames as players do,
        from the first frame's display matrix (phones store portrait video as landscape frames plus a
        rotation; PyAV hands out the stored frames). A mirrored matrix or an angle that is not a multiple
        of 90 degrees is refused by name."""
        import av

        try:
            self._container.seek(self._pts[0], stream=self._stream, backward=True, any_frame=False)
            first = next(self._container.decode(self._stream), None)
        except av.error.FFmpegError:
            first = None  # a damaged first frame is reported when it is read
        if first is None:
            return 0
        matrix = next((bytes(item) for item in first.side_data if "DISPLAYMATRIX" in str(item.type)), None)
        if matrix is not None and len(matrix) >= 36:
            a, b, _, c, d = np.frombuffer(matrix[:20], dtype="<i4").astype(np.float64) / 65536.0
            if a * d - b * c < 0:
                raise FmscopeError(
                    f"{self.path}'s display matrix mirrors the picture (rotation "
                    f"{first.rotation} degrees plus a flip); fmscope does not apply flips.",
                    "Re-encode it as players show it (ffmpeg -i in.mp4 out.mp4 applies the display "
                    "matrix), then track that.",
                )
        angle = float(first.rotation or 0)
        turns = angle / 90.0
        if abs(turns - round(turns)) > 1e-3:
            raise FmscopeError(
                f"{self.path} carries a display rotation of {angle:g} degrees, not a multiple of 90.",
                "Re-encode it as players show it (ffmpeg -i in.mp4 out.mp4 applies the rotation), then track that.",
            )
        turns = int(round(turns)) % 4
        if turns:
            self.notes = (
                f"{self.path.name}: stored frames turned {(-angle) % 360:g} degrees clockwise as players "
                f"show them (display matrix rotation {angle:g} degrees); prompts and labels are on the "
                "frames as shown",
            )
        return turns

    def _decode_from(self, index: int) -> None:
        self._container.seek(self._pts[index], stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self._next_index = -1  # unknown until the first decoded frame

    def _read(self, index: int) -> np.ndarray:
        """Frame ``index``; a frame the decoder fails on, drops or flags corrupt raises a
        :class:`FmscopeError` naming it (never a blank frame), and the next read seeks afresh. A
        forward decode that fails on damage before ``index`` is retried from a seek to ``index``."""
        import av

        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        seek = self._decoder is None or not (0 <= self._next_index <= index)
        while True:
            if seek:
                self._decode_from(index)
            try:
                picture, error = self._decode_until(index), None
            except av.error.FFmpegError as failure:
                picture, error = None, failure
            if picture is not None:
                return picture
            self._decoder = None
            if seek:
                break
            seek = True
        if error is not None:
            raise FmscopeError(f"{self.path} is corrupt at frame {index} ({str(error)[:200]}).", REENCODE)
        raise FmscopeError(f"{self.path}: frame {index} could not be decoded (the video is damaged there).", REENCODE)

    def _decode_until(self, index: int) -> np.ndarray | None:
        """Decode forward to frame ``index``: its picture, or None when the decoder skips or damages it."""
        for frame in self._decoder:
            current = self._index_of_pts.get(frame.pts, self._next_index)
            if current < 0:  # a frame without a known timestamp right after a seek: its index is unknown
                return None
            self._next_index = current + 1
            if current < index:
                continue
            if current > index or frame.is_corrupt:
                return None
            picture = frame.to_ndarray(format="rgb24")
            if self._turns:
                picture = np.ascontiguousarray(np.rot90(picture, self._turns))
            self._cache[current] = picture
            while len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)
            return picture
        return None


class DicomFrames(FrameSource):
    """A multi-frame DICOM (cine MR, ultrasound, angiography), read one frame at a time with pydicom; a compressed
    one pydicom has no decoder for (JPEG Lossless, JPEG-LS, JPEG 2000 without plugins) is decoded whole by GDCM
    (:mod:`fmscope.imaging.dicom_codecs`), with a note."""

    def __init__(self, path: Path, dataset) -> None:
        self.name, self.path, self.kind = str(path), path, "video"
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        self._syntax = syntax.name if syntax else "an unknown transfer syntax"
        self._compressed = bool(syntax and syntax.is_compressed)
        self._decoded: np.ndarray | None = None  # every frame, when GDCM decoded them
        self.n_frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
        frame_time = getattr(dataset, "FrameTime", None)  # ms between frames
        rate = getattr(dataset, "CineRate", None) or getattr(dataset, "RecommendedDisplayFrameRate", None)
        self.fps = 1000.0 / float(frame_time) if frame_time else (float(rate) if rate else None)
        spacing = getattr(dataset, "PixelSpacing", None)
        self.spacing = (float(spacing[0]), float(spacing[1])) if spacing else None
        self._set_geometry(self._read(0))

    def _read(self, index: int) -> np.ndarray:
        from pydicom.pixels import pixel_array

        if self._decoded is not None:
            return _as_frame(self._decoded[index], self.name)
        try:
            frame = pixel_array(str(self.path), index=index)
        except Exception as error:  # pydicom / codec errors come in many types
            if not self._compressed:
                raise FmscopeError(
                    f"Cannot decode frame {index} of {self.path} ({type(error).__name__}: {str(error)[:200]}).",
                    "Check the file is a complete DICOM with pixel data.",
                ) from None
            self._decoded = decode_all_frames(self.path, self.n_frames, self._syntax, error)
            self.notes = (*self.notes, f"{self.path.name} ({self._syntax}) decoded by GDCM (SimpleITK), all frames")
            return _as_frame(self._decoded[index], self.name)
        return _as_frame(np.asarray(frame), self.name)


class DicomFolderFrames(FrameSource):
    """A folder of single-frame DICOM images that carry no position or orientation (the Ultrasound, Secondary
    Capture and VL endoscopic image IODs have no Image Plane module: a cine loop exported one file per frame, files
    named by their UID), read as time frames in Instance Number order (:meth:`dicom_series.Stack.instance_order`),
    one file per read with pydicom, with a note saying so. ``stack``: the folder's series from
    :func:`fmscope.imaging.dicom_series.list_stacks`."""

    def __init__(self, folder: Path, stack: dicom_series.Stack) -> None:
        self.name, self.kind = str(folder), "video"
        self.files, how = stack.instance_order()
        self.n_frames = len(self.files)
        pixel = stack.pixel_mm or ()
        self.spacing = (pixel[0], pixel[1]) if len(pixel) == 2 else None
        self.notes = (
            *stack.notes,
            f"{folder.name}: {self.n_frames} single-frame {stack.modality or 'DICOM'} images without slice "
            f"positions (series {stack.series_number or '?'}), read as time frames in {how}",
        )
        self._set_geometry(self._read(0))

    def _read(self, index: int) -> np.ndarray:
        from pydicom.pixels import pixel_array

        try:
            frame = np.asarray(pixel_array(self.files[index]))
        except Exception as error:  # pydicom / codec errors come in many types
            raise FmscopeError(
                f"Cannot decode {self.files[index]} (frame {index} of {self.name}) "
                f"({type(error).__name__}: {str(error)[:200]}).",
                "Check the file is a complete DICOM image with pixel data; remove it to track the others.",
            ) from None
        return _as_frame(frame, self.files[index])  # one size: a stack's files share rows and columns


def _dicom_dataset(path: Path):
    """The pydicom dataset (header only) when ``path`` is a DICOM file, else None; a DICOM file whose
    header or pixel data is cut short is refused as truncated (never taken for a single frame)."""
    try:
        dataset = check_pixel_data(path)  # one header read: the dataset, its pixel data checked
        kind = dicom_objects.kind_of(str(getattr(dataset, "SOPClassUID", "") or ""))
        if kind is not None:  # a SEG's frames are segments x slices, not time points
            raise dicom_objects.refusal(path, kind)
        return dataset
    except FmscopeError:
        raise
    except Exception as error:  # not DICOM, or a DICOM cut short inside an element
        if is_dicom(path):
            raise FmscopeError(
                f"{path} is a truncated or damaged DICOM file ({type(error).__name__}: {str(error)[:200]}).",
                "Copy or export the file again from its source.",
            ) from None
        return None


def is_cine_dicom(path: str | os.PathLike) -> bool:
    """True for a DICOM file whose header says NumberOfFrames > 1, and for a damaged DICOM (so that
    :func:`open_frames` names its damage); False for anything else."""
    try:
        dataset = _dicom_dataset(Path(path))
    except FmscopeError:
        return True
    return dataset is not None and int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1


def open_frames(
    source: str | os.PathLike | np.ndarray | FrameSource, *, kind: str = "stack", channel: int | None = None
) -> FrameSource:
    """A :class:`FrameSource` for an array, a file or a folder.

    Arrays: (T, H, W) or (T, H, W, 3), axis 0 is time (``kind="stack"``/``"video"``) or z
    (``kind="volume"``); a lazy array (dask, zarr) or a TIFF stack whose frames have more than ``EAGER_MAX_PIXELS``
    pixels gives :class:`LazyStackFrames` (tracked inside a window, never read whole). Files: mp4 / avi / mov (PyAV,
    turned as its display matrix says), multi-frame DICOM (pydicom), animated GIF / APNG / WebP (Pillow),
    TIFF stacks (by their axes; ``channel``: the channel of a TIFF with a C axis, which is refused without it),
    NIfTI / NRRD / MHA volumes and DICOM series folders (z = frame axis, geometry kept), and folders of
    PNG / JPEG / TIFF frames. Raises
    :class:`FmscopeError` for anything else.
    """
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, np.ndarray):
        return ArrayFrames(source, kind=kind)
    if is_lazy_array(source):
        return frames_of_array(source, kind=kind)
    path = Path(source).expanduser()
    if channel is not None and (not path.is_file() or file_suffix(path) not in TIFF_SUFFIXES):
        raise FmscopeError(
            f"--channel {channel} was given for {path}, but only TIFF stacks have a channel axis to choose from.",
            "Leave out --channel.",
        )
    if not path.exists():
        raise FmscopeError(f"No such file or folder: {path}", "Check the path.")
    suffix = file_suffix(path)
    if path.is_dir():
        if any(file_suffix(p) in IMAGE_SUFFIXES for p in path.iterdir()):
            return ImageFolderFrames(path)
        stack = dicom_series.choose(dicom_series.list_stacks(path), None, path)
        if stack.unplaced:  # single-frame US / SC / endoscopy files: 2D frames in time, not slices
            return DicomFolderFrames(path, stack)
        return volume_frames(volume_of_stack(stack, path), name=str(path))
    if suffix in VIDEO_SUFFIXES:
        return VideoFrames(path)
    if suffix in TIFF_SUFFIXES:
        return _tiff_frames(path, channel)
    if suffix in VOLUME_SUFFIXES:
        return _volume_file_frames(path)
    if path.stat().st_size == 0:
        raise FmscopeError(f"{path} is empty.", "Give a video, DICOM, TIFF stack or volume file.")
    dataset = _dicom_dataset(path)
    if dataset is not None:
        if int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1:
            return DicomFrames(path, dataset)
        raise FmscopeError(
            f"{path} is a single-frame DICOM.",
            "Give the folder of its series (a volume) or a multi-frame (cine) DICOM.",
        )
    if picture_animation(path)[0] > 1:
        return AnimatedPictureFrames(path)
    if suffix in IMAGE_SUFFIXES + (".gif", ".webp"):
        raise FmscopeError(
            f"{path} holds a single 2D image, not frames.",
            "Use 'fmscope segment' for one picture; give a video, an animated GIF / PNG, a TIFF stack or a "
            "folder of frames to track.",
        )
    raise FmscopeError(
        f"Cannot tell what {path} holds (extension '{suffix}').",
        "Give a video (mp4 / avi / mov), multi-frame DICOM, TIFF stack, NIfTI / NRRD volume, "
        "a DICOM series folder or a folder of frames.",
    )


def _volume_file_frames(path: Path) -> ArrayFrames:
    """A NIfTI / NRRD / MHA file's frames: a 3D volume's z slices (:func:`volume_frames`), or the time points of
    a 4D image of one slice (x, y, 1, t: cine MR as ACDC / M&Ms store it, 2D+t ultrasound from dcm2niix; the NIfTI
    standard's fourth axis is time), with pixel size and frame rate from the header and the file's own geometry
    (``geometry``: the slice's position and orientation, for the labels). A 4D image of several slices through time
    is refused by name (which slice to follow?)."""
    import SimpleITK as sitk

    if file_dimension(path) != 4:  # 0 when SimpleITK cannot read it (NIfTI-2): the volume reader reads or names it
        return volume_frames(read_volume(path), name=str(path))
    image, nifti = read_medical_image(path)
    columns, rows, slices, times = image.GetSize()
    if slices != 1:
        raise FmscopeError(
            f"{path} is a 4D image of {columns} x {rows} x {slices} x {times} voxels (x, y, z, t): {slices} slices "
            f"through {times} time points, time and z together.",
            "Save the slice to track through time as its own file (x, y, 1, t), or one time point as a 3D volume "
            "to track through z (e.g. 'fslroi in.nii.gz t0.nii.gz 0 1').",
        )
    spacing = image.GetSpacing()
    seconds = float(spacing[3])
    frames = ArrayFrames(
        sitk.GetArrayFromImage(image)[:, 0],  # (t, z = 1, y, x) -> (t, y, x)
        kind="stack",
        fps=1.0 / seconds if 0 < seconds < 60 else None,
        spacing=(float(spacing[1]), float(spacing[0])),
        name=str(path),
    )
    frames.geometry = replace(Geometry.of(image), nifti=nifti)  # the slice's place, kept by the labels
    frames.notes = (
        f"{path.name} is a 4D image of one slice ({columns} x {rows} x 1 x {times}): its fourth axis, time, read "
        f"as {times} frames",
    )
    return frames


def volume_frames(volume: Volume, name: str = "the volume") -> ArrayFrames:
    """Frames of a 3D volume: z is the frame axis; the geometry stays on ``.volume``."""
    if volume.array.ndim != 3:
        raise FmscopeError(f"{name} is not a 3D volume (shape {volume.array.shape}).", "Give a 3D volume.")
    frames = ArrayFrames(
        volume.array, kind="volume", spacing=(volume.spacing[1], volume.spacing[0]), volume=volume, name=name
    )
    frames.notes = volume.notes  # what the volume reader mended (a DICOM series' copies read once ...)
    return frames
