"""LabelPyramid (the labels of a huge image, issue 27) and SegmentState's region painting on it: every level is level
0 subsampled, only labelled chunks are stored, paint / undo / erase touch only their regions."""

from __future__ import annotations

import numpy as np

from fmscope.imaging.label_pyramid import CHUNK, LabelPyramid
from fmscope.napari.state import SegmentState

SHAPE = (5000, 3000)  # levels 5000, 2500, 1250, 625 rows


def _disc(side: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    return np.hypot(yy - side / 2, xx - side / 2) < radius


def test_levels_are_level_0_subsampled_and_only_labelled_chunks_are_stored():
    pyramid = LabelPyramid(SHAPE)
    assert [level.shape for level in pyramid.levels] == [(5000, 3000), (2500, 1500), (1250, 750), (625, 375)]
    block = np.zeros((300, 200), np.uint16)
    block[50:250, 20:180] = 7
    pyramid[1000:1300, 1100:1300] = block
    pyramid[4900:5000, 2950:3000] = 3  # at the far corner, a partial chunk
    assert pyramid.max() == 7
    for k, level in enumerate(pyramid.levels):
        factor = 2**k
        window = np.asarray(level[1000 // factor : 1300 // factor, 1100 // factor : 1300 // factor])
        assert np.array_equal(
            window, pyramid[1000:1300, 1100:1300][::factor, ::factor][: window.shape[0], : window.shape[1]]
        )
    corner = np.asarray(pyramid.levels[3][-2:, -2:])
    assert (corner == 3).all()
    stored = pyramid.levels[0].nchunks_initialized
    assert len(list(pyramid.written_regions())) == 3  # written: two chunks for the block, one at the corner
    assert stored == 2  # stored: only those holding a label (the block's top chunk got only zeros)
    assert stored < pyramid.levels[0].nchunks


def test_region_paint_undo_and_erase_on_a_pyramid():
    pyramid = LabelPyramid(SHAPE)
    state = SegmentState()
    crop = (2000, 1000, 2064, 1064)  # (y0, x0, y1, x1)
    mask = _disc(64, 20)
    assert state.paint(pyramid, None, 1, mask, region=crop)
    assert np.array_equal(pyramid[2000:2064, 1000:1064] == 1, mask)
    assert state.next_label(pyramid) == 2
    other = (2040, 1040, 2104, 1104)  # overlaps the first object: never painted over
    assert state.paint(pyramid, None, 2, _disc(64, 30), region=other)
    assert np.array_equal(pyramid[2000:2064, 1000:1064] == 1, mask)
    assert (pyramid[2040:2104, 1040:1104] == 2).sum() > 0

    assert state.erase(pyramid, 1)
    assert not (pyramid[1536:2560, 512:1536] == 1).any()  # the written chunks: the only places label 1 was
    assert state.undo(pyramid)  # the erase
    assert np.array_equal(pyramid[2000:2064, 1000:1064] == 1, mask)
    assert state.undo(pyramid) and state.undo(pyramid)
    assert not pyramid[1536:2560, 512:1536].any()
    assert all(y0 % CHUNK == 0 and x0 % CHUNK == 0 for y0, x0, _, _ in pyramid.written_regions())
