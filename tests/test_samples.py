"""The sample cases: files present, shapes and the HeLa track linking as documented."""

from __future__ import annotations

import numpy as np
import tifffile

from fmscope import samples


def test_hela_timelapse_tracks_relabel_the_per_frame_masks():
    case = samples.get_case("hela_timelapse")
    images = tifffile.imread(case.image_path)
    tracks = tifffile.imread(case.labels_path)
    masks = tifffile.imread(case.image_path.parent / "masks.tif")
    assert images.shape == tracks.shape == masks.shape == (20, 512, 512)
    assert np.array_equal(tracks > 0, masks > 0)
    records = np.loadtxt(case.image_path.parent / "man_track.txt", dtype=int)
    assert records.shape == (116, 4)
    for label, first, last, parent in records:
        frames = np.flatnonzero((tracks == label).reshape(20, -1).any(axis=1))
        assert (frames.min(), frames.max()) == (first, last)
        assert parent == 0 or records[records[:, 0] == parent][0, 1] < first
    # every per-frame object maps to exactly one track id
    for t in (0, 10, 19):
        for i in np.unique(masks[t])[1:]:
            assert len(np.unique(tracks[t][masks[t] == i])) == 1
