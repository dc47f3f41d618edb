"""A volume read slice range by slice range: the engine never holds it whole.

:class:`VolumeRanges` is a :class:`~fmscope.imaging.tracking.frames.FrameSource` (``kind="volume"``) over a
``read(first, last)`` callable that returns slices ``first..last`` (inclusive) of a volume another program holds (3D
Slicer's vtkImageData, a memory map): it reads aligned ranges of at most ``max_bytes`` (at least one slice) and keeps
only the range last read, so :func:`fmscope.imaging.volume.segment_volume` on it holds one range of voxels at a time
(plus each slice's model input), whatever the volume's size. The tracker reads slices in order, so each range is
read once per propagation direction; every range read is listed in :attr:`VolumeRanges.ranges_read`.

The automatic intensity window (:meth:`VolumeRanges.intensity`) is the one :func:`fmscope.imaging.intensity.
auto_intensity` gives for the whole array, computed exactly from the ranges in three passes (count / min / max, a
histogram, the values in the histogram bins that hold the wanted order statistics), so a volume processed range by
range gets the same masks as the whole array, voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.imaging.intensity import Intensity, resolve_intensity
from fmscope.imaging.tracking.frames import FrameSource
from fmscope.progress import Progress, as_progress

PERCENTILES = (0.5, 99.5)  # auto_intensity's
HISTOGRAM_BINS = 65536  # integer volumes spanning at most this many values need no third pass


def require_slices(shape: tuple[int, ...]) -> None:
    """Raise FmscopeError unless a (z, y, x) volume of ``shape`` has slices to segment: at least one slice, each at
    least 2 x 2 pixels. A volume one voxel thick along y or x (a coronal or sagittal slice saved as a volume,
    (512, 1, 512) / (512, 512, 1)) is named as such: one 2D image, which ``fmscope segment`` reads."""
    depth, height, width = shape
    if depth < 1 or height < 1 or width < 1:
        raise FmscopeError(f"The volume is empty (shape {tuple(shape)}).", "Pass a non-empty volume.")
    if min(height, width) < 2:
        axis = "y" if height < 2 else "x"
        raise FmscopeError(
            f"The volume (shape {tuple(shape)}, z, y, x) is one voxel thick along {axis}: its z slices are "
            f"{height} x {width} pixel lines, nothing to segment slice by slice. It is one 2D image of "
            f"{depth} x {width if axis == 'y' else height} pixels (a slice cut along another axis than z, e.g. "
            "with nibabel's img.slicer or fslroi, saved as a volume).",
            "Segment it as one 2D image: 'fmscope segment FILE --box ...' reads a file one voxel thick along any "
            "axis as a picture and writes the mask in the file's shape and placement.",
        )


class VolumeRanges(FrameSource):
    """The (H, W) slices of a (depth, H, W) volume, read ``max_bytes`` at most at a time (see module docstring).

    ``read(first, last)``: a (last - first + 1, H, W) array of slices first..last (inclusive, 0-based), a copy
    the caller may keep; ``shape``: (depth, H, W); ``dtype``: the voxels'. Raises :class:`FmscopeError` for an
    empty volume or colour slices."""

    def __init__(
        self,
        read: Callable[[int, int], np.ndarray],
        shape: tuple[int, int, int],
        dtype: np.dtype,
        max_bytes: int,
        name: str = "the volume",
    ) -> None:
        depth, height, width = (int(v) for v in shape)
        require_slices((depth, height, width))
        self._reader, self.name, self.kind = read, name, "volume"
        self.n_frames, self.height, self.width = depth, height, width
        self.rgb, self.dtype = False, np.dtype(dtype)
        self.range_slices = max(1, int(max_bytes) // (height * width * self.dtype.itemsize))
        self.ranges_read: list[tuple[int, int]] = []  # (first, last) of every range read, in order
        self._range: tuple[int, np.ndarray] | None = None  # (first slice, its range's voxels)

    @property
    def range_bytes(self) -> int:
        """Bytes of the largest range this source reads."""
        return self.range_slices * self.height * self.width * self.dtype.itemsize

    def ranges(self) -> Iterator[tuple[int, int]]:
        """(first, last) of the aligned ranges covering the volume, in order."""
        for first in range(0, self.n_frames, self.range_slices):
            yield first, min(first + self.range_slices, self.n_frames) - 1

    def read_range(self, first: int, last: int) -> np.ndarray:
        """Slices first..last (one of :meth:`ranges`), kept as the current range."""
        self._range = None  # the previous range is released before the next is read
        block = np.asarray(self._reader(first, last))
        if block.shape != (last - first + 1, self.height, self.width):
            raise FmscopeError(
                f"Reading slices {first}..{last} of {self.name} gave shape {block.shape}.",
                "The volume changed while it was read: run again.",
            )
        self.ranges_read.append((first, last))
        self._range = (first, block)
        return block

    def _read(self, index: int) -> np.ndarray:
        if self._range is None or not 0 <= index - self._range[0] < len(self._range[1]):
            first = index - index % self.range_slices
            self.read_range(first, min(first + self.range_slices, self.n_frames) - 1)
        first, block = self._range
        frame = block[index - first]
        if frame.dtype.kind == "f" and not np.all(np.isfinite(frame)):  # as ArrayFrames refuses it
            raise FmscopeError(f"{self.name} contains NaN or infinite values.", "Replace them (np.nan_to_num) first.")
        return frame

    def intensity(
        self, window: str | tuple[float, float] | Intensity | None, progress: Progress | None = None
    ) -> Intensity:
        """The intensity mapping for ``window`` (preset, (level, width), Intensity) or, for None, exactly what
        :func:`fmscope.imaging.intensity.auto_intensity` gives for the whole volume (module docstring), ``progress``
        told ``(ranges read, ranges to read, "reading the volume")`` (it raises Cancelled once its job is
        cancelled: nothing is kept)."""
        if window is not None:
            return resolve_intensity(np.zeros(1, self.dtype), window)
        if self.dtype in (np.uint8, np.bool_):
            return resolve_intensity(np.zeros(1, self.dtype), None)
        low, high = _percentiles(self, PERCENTILES, as_progress(progress))
        return Intensity(low, high, "percentile 0.5-99.5")


def _finite(block: np.ndarray) -> np.ndarray:
    return block[np.isfinite(block)] if block.dtype.kind == "f" else block.ravel()


def _percentiles(volume: VolumeRanges, percentiles: tuple[float, float], progress: Progress) -> tuple[float, float]:
    """``np.percentile`` (linear) of the volume's finite voxels at ``percentiles``, from its ranges; falls back to
    (min, max) when the high one is not above the low one, as ``auto_intensity`` does."""
    ranges = list(volume.ranges())
    passes = 2 if volume.dtype.kind in "iu" else 3  # an integer volume of a wide range takes 3: told as it goes
    done = 0

    def read(first: int, last: int) -> np.ndarray:
        nonlocal done
        values = _finite(volume.read_range(first, last))
        done += 1
        progress.update(done, max(done, passes * len(ranges)), "reading the volume")
        return values

    count, least, most = 0, None, None
    for first, last in ranges:  # pass 1: how many finite values, their range
        values = read(first, last)
        if values.size:
            count += values.size
            least = values.min() if least is None else min(least, values.min())
            most = values.max() if most is None else max(most, values.max())
    if count == 0:
        raise FmscopeError(
            "The volume holds no finite values (all NaN or infinite).", "Check that the right volume was loaded."
        )
    integer = volume.dtype.kind in "iu" and int(most) - int(least) < HISTOGRAM_BINS
    bins = int(most) - int(least) + 1 if integer else HISTOGRAM_BINS
    span = float(most) - float(least)

    def bin_of(values: np.ndarray) -> np.ndarray:
        if integer:
            return (values.astype(np.int64) - int(least)).astype(np.intp)
        if span == 0:
            return np.zeros(values.shape, np.intp)
        scaled = (values.astype(np.float64) - float(least)) * (bins / span)
        return np.clip(scaled.astype(np.intp), 0, bins - 1)

    histogram = np.zeros(bins, np.int64)
    for first, last in ranges:  # pass 2: the histogram
        histogram += np.bincount(bin_of(read(first, last)), minlength=bins)
    ends = np.cumsum(histogram)  # ends[b]: values in bins 0..b
    plan = []  # per percentile: (previous rank, next rank, gamma), numpy's linear method
    for percentile in percentiles:
        q = np.true_divide(percentile, 100)
        virtual = (count - 1) * q  # numpy's virtual index for "linear"
        previous = count - 1 if virtual >= count - 1 else int(np.floor(virtual))
        plan.append((previous, min(previous + 1, count - 1), virtual - np.floor(virtual)))
    ranks = sorted({rank for previous, following, _ in plan for rank in (previous, following)})
    wanted = {rank: int(np.searchsorted(ends, rank, side="right")) for rank in ranks}  # rank -> its bin
    if integer:
        value = {rank: volume.dtype.type(int(least) + b) for rank, b in wanted.items()}
    else:  # pass 3: the distinct values (and counts) in the bins that hold the ranks
        held: dict[int, dict] = {b: {} for b in set(wanted.values())}
        for first, last in ranges:
            values = read(first, last)
            where = bin_of(values)
            for b, counts in held.items():
                distinct, times = np.unique(values[where == b], return_counts=True)
                for v, t in zip(distinct.tolist(), times.tolist()):
                    counts[v] = counts.get(v, 0) + t
        value = {}
        for rank, b in wanted.items():
            before = int(ends[b - 1]) if b else 0
            ordered = sorted(held[b].items())
            within = np.cumsum([t for _, t in ordered])
            value[rank] = volume.dtype.type(ordered[int(np.searchsorted(within, rank - before, side="right"))][0])
    volume._range = None
    results = []
    for previous, following, gamma in plan:  # numpy's _lerp, in the array's dtype then float64
        a, b = np.asarray(value[previous]), np.asarray(value[following])
        difference, gamma = np.subtract(b, a), np.asarray(gamma, np.float64)
        result = a + difference * gamma
        if gamma >= 0.5:
            result = b - difference * (1 - gamma)
        results.append(float(result))
    low, high = results
    if high <= low:
        low, high = float(least), float(most)
    return low, high
