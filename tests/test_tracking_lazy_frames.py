"""Tracking in huge lazy frames (issue 27): a (T, 20000, 20000) zarr stack holding the real HeLa frames is tracked in
a window around the prompted nucleus; the masks equal those on the eagerly cropped stack, and the store is only
asked for the chunks of that window (counted by a wrapper around the store, the engine untouched)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from counting_store import CountingStore
from zarr.storage import MemoryStore

from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.imaging.tracking.frames import ArrayFrames, LazyStackFrames, WindowFrames
from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker
from fmscope.samples import sample_data_dir

FRAMES, SIDE, CHUNK = 3, 20_000, 512
OFFSET = (10_100, 7_300)  # (y, x) of the 512 x 512 HeLa frames in the huge ones (not on the chunk grid)


@pytest.fixture(scope="module")
def hela():
    folder = sample_data_dir() / "hela_timelapse"
    return tifffile.imread(folder / "images.tif")[:FRAMES], tifffile.imread(folder / "tracks.tif")[:FRAMES]


def central_box(tracks: np.ndarray) -> np.ndarray:
    """[x0, y0, x1, y1] of the truth's nucleus nearest the frame's centre on frame 0 (frame pixels)."""
    ids = [i for i in np.unique(tracks[0]) if i and (tracks[0] == i).sum() > 300]
    centres = {i: np.argwhere(tracks[0] == i).mean(axis=0) for i in ids}
    nucleus = min(ids, key=lambda i: np.hypot(*(centres[i] - 256)))
    ys, xs = np.nonzero(tracks[0] == nucleus)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], float)


def track(frames, box, segmenter) -> np.ndarray:
    session = TrackingSession(frames, backend=LiteMedSAMTracker(frames, segmenter=segmenter))
    session.add_box(0, 1, box)
    for _ in session.propagate("forward"):
        pass
    return session.labels()


@pytest.mark.slow  # three encoder passes (~10 s on the shared 2-core CPU)
def test_tracking_in_huge_lazy_frames_reads_only_the_window(hela, segmenter):
    images, tracks = hela
    background = int(np.percentile(images, 1))
    store = CountingStore(MemoryStore())
    array = zarr.create_array(
        store=store, shape=(FRAMES, SIDE, SIDE), chunks=(1, CHUNK, CHUNK), dtype=images.dtype, fill_value=background
    )
    array[:, OFFSET[0] : OFFSET[0] + 512, OFFSET[1] : OFFSET[1] + 512] = images
    frames = open_frames(zarr.open_array(store=store, mode="r"))
    assert isinstance(frames, LazyStackFrames) and frames.shape == (SIDE, SIDE)
    with pytest.raises(FmscopeError, match="window"):
        frames[0]  # a whole 20k frame is never read

    box = central_box(tracks) + np.array([OFFSET[1], OFFSET[0]] * 2)
    window = frames.window_around(box)
    assert isinstance(window, WindowFrames) and window.shape == (1024, 1024)
    far = box + 1500  # two objects: one window holding both, with the margin of one
    both = frames.window_around([box, far]).rectangle
    assert both[2] - both[0] == both[3] - both[1] >= 1500 + 7 * (box[2] - box[0])
    assert both[1] <= box[0] and far[2] < both[3] and both[0] <= box[1] and far[3] < both[2]
    y0, x0, y1, x1 = window.rectangle
    eager = ArrayFrames(np.asarray(array[:, y0:y1, x0:x1]))
    store.keys.clear()
    lazy_labels = track(window, box - np.array([x0, y0] * 2), segmenter)
    reads = [key for key in store.keys if key.startswith("c/")]  # chunk keys (zarr v3: c/t/row/col)

    eager_labels = track(eager, box - np.array([x0, y0] * 2), segmenter)
    np.testing.assert_array_equal(lazy_labels, eager_labels)
    assert all((lazy_labels[t] == 1).sum() > 200 for t in range(FRAMES))  # the nucleus on every frame
    # The chunks of the window only (3 x 3 of 512 px; a frame holds 40 x 40), each frame read at most three times
    # (the intensity sample, the prompt, the propagation).
    window_chunks = {
        f"c/{t}/{row}/{col}"
        for t in range(FRAMES)
        for row in range(y0 // CHUNK, (y1 - 1) // CHUNK + 1)
        for col in range(x0 // CHUNK, (x1 - 1) // CHUNK + 1)
    }
    assert set(reads) <= window_chunks
    assert len(window_chunks) == FRAMES * 9 and 0 < len(reads) <= 3 * len(window_chunks)


@pytest.mark.parametrize("layout", ["one series TYX", "pages appended one by one"])
def test_a_tiled_tiff_stack_of_huge_frames_opens_lazily(tmp_path, hela, layout):
    """A tiled multi-page TIFF whose frames are above the eager limit, written in one call or page by page (a live
    acquisition): opened as lazy frames (never whole), a window reads the same pixels as the file's full read."""
    images, _ = hela
    stack = np.zeros((2, 4200, 4200), np.uint16)
    stack[:, 1000:1512, 2000:2512] = images[:2]
    path = tmp_path / "huge_stack.tif"
    if layout == "one series TYX":
        tifffile.imwrite(path, stack, tile=(256, 256), compression="zlib", metadata={"axes": "TYX"})
    else:
        for frame in stack:
            tifffile.imwrite(path, frame, tile=(256, 256), compression="zlib", append=True)
    frames = open_frames(path)
    try:
        assert isinstance(frames, LazyStackFrames) and frames.n_frames == 2 and frames.shape == (4200, 4200)
        window = frames.window(900, 1900, 1700, 2700)
        np.testing.assert_array_equal(window[1], stack[1, 900:1700, 1900:2700])
        with pytest.raises(FmscopeError, match="4200 x 4200"):
            frames[1]
    finally:
        frames.close()


def test_fmscope_track_refuses_huge_frames_by_name_before_loading_a_model(tmp_path, capsys):
    """``fmscope track`` would write a full-size label stack: refused naming the frames' size and the windowed ways,
    exit 1, nothing written."""
    path = tmp_path / "huge_stack.tif"
    tifffile.imwrite(path, np.zeros((2, 4200, 4200), np.uint8), tile=(256, 256), compression="zlib")
    out = tmp_path / "labels.tif"
    assert main(["track", str(path), "--frame", "0", "--box", "10", "10", "40", "40", "-o", str(out)]) == 1
    message = capsys.readouterr().err
    assert "4200 x 4200" in message and "window" in message and "Traceback" not in message
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["huge_stack.tif"]
