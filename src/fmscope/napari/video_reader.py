"""napari reader for videos (mp4 / avi / mov ...) and cine DICOM as lazy image layers.

The layer's data is a :class:`LazyFrames`: a numpy-like (T, H, W) or (T, H, W, 3) array over the
tracking engine's :class:`~fmscope.imaging.tracking.frames.FrameSource`, which decodes only the
frames napari asks for (the one displayed), never the whole file. The layer metadata says what the
Track panel needs: ``fmscope_source`` (the file path, tracked through its own FrameSource),
``fmscope_axis`` (``"time"``) and ``fmscope_fps``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmscope.atomic import file_suffix
from fmscope.errors import FmscopeError
from fmscope.imaging.tracking.frames import VIDEO_SUFFIXES, FrameSource, is_cine_dicom, open_frames
from fmscope.names import display_name

DICOM_SUFFIXES = (".dcm", ".dicom")


class LazyFrames:
    """A read-only array-like over a FrameSource: shape (T, H, W[, 3]), axis 0 = frames.

    Indexing decodes only the frames selected on axis 0 (``data[k]``, ``data[k, y0:y1]``,
    ``data[a:b]``); ``np.asarray(data)`` decodes everything (avoid it on long videos).
    Reads are serialised with a lock (PyAV decoders are not thread-safe). A frame that cannot be
    decoded raises :class:`FmscopeError` naming it and the file, except where napari shows one
    frame (``data[k]``) with an ``on_error`` handler: there the frame is blank and each such frame
    is reported through ``on_error`` (the reader shows it in napari), so the viewer keeps going and
    never shows a damaged frame unannounced; ``errors`` maps each frame index to its error.
    """

    def __init__(self, source: FrameSource, on_error: Callable[[FmscopeError], None] | None = None) -> None:
        self.source = source
        self.on_error = on_error
        self.errors: dict[int, FmscopeError] = {}
        frame_shape = (source.height, source.width) + ((3,) if source.rgb else ())
        self.shape = (source.n_frames,) + frame_shape
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyFrames({self.source.name!r}, shape={self.shape}, dtype={self.dtype})"

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (H, W[, 3]), decoded on demand; IndexError outside 0..T-1, FmscopeError
        for a frame that cannot be decoded."""
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"frame {index} is outside 0..{self.shape[0] - 1}")
        with self._lock:
            return np.asarray(self.source[index], dtype=self.dtype)

    def shown_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` for display: with ``on_error``, an undecodable frame is reported (once per
        frame) and shown blank; without it, it raises as :meth:`frame`."""
        try:
            return self.frame(index)
        except FmscopeError as error:
            if self.on_error is None:
                raise
            if index not in self.errors:
                self.errors[index] = error
                self.on_error(error)
            return np.zeros(self.shape[1:], self.dtype)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:at] + fill + key[at + 1 :]
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(first, (int, np.integer)):
            index = int(first) + (self.shape[0] if first < 0 else 0)
            return self.shown_frame(index)[rest]
        indices = np.arange(self.shape[0])[first]
        if not indices.size:
            return np.zeros((0,) + self.shape[1:], self.dtype)[(slice(None),) + rest]
        return np.stack([self.frame(int(i))[rest] for i in np.atleast_1d(indices)])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[:]
        return array.astype(dtype, copy=False) if dtype is not None else array


def is_video_path(path: str | Path) -> bool:
    """Whether the video reader takes ``path``: a video file or a multi-frame (cine) DICOM."""
    path = Path(path)
    if not path.is_file():
        return False
    suffix = file_suffix(path)
    return suffix in VIDEO_SUFFIXES or (suffix in DICOM_SUFFIXES and is_cine_dicom(path))


def video_layer_data(path: str | Path, name: str | None = None) -> list[tuple]:
    """[(LazyFrames (T, H, W[, 3]), {name, rgb, contrast_limits[, scale], metadata}, 'image')] for a video or
    cine DICOM; ``scale`` is (1 frame, y mm, x mm) when the frame source knows the pixel size (a cine's
    PixelSpacing), so the layer has the file's aspect. Raises :class:`FmscopeError` when it cannot be read.
    Only frame 0 is decoded here."""
    path = Path(path)
    source = open_frames(path)
    if source.kind != "video":
        raise FmscopeError(f"{path} is not a video or cine DICOM.", "Open it with napari's own readers.")
    data = LazyFrames(source, on_error=_show_error)
    first = data.frame(0)
    if data.dtype == np.uint8:
        limits = (0, 255)
    else:  # e.g. 16-bit cine MR: the first frame's range, without decoding the others
        low, high = float(first.min()), float(first.max())
        limits = (low, high if high > low else low + 1)
    metadata = {"fmscope_source": str(path), "fmscope_axis": "time", "fmscope_fps": source.fps}
    kwargs = {"name": name or display_name(path), "rgb": source.rgb, "contrast_limits": limits, "metadata": metadata}
    if source.spacing is not None:  # a cine's PixelSpacing (y, x) mm, as open_frames reads it for `fmscope track`
        kwargs["scale"] = (1.0, *source.spacing)
    return [(data, kwargs, "image")]


def _show_error(error: FmscopeError) -> None:
    from napari.utils.notifications import show_error

    show_error(str(error))


def get_video_reader(path: str | list[str]) -> Callable[[str], list[tuple]] | None:
    """npe2 reader hook: a reader for videos and cine DICOM, else None (other readers are tried)."""
    if isinstance(path, list) or not is_video_path(path):
        return None

    def read(target: str) -> list[tuple]:
        try:
            return video_layer_data(target)
        except FmscopeError as error:
            _show_error(error)
            return [(None,)]  # napari's "read, nothing to show": no other reader, no traceback

    return read
