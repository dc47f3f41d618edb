"""ROI zoom: crops centred on the object, the same decision in a crop of the image, and the same
mask from predict, predict_many and crops prepared ahead (real LiteMedSAM on the nuclei sample)."""

from __future__ import annotations

import numpy as np
import pytest

from fmscope.imaging import roi
from fmscope.imaging.cache import EmbeddingCache
from fmscope.imaging.intensity import resolve_intensity


def random_extents(count: int, shape: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    extents = []
    for _ in range(count):
        w, h = rng.uniform(3, 70, size=2)
        x, y = rng.uniform(0, shape[1] - w), rng.uniform(0, shape[0] - h)
        extents.append(np.array([x, y, x + w, y + h]))
    return extents


def test_object_sits_near_the_crop_centre_and_every_crop_is_on_the_lattice():
    shape = (300, 517)
    lattices = {}
    for extent in random_extents(3000, shape):
        crop = roi.crop_for(extent, shape)
        side = roi.crop_side(extent)
        assert crop is not None and side < max(shape)
        assert crop in lattices.setdefault(side, set(roi.lattice(side, shape)))
        centre = ((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2)
        for axis, (start, end) in enumerate(((crop[1], crop[3]), (crop[0], crop[2]))):
            length = shape[1 - axis]
            if 0 < start and end < length:  # not moved inside the image at its border
                assert abs((start + end) / 2 - centre[axis]) <= side / (2 * roi.LATTICE_DIVISOR) + 0.5
            assert end - start == min(side, length)
        # the object is inside its crop with room around it
        assert crop[1] <= extent[0] and extent[2] <= crop[3] and crop[0] <= extent[1] and extent[3] <= crop[2]


def test_zoom_decision_and_crop_do_not_change_in_a_crop_of_the_image():
    shape = (512, 512)
    for extent in random_extents(2000, shape, seed=1):
        side = roi.crop_side(extent)
        stride = side // roi.LATTICE_DIVISOR
        # a crop of the image whose offset is on the lattice and that holds the object's crop
        full = roi.crop_for(extent, shape)
        oy, ox = (max(0, full[0] - 2 * stride) // stride) * stride, (max(0, full[1] - 3 * stride) // stride) * stride
        sub_shape = (min(shape[0], full[2] + stride) - oy, min(shape[1], full[3] + 2 * stride) - ox)
        local = roi.crop_for(extent - np.array([ox, oy, ox, oy]), sub_shape)
        assert local is not None  # zoomed in the crop as in the whole image
        if full[0] > 0 and full[1] > 0 and full[2] < shape[0] and full[3] < shape[1]:
            assert (local[0] + oy, local[1] + ox, local[2] + oy, local[3] + ox) == full
    # off the lattice the decision (zoom, crop side) still holds
    for extent in random_extents(500, shape, seed=2):
        local_shape = (300, 301)
        moved = extent * 0.5 + 7
        moved[2:] = moved[:2] + (extent[2:] - extent[:2])
        if moved[2] < local_shape[1] and moved[3] < local_shape[0]:
            assert (roi.crop_for(moved, local_shape) is None) == (roi.crop_side(moved) >= 301)
            assert roi.crop_side(moved) == roi.crop_side(extent)


@pytest.mark.slow
def test_same_mask_for_a_nucleus_seen_in_a_crop_of_the_image(segmenter, nuclei, nuclei_boxes):
    image = nuclei[0]
    intensity = resolve_intensity(image, None)  # one mapping for both, as for slices of one volume
    oy, ox = 128, 128  # on the lattice of every crop side up to 256
    inside = [
        np.asarray(b, float)
        for b in nuclei_boxes.values()
        if b[0] > ox + 64 and b[2] < ox + 384 - 64 and b[1] > oy + 64 and b[3] < oy + 320 - 64
    ]
    box = inside[len(inside) // 2]
    segmenter.set_image(image, window=intensity)
    whole = segmenter.predict(box=box)
    assert whole.crop is not None
    sub = image[oy : oy + 320, ox : ox + 384]
    segmenter.set_image(sub, window=intensity)
    local = segmenter.predict(box=box - np.array([ox, oy, ox, oy]))
    assert local.crop is not None
    assert np.array_equal(local.mask, whole.mask[oy : oy + 320, ox : ox + 384])
    assert whole.mask[oy : oy + 320, ox : ox + 384].sum() == whole.mask.sum() > 0


@pytest.mark.slow
def test_single_batched_and_prepared_results_are_identical(segmenter, nuclei, nuclei_boxes):
    image = nuclei[0]
    boxes = [np.asarray(b, float) for b in list(nuclei_boxes.values())[10:13]]
    original = segmenter.cache
    try:
        segmenter.cache = EmbeddingCache()
        segmenter.set_image(image)
        single = [segmenter.predict(box=box) for box in boxes]
        segmenter.cache = EmbeddingCache()
        batched = segmenter.predict_many(boxes)

        segmenter.cache = EmbeddingCache()
        assert segmenter.zoom_crops_near(boxes[0], radius_factor=0.0) == [single[0].crop]
        nearby = segmenter.zoom_crops_near(boxes[0], radius_factor=0.6)  # the crop and its 4 lattice neighbours
        assert nearby[0] == single[0].crop and len(nearby) == 5
        assert segmenter.prepare(nearby) == len(nearby)
        assert segmenter.prepare(nearby) == 0  # all cached now
        calls = segmenter.encoder_calls
        prepared = segmenter.predict(box=boxes[0])
        assert segmenter.encoder_calls == calls  # a decode from the prepared crop
    finally:
        segmenter.cache = original
    for one, many in zip(single, batched):
        assert one.crop == many.crop is not None
        assert np.array_equal(one.mask, many.mask) and one.score == many.score
    assert np.array_equal(prepared.mask, single[0].mask) and prepared.score == single[0].score


def test_large_objects_use_the_whole_image():
    assert roi.crop_for(np.array([10, 10, 300, 200]), (512, 512)) is None
    assert roi.crop_for(np.array([10, 10, 20, 20]), (60, 60)) is None  # the crop would be the image
    assert roi.crop_for(np.array([10, 10, 20, 20]), (512, 512)) == (0, 0, 64, 64)
