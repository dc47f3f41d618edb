"""The embedded default tracker: LiteMedSAM on every frame, prompted from a motion prior.

**It has no temporal memory**: each frame is segmented on its own by LiteMedSAM (the weights
shipped with fmscope), from a box taken from a *prior*, the object's previous mask
moved by the estimated motion. Motion is the frame's global shift (cross-correlation of the
block-averaged frames, which follows stage drift and camera motion) refined per object by
template matching: the object's box on the previous frame is matched (normalised
cross-correlation, :func:`skimage.feature.match_template`) within one object size of where the
drift puts it, and the best match is weighted by a Gaussian of the distance (sigma 0.8 object
sizes) so a similar neighbour further away does not win, and by the fraction of the object that
would not land where another object is expected (the others' previous masks moved by the drift,
and the masks prompted on this frame), so an object does not jump onto a neighbour it resembles
(a dividing nucleus onto its daughter). The template is cut to what the drift leaves inside the
frame, so an object at the edge is still matched after a jump. On the HeLa sample this puts the box
within 5 px of the nucleus's true move for 97 % of object-frames (74 % for "no move").
A mask is kept while the :class:`~fmscope.imaging.stop_rule.StopRule` holds (area against
the prompted area, the model's score, mean intensity: on a time-lapse against the object's last kept mask, since a
nucleus brightens before it divides and dims after, and on the HeLa division windows masks of a nucleus that had
dimmed by a quarter of the range since its prompt were refused; on a volume against the prompted slice);
otherwise a box twice as wide around the prior tries to re-find the object, and an object not found for
``lost_frames`` frames stops: 3 frames of a time-lapse (a cell missed on one frame is found again), 1 slice of a
volume (an organ or lesion does not leave a slice and come back; the tail slices past its end cost two encoder
passes each: on ct_lung_volume 7 passes instead of 15, the same Dice 0.8227 and slices 8-10).
A user prompt on a frame is an anchor: the object restarts from it. Objects on a frame share
its embeddings (the ROI-zoom grid crops are cached).
No point is added to the box: LiteMedSAM was trained on boxes, and a positive click at the
prior's centre lowered a HeLa nucleus's Dice from 0.97 to 0.35-0.76 (measured).
``motion_prior=False`` is the naive tracker used as the benchmark baseline: the box from the
previous mask, nothing else.

Objects leaving the field: while any part of the prior is in the frame, the area check compares
with the part of the object the prior puts inside it (an object half out is kept); once the prior
lies wholly outside, the object ends on its last frame in view.

Lineages (forward propagation only, when the session enables them, :meth:`LiteMedSAMTracker.enable_lineage`):
a division (:mod:`fmscope.imaging.tracking.divisions`: a split lasting two frames (a rod's mask cut at its septum
first), a followed daughter with a confident sibling beside it, or an object lost (or shrunk, with no sibling)
with two daughters where it was expected, each confirmed by the model) ends the parent and starts two daughters with new
ids, reported in :attr:`LiteMedSAMTracker.divisions`; with ``detect_new`` a confident region no
track covers starts a track of its own (its box prompts LiteMedSAM; kept when the score is at least
:data:`NEW_MIN_SCORE` and its size within a factor :data:`NEW_SIZE_RANGE` of the tracked objects' median).
Regions are looked for on the tracked objects' side of a threshold: bright objects (fluorescence) above Otsu's,
dark ones (phase contrast, the tracked masks' mean below the frame's median) below
:func:`~fmscope.imaging.tracking.divisions.dark_level`, with the tracked masks grown by :data:`DARK_APART` px cut
out first, since the cells of a colony touch and form one dark region otherwise (on the rods benchmark, before
both: no cell found; after: ``--detect-new`` raised its TRA from 0.609 to 0.670).

Dark objects on a time-lapse (phase contrast: the tracked objects' reference means below the frame's median) are
snapped each frame to an instance partition of the dark colony (:mod:`fmscope.imaging.tracking.colony_partition`):
an object's mask is the union of the segments its motion prior (or its model mask, with the prior on it) claims, a
segment two objects want going to the one whose prior overlaps it most, so a model mask that spread over its
neighbours cannot take them, and the half of a constricted rod the model left out stays the object's. With
divisions, an object that held one segment on the frame before and holds two of comparable size in line now
divides on this frame; with ``detect_new`` a cell-sized segment nothing covers starts a track. On the rods benchmark
(``benchmarks/tracking.py --rods-divisions --detect-new``) this raised division F1 from 0.375 to 0.800 and mean
Dice from 0.578 to 0.856 (2026-12-08). Bright objects (fluorescence) are left as they were.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
from scipy.signal import correlate
from skimage.feature import match_template
from skimage.registration import phase_cross_correlation

from fmscope.errors import FmscopeError
from fmscope.imaging.image_input import is_blank
from fmscope.imaging.intensity import Intensity, resolve_intensity
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.prompts import box_from_mask
from fmscope.imaging.stop_rule import StopRule
from fmscope.imaging.tracking.colony_partition import claim_segments, partition
from fmscope.imaging.tracking.divisions import (
    MAX_COVERED,
    MIN_DAUGHTER_RATIO,
    MIN_PART_FRACTION,
    SHRINK,
    Division,
    dark_level,
    daughter_regions,
    other_half,
    pair_parts,
    septum_cut,
    sibling_of,
    split_parts,
    uncovered_regions,
)
from fmscope.imaging.tracking.frames import FrameSource
from fmscope.imaging.tracking.preprocess import SAMPLE_FRAMES
from fmscope.imaging.tracking.prompt import Prompt
from fmscope.imaging.tracking.results import LabelStore, ObjectMask
from fmscope.models import DEFAULT_SEGMENTER

GLOBAL_MOTION_SIDE = 1024  # larger frames are block-averaged to about this size for the global shift
SEARCH_GROWTH = 2.0  # re-find box: this many times the prior's box, same centre
TEMPLATE_MARGIN = 4  # pixels of context around the object's box in its template
MATCH_RADIUS = 1.0  # search this many object sizes (at least MIN_MATCH_RADIUS px) around the drifted box
MIN_MATCH_RADIUS = 16
MATCH_SIGMA = 0.8  # Gaussian weight on the match's distance from the drifted box, in object sizes
NEW_MIN_SCORE = 0.8  # a new object or a sibling: LiteMedSAM's score on its region's box at least this
ROD_HALF_SCORE = 0.7  # ... a rod's other half, seen on two frames in a row (divisions.other_half): at least this
SNAPPED_SCORE = 0.7  # the score of a dark object's mask from the colony's partition where the model gave none
NEW_SIZE_RANGE = 4.0  # ... and its area within this factor of the tracked objects' median reference area
MIN_NEW_PIXELS = 12
DARK_APART = 3  # dark objects (phase contrast): px between tracked and untracked cells (divisions.uncovered_regions)
ROD_ASPECT = 2.0  # a box this elongated holds a rod ...
ROD_GROWTH = 0.15  # ... whose box is lengthened by this fraction of its length at both ends
ROD_WIDEN = 0.2  # ... and widened by this fraction of its width at both sides
CUT_FRACTION = 0.3  # a box side the mask runs along for this fraction of its length has cut the object
CUT_MIN_PX = 4
GROW_STEP = 0.25  # ... and moves out by this fraction of the box's length along it
GROW_TRIES = 2
LOST_FRAMES = 3  # frames of a time-lapse an object may go unfound before its track ends
LOST_SLICES = 1  # slices of a volume likewise (module docstring: measured on ct_lung_volume)


def shift_mask(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) pixels; what leaves the frame is lost, what enters is empty."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    if h - abs(dy) > 0 and w - abs(dx) > 0:
        out[yd, xd] = mask[ys, xs]
    return out


def estimate_shift(previous: np.ndarray, current: np.ndarray) -> tuple[int, int]:
    """(dy, dx) by which the content of ``previous`` moved to reach ``current`` (cross-correlation peak;
    the phase-normalised peak jumped 29 px on HeLa frames whose cells moved 2 px)."""
    if previous.shape != current.shape or min(previous.shape) < 8 or previous.std() == 0 or current.std() == 0:
        return 0, 0
    shift, _, _ = phase_cross_correlation(current.astype(np.float32), previous.astype(np.float32), normalization=None)
    return int(round(shift[0])), int(round(shift[1]))


def global_shift(previous: np.ndarray, current: np.ndarray) -> tuple[int, int]:
    """Whole-frame shift on block-averaged frames (about 256 px), scaled back to pixels."""
    factor = max(1, int(np.ceil(max(previous.shape) / GLOBAL_MOTION_SIDE)))
    if factor > 1:
        h, w = (s // factor * factor for s in previous.shape)
        small = [
            f[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3)) for f in (previous, current)
        ]
    else:
        small = [previous, current]
    dy, dx = estimate_shift(*small)
    return dy * factor, dx * factor


def match_object(
    previous: np.ndarray,
    current: np.ndarray,
    mask: np.ndarray,
    drift: tuple[int, int],
    occupied: np.ndarray | None = None,
    sigma: float | None = None,
) -> tuple[int, int]:
    """(dy, dx) by which the object ``mask`` (bool, on ``previous``) moved to reach ``current``:
    its box on ``previous`` (plus a margin, less what the drift takes out of the frame) matched
    on ``current`` by normalised cross-correlation around the position the global ``drift``
    predicts, weighted by a Gaussian of the distance from it and, where ``occupied`` (bool, on
    ``current``: where other objects are) is given, by the fraction of the object that would not
    land on another object. ``sigma``: that Gaussian's width in pixels (default :data:`MATCH_SIGMA` of the
    object's size, at least 4 px). Returns ``drift`` when there is nothing to match."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return drift
    h, w = previous.shape
    y0, y1 = max(0, ys.min() - TEMPLATE_MARGIN, -drift[0]), min(h, ys.max() + 1 + TEMPLATE_MARGIN, h - drift[0])
    x0, x1 = max(0, xs.min() - TEMPLATE_MARGIN, -drift[1]), min(w, xs.max() + 1 + TEMPLATE_MARGIN, w - drift[1])
    if y1 - y0 < 2 or x1 - x0 < 2:
        return drift
    template = previous[y0:y1, x0:x1].astype(np.float32)
    size = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    radius = max(MIN_MATCH_RADIUS, int(MATCH_RADIUS * size))
    sy0, sy1 = max(0, y0 + drift[0] - radius), min(h, y1 + drift[0] + radius)
    sx0, sx1 = max(0, x0 + drift[1] - radius), min(w, x1 + drift[1] + radius)
    search = current[sy0:sy1, sx0:sx1].astype(np.float32)
    if template.std() == 0 or search.shape[0] < template.shape[0] or search.shape[1] < template.shape[1]:
        return drift
    similarity = match_template(search, template)
    gy, gx = np.mgrid[: similarity.shape[0], : similarity.shape[1]]
    dy, dx = sy0 + gy - y0, sx0 + gx - x0  # the object's move for each placement
    sigma = max(4.0, MATCH_SIGMA * size if sigma is None else sigma)
    weighted = similarity * np.exp(-((dy - drift[0]) ** 2 + (dx - drift[1]) ** 2) / (2 * sigma**2))
    if occupied is not None and occupied[sy0:sy1, sx0:sx1].any():
        own = mask[y0:y1, x0:x1].astype(np.float32)
        if own.sum() > 0:
            landed = correlate(occupied[sy0:sy1, sx0:sx1].astype(np.float32), own, mode="valid", method="fft")
            weighted = weighted * (1 - np.clip(landed / own.sum(), 0, 1))
    best = np.unravel_index(np.argmax(weighted), weighted.shape)
    return int(dy[best]), int(dx[best])


def rod_axes(mask: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray] | None:
    """(length, width, axis, across) of a rod-shaped ``mask`` (bool (H, W)): its principal axes' lengths (a uniform
    bar's, 4 standard deviations) and their unit directions' absolute (x, y) components; None when the mask is not
    a rod (fewer than 8 pixels, or length below :data:`ROD_ASPECT` times the width)."""
    ys, xs = np.nonzero(mask)
    if ys.size < 8:
        return None
    values, vectors = np.linalg.eigh(np.cov(np.stack([xs, ys]).astype(float)))
    if values[0] <= 0 or values[1] < ROD_ASPECT**2 * values[0]:
        return None
    return 4 * np.sqrt(values[1]), 4 * np.sqrt(values[0]), np.abs(vectors[:, 1]), np.abs(vectors[:, 0])


class LiteMedSAMTracker:
    """Default tracking backend (see module docstring)."""

    def __init__(
        self,
        frames: FrameSource,
        checkpoint: str | os.PathLike | None = None,
        window: str | tuple[float, float] | None = None,
        device: str | None = None,
        motion_prior: bool = True,
        stop: StopRule = StopRule(),
        lost_frames: int | None = None,
        segmenter: Segmenter | None = None,
        model: str | os.PathLike = DEFAULT_SEGMENTER,
        precision: str = "fp32",
        inference_backend: str | None = None,
    ) -> None:
        """``model``: ``litemedsam`` or an fmscope model file (a fine-tuned segmenter; ``checkpoint``:
        its base weights where they are not embedded). ``precision``: the segmenter's (``"fast"``:
        bfloat16 encoder, about 2x faster on CPUs with AMX / AVX-512 BF16); ``inference_backend``: its
        encoder's runtime (``torch`` / ``openvino`` / ``auto``, default ``$FMSCOPE_BACKEND`` or auto).
        ``lost_frames``: frames an object may go unfound before it stops (default: 1 for a volume's slices, 3
        otherwise; see the module docstring)."""
        if lost_frames is None:
            lost_frames = LOST_SLICES if frames.kind == "volume" else LOST_FRAMES
        self.frames, self.motion_prior, self.stop, self.lost_frames = frames, motion_prior, stop, lost_frames
        self.segmenter = (
            segmenter
            if segmenter is not None
            else Segmenter(model, checkpoint, device, precision=precision, backend=inference_backend)
        )
        # an Intensity given (segment_volume's, one window for the whole volume) needs no sample of the frames
        given = isinstance(window, Intensity)
        self.intensity: Intensity = window if given else resolve_intensity(self._intensity_sample(), window)
        self.anchors: dict[int, dict[int, ObjectMask]] = {}  # object -> frame -> prompted mask
        self.reference: dict[int, tuple[int, float]] = {}  # object -> (prompted area, mean mapped intensity)
        self.prompts: dict[tuple[int, int], Prompt] = {}  # (object, frame) -> the prompt given there
        self.divisions_on, self.detect_new = False, False
        self.new_id: Callable[[], int] | None = None
        self.divisions: list[Division] = []  # found while propagating; the session takes them
        self.births: list[tuple[int, int]] = []  # (object, frame) of new objects found (detect_new)

    def enable_lineage(self, divisions: bool, detect_new: bool, new_id: Callable[[], int]) -> None:
        """Find divisions and / or new objects while propagating forward; ``new_id()`` gives each new object's id."""
        self.divisions_on, self.detect_new, self.new_id = divisions, detect_new, new_id

    def _intensity_sample(self) -> np.ndarray:
        if self.frames.volume is not None:
            return self.frames.volume.array
        picks = np.unique(np.linspace(0, self.frames.n_frames - 1, min(SAMPLE_FRAMES, self.frames.n_frames)))
        sample = []
        for index in picks:
            try:
                sample.append(self.frames[int(index)])
            except FmscopeError:  # an unreadable frame is named when tracking reaches it, not before
                continue
        return np.stack(sample) if sample else self.frames[0][None]

    def _set_frame(self, index: int, frame: np.ndarray | None = None) -> np.ndarray:
        """Embed frame ``index`` (``frame``: its pixels when already read); returns its mapped grey image (H, W)
        uint8. A blank frame is refused by index."""
        frame = self.frames[index] if frame is None else frame
        if is_blank(frame):
            raise FmscopeError(
                f"Frame {index} of {self.frames.name} is blank (every pixel the same value); "
                "there is nothing to prompt on it.",
                "Prompt the object on a frame with a picture.",
            )
        self.segmenter.set_image(frame, window=self.intensity)
        return self.segmenter.mapped_image.mean(axis=-1) if self.frames.rgb else self.segmenter.mapped_image[..., 0]

    def add_prompt(
        self, frame: int, obj: int, prompt: Prompt, reverse: bool | None, append: bool
    ) -> dict[int, ObjectMask]:
        """Segment ``obj`` on ``frame`` from the prompt; it becomes the object's anchor there."""
        mapped = self._set_frame(frame)
        if prompt.mask is not None:
            result = ObjectMask(prompt.mask.copy(), 1.0)
        else:
            earlier = self.prompts.get((obj, frame)) if append else None
            if earlier is not None:  # new clicks join the frame's earlier box and clicks
                prompt = Prompt(
                    earlier.box,
                    *(
                        np.concatenate([a, b]) if a is not None else b
                        for a, b in ((earlier.points, prompt.points), (earlier.labels, prompt.labels))
                    ),
                )
            predicted = self.segmenter.predict(box=prompt.box, points=prompt.points, labels=prompt.labels)
            result = ObjectMask(predicted.mask, predicted.score)
        self.prompts[(obj, frame)] = prompt
        self.anchors.setdefault(obj, {})[frame] = result
        area = int(result.mask.sum())
        self.reference[obj] = (area, float(mapped[result.mask].mean()) if area else 0.0)
        return {obj: result}

    def propagate(self, start: int, stop: int, reverse: bool) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
        """Frames ``start`` .. ``stop``; objects anchored on ``start`` (and those anchored on the
        frames reached) are followed."""
        step = -1 if reverse else 1
        previous: dict[int, np.ndarray] = {}  # object -> last mask found
        missing: dict[int, int] = {}  # object -> frames since last found
        splits: dict[int, tuple[int, tuple[np.ndarray, np.ndarray]]] = {}  # object -> (frame, parts) of a split
        halved: dict[int, tuple[int, np.ndarray]] = {}  # rod -> (frame, its other half) seen in halves there
        held: dict[int, int] = {}  # dark object -> segments of the partition it held on the last frame (none: 1)
        last_image: np.ndarray | None = None
        for index in range(start, stop + step, step):
            pixels = self.frames[index]
            if is_blank(pixels):  # nothing to see: no labels here, objects followed on past it
                yield index, {}
                continue
            image = self._set_frame(index, pixels)
            found: dict[int, ObjectMask] = {}
            before = dict(previous)
            drift = (0, 0)
            priors: dict[int, np.ndarray] = {}  # object -> its motion prior on this frame
            if previous and last_image is not None:
                drift = global_shift(last_image, image) if self.motion_prior else (0, 0)
                expected = {obj: shift_mask(mask, *drift) for obj, mask in previous.items()}
                expected.update({obj: anchors[index].mask for obj, anchors in self.anchors.items() if index in anchors})
                crowd = np.zeros(image.shape, np.uint16)  # objects expected per pixel
                for where in expected.values():
                    crowd += where
                for obj, mask in list(previous.items()):
                    occupied = crowd > expected[obj]  # where other objects are expected
                    result = self._follow(obj, mask, last_image, image, drift, occupied, priors)
                    if result is not None:
                        found[obj] = result
                        previous[obj], missing[obj] = result.mask, 0
                    else:
                        missing[obj] = missing.get(obj, 0) + 1
                        left = not shift_mask(mask, *drift).any()  # wholly outside the frame: it ends here
                        if left or not self.motion_prior or missing[obj] >= self.lost_frames:
                            del previous[obj]
                        else:
                            previous[obj] = shift_mask(mask, *drift)
            for obj, anchors in self.anchors.items():
                if index in anchors:
                    found[obj] = anchors[index]
                    previous[obj], missing[obj] = anchors[index].mask, 0
            if priors and self.frames.kind != "volume":
                lineage = not reverse and last_image is not None
                for obj in self._snap(index, image, found, before, priors, previous, held, lineage):
                    missing[obj] = 0
            if not reverse and (self.divisions_on or self.detect_new) and last_image is not None:
                if self.divisions_on:
                    lost = [obj for obj in before if obj not in found and missing.get(obj) == 1]
                    self._lost_divisions(index, lost, last_image, image, drift, found, before, previous)
                self._lineage_step(index, image, found, before, previous, splits, halved)
                if self.divisions_on:  # shrunk, and no sibling found beside it: two daughters where it was?
                    shrunk = [
                        obj
                        for obj, result in found.items()
                        if obj in before
                        and index not in self.anchors.get(obj, {})
                        and result.mask.sum() < SHRINK * before[obj].sum()
                    ]
                    self._lost_divisions(index, shrunk, last_image, image, drift, found, before, previous)
            last_image = image
            yield index, found

    def _lost_divisions(
        self,
        index: int,
        lost: list[int],
        last_image: np.ndarray,
        image: np.ndarray,
        drift: tuple[int, int],
        found: dict[int, ObjectMask],
        before: dict[int, np.ndarray],
        previous: dict[int, np.ndarray],
    ) -> None:
        """Objects lost on frame ``index`` (found on the frame before) that divided: two daughters where the object
        was expected (:func:`~fmscope.imaging.tracking.divisions.daughter_regions`, searched in the wider box around
        its prior), each confirmed by the model (its region's box; score at least :data:`NEW_MIN_SCORE`, the mask on
        its region). The parent ends on ``index - 1``; updates ``found`` and ``previous`` in place."""
        for obj in lost:
            mask = before[obj]
            expected = shift_mask(mask, *self._object_move(obj, mask, last_image, image, drift, None))
            box = box_from_mask(expected, self.stop.box_margin)
            if box is None or box[2] <= box[0] or box[3] <= box[1]:
                continue
            x0, y0, x1, y1 = (int(round(v)) for v in self._wider(box, image.shape))
            covered = np.zeros(image.shape, bool)
            for other, result in found.items():
                if other != obj:
                    covered |= result.mask
            level = dark_level(self.reference[obj][1], float(np.median(image)))
            regions = daughter_regions(image, expected, (y0, x0, y1 + 1, x1 + 1), covered, level is None, level)
            if regions is None:
                continue
            daughters: list[ObjectMask] = []
            for region in regions:
                predicted = self.segmenter.predict(box=box_from_mask(region, self.stop.box_margin))
                mask_now = predicted.mask & ~covered
                if predicted.score < NEW_MIN_SCORE or (mask_now & region).sum() < 0.5 * region.sum():
                    break
                daughters.append(ObjectMask(mask_now, predicted.score))
                covered = covered | mask_now
            if len(daughters) != 2:
                continue
            self._divide(obj, index, daughters, image, found, previous)

    def _lineage_step(
        self,
        index: int,
        image: np.ndarray,
        found: dict[int, ObjectMask],
        before: dict[int, np.ndarray],
        previous: dict[int, np.ndarray],
        splits: dict[int, tuple[int, tuple[np.ndarray, np.ndarray]]],
        halved: dict[int, tuple[int, np.ndarray]],
    ) -> None:
        """Divisions and new objects on frame ``index`` (see module docstring); updates ``found`` and
        ``previous`` in place (a parent's mask becomes its daughters'). ``halved``: {rod: (frame, its other half's
        mask)} of the rods seen in halves (:func:`~fmscope.imaging.tracking.divisions.other_half`), replaced in
        place by this frame's."""
        followed = [obj for obj in found if obj in before and index not in self.anchors.get(obj, {})]
        if self.divisions_on:
            background = float(np.median(image))
            for obj in followed:
                mask = found[obj].mask
                cut = septum_cut(mask, image, background) if rod_axes(mask) is not None else mask
                parts = split_parts(cut, int(before[obj].sum()), mask)
                earlier = splits.pop(obj, None)
                if parts is None:
                    continue
                if earlier is None or earlier[0] != index - 1:
                    splits[obj] = (index, parts)
                    continue
                now = pair_parts(earlier[1], parts)  # a split lasting two frames: a division on the first
                score = found[obj].score
                daughters = [ObjectMask(mask, score) for mask in now]
                self._divide(obj, index - 1, daughters, image, found, previous, recorded=earlier[1])
        if not found:
            return
        now = {obj: found[obj].mask for obj in followed if obj in found}
        pending = {obj: mask for obj, (frame, mask) in halved.items() if frame == index - 1 and obj in now}
        halved.clear()
        shrunk = any(mask.sum() < SHRINK * before[obj].sum() for obj, mask in now.items())
        if not self.detect_new and not shrunk and not (self.divisions_on and pending):
            return  # no followed object shrank and no rod was seen in halves: no sibling to look for
        areas = [self.reference[obj][0] for obj in found if obj in self.reference]
        median = float(np.median(areas)) if areas else 0.0
        covered = np.zeros(image.shape, bool)
        for result in found.values():
            covered |= result.mask

        def halves(obj: int) -> bool:  # a rod divides into two halves (divisions.sibling_of)
            return rod_axes(before[obj]) is not None

        def constricts(obj: int) -> bool:  # a dark rod (phase contrast) shows its halves before they part
            return halves(obj) and self.reference[obj][1] < float(np.median(image))

        means = [self.reference[obj][1] for obj in found if obj in self.reference]
        level = dark_level(float(np.mean(means)), float(np.median(image))) if means else None
        least = max(MIN_NEW_PIXELS, int(median / NEW_SIZE_RANGE))
        apart = 0 if level is None else DARK_APART
        for region in uncovered_regions(image, covered, least, level is None, level, apart):
            if (covered & region).sum() > 0.2 * region.sum():  # taken by a region accepted before
                continue
            beside = [obj for obj in pending if obj in now and other_half(region, now[obj])]
            if not self.detect_new and not beside and sibling_of(region, now, before, halves) is None:
                continue  # only siblings are looked for: skip the model for regions beside no shrunk object
            predicted = self.segmenter.predict(box=box_from_mask(region, self.stop.box_margin))
            mask = predicted.mask & ~covered
            area = int(mask.sum())
            if not median / NEW_SIZE_RANGE <= area <= median * NEW_SIZE_RANGE:
                continue
            parent, last = None, None
            if self.divisions_on and predicted.score >= ROD_HALF_SCORE:
                beside = [obj for obj in pending if obj in now and other_half(mask, now[obj])]
                centre = np.argwhere(mask).mean(axis=0)
                distance = {obj: np.hypot(*(np.argwhere(now[obj]).mean(axis=0) - centre)) for obj in beside}
                if beside:  # a rod seen in halves on the frame before and now: it divides here
                    parent = min(beside, key=distance.get)
                    last = before[parent] | pending.pop(parent)
                else:
                    parent = sibling_of(mask, now, before, halves)
                    if parent is not None and constricts(parent):  # a rod's first frame in halves: wait for the next
                        if parent not in halved:  # regions come largest first
                            halved[parent] = (index, mask)
                            covered |= mask
                        continue
                    if predicted.score < NEW_MIN_SCORE:
                        parent = None
            if parent is not None:
                del now[parent]
                splits.pop(parent, None)
                daughters = [found[parent], ObjectMask(mask, predicted.score)]
                self._divide(parent, index, daughters, image, found, previous, last=last)
            elif self.detect_new and predicted.score >= NEW_MIN_SCORE:
                obj = self.new_id()
                self.births.append((obj, index))
                self._start(obj, ObjectMask(mask, predicted.score), image, found, previous)
            else:
                continue
            covered |= mask

    def _snap(
        self,
        index: int,
        image: np.ndarray,
        found: dict[int, ObjectMask],
        before: dict[int, np.ndarray],
        priors: dict[int, np.ndarray],
        previous: dict[int, np.ndarray],
        held: dict[int, int],
        lineage: bool,
    ) -> list[int]:
        """Dark objects' masks on frame ``index`` snapped to the colony's partition
        (:mod:`fmscope.imaging.tracking.colony_partition`): when the tracked objects are dark (phase contrast: their
        reference means' mean below the frame's median; bright objects are left as they are), each followed object
        whose reference mean is below the median gets the parts it claims from its motion prior (``priors``) and
        model mask (``found``), its mask their union; an object that holds no part keeps its model mask less the
        parts others hold. With ``lineage`` (forward propagation) and divisions on, an object that held one part on
        the frame before (``held``; unknown: one) and now holds two of comparable size in line
        (:func:`~fmscope.imaging.tracking.divisions.other_half`) divides on this frame; one that holds several
        otherwise keeps the one its prior overlaps most. With ``detect_new`` a segment nothing covers (at most
        :data:`~fmscope.imaging.tracking.divisions.MAX_COVERED` of it), within :data:`NEW_SIZE_RANGE` of the tracked
        objects' median reference area, starts a track. Updates ``found``, ``previous`` and ``held`` in place;
        returns the objects found again this way (the model had lost them)."""
        background = float(np.median(image))
        means = [self.reference[obj][1] for obj in priors if obj in self.reference]
        if not means or np.mean(means) >= background:  # bright objects (fluorescence): left as they are
            return []
        dark = [
            obj
            for obj in priors
            if obj in previous  # not ended on this frame (lost too long, or left the field)
            and obj in self.reference
            and self.reference[obj][1] < background
            and index not in self.anchors.get(obj, {})
        ]
        if not dark:
            return []
        cells = float(np.mean([self.reference[obj][1] for obj in dark]))
        labels = partition(image, cells, background)
        owned = claim_segments(
            labels, {obj: priors[obj] for obj in dark}, {obj: found[obj].mask for obj in dark if obj in found}
        )
        taken = np.zeros(image.shape, bool)
        for parts in owned.values():
            for part in parts:
                taken |= part
        back = []
        for obj in dark:
            parts = owned.get(obj, [])
            if not parts:
                if obj in found:
                    found[obj] = ObjectMask(found[obj].mask & ~taken, found[obj].score)
                    previous[obj] = found[obj].mask
                held.pop(obj, None)
                continue
            if len(parts) > 1:
                pair = self._halves(parts, before.get(obj)) if len(parts) == 2 else None
                if lineage and self.divisions_on and pair is not None and held.get(obj, 1) == 1:
                    score = found[obj].score if obj in found else SNAPPED_SCORE
                    held.pop(obj, None)
                    daughters = [ObjectMask(part, score) for part in pair]
                    for daughter in self._divide(obj, index, daughters, image, found, previous):
                        held[daughter] = 1
                    continue
                if pair is None:  # not the halves of a rod: the part its prior overlaps most
                    best = int(np.argmax([int((part & priors[obj]).sum()) for part in parts]))
                    for k, part in enumerate(parts):
                        if k != best:
                            taken &= ~part
                    parts = [parts[best]]
            mask = np.logical_or.reduce(parts)
            if obj not in found:
                back.append(obj)
            found[obj] = ObjectMask(mask, found[obj].score if obj in found else SNAPPED_SCORE)
            previous[obj] = mask
            held[obj] = len(parts)
        if lineage and self.detect_new:
            areas = [self.reference[obj][0] for obj in found if obj in self.reference]
            median = float(np.median(areas)) if areas else 0.0
            covered = np.zeros(image.shape, bool)
            for result in found.values():
                covered |= result.mask
            n = int(labels.max()) + 1
            sizes = np.bincount(labels.ravel(), minlength=n)
            under = np.bincount(labels[covered | taken].ravel(), minlength=n)
            for segment in range(1, n):
                area = int(sizes[segment])
                sized = median / NEW_SIZE_RANGE <= area <= median * NEW_SIZE_RANGE
                if under[segment] > MAX_COVERED * area or not sized:
                    continue
                obj = self.new_id()
                self.births.append((obj, index))
                self._start(obj, ObjectMask(labels == segment, SNAPPED_SCORE), image, found, previous)
                held[obj] = 1
        return back

    @staticmethod
    def _halves(parts: list[np.ndarray], earlier: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """``parts`` (two bool (H, W) segments) when they are the halves of a rod: comparable in size (the smaller
        at least :data:`~fmscope.imaging.tracking.divisions.MIN_DAUGHTER_RATIO` of the larger, each at least
        :data:`~fmscope.imaging.tracking.divisions.MIN_PART_FRACTION` of ``earlier``, the object's mask on the frame
        before) and in line (:func:`~fmscope.imaging.tracking.divisions.other_half`), larger first; else None."""
        first, second = sorted(parts, key=lambda part: -int(part.sum()))
        small, large = int(second.sum()), int(first.sum())
        if small < MIN_DAUGHTER_RATIO * large:
            return None
        if earlier is not None and small < MIN_PART_FRACTION * int(earlier.sum()):
            return None
        return (first, second) if other_half(second, first) else None

    def _divide(
        self,
        parent: int,
        frame: int,
        daughters: list[ObjectMask],
        image: np.ndarray,
        found: dict[int, ObjectMask],
        previous: dict,
        recorded: tuple[np.ndarray, ...] | None = None,
        last: np.ndarray | None = None,
    ) -> list[int]:
        """Record ``parent``'s division into ``daughters`` (their masks on the current frame ``image``), the
        daughters beginning on ``frame`` with the masks ``recorded`` there (default: the daughters' own; a split
        confirmed a frame later records the first frame's), ``last`` as :class:`Division`'s; the parent leaves
        ``found`` and ``previous`` and the daughters, with new ids, are followed from here (:meth:`_start`).
        Returns the daughters' ids."""
        ids = [self.new_id() for _ in daughters]
        masks = recorded if recorded is not None else [daughter.mask for daughter in daughters]
        self.divisions.append(Division(parent, frame, dict(zip(ids, masks)), last))
        found.pop(parent, None)
        previous.pop(parent, None)
        for daughter, result in zip(ids, daughters):
            self._start(daughter, result, image, found, previous)
        return ids

    def _start(
        self, obj: int, result: ObjectMask, image: np.ndarray, found: dict[int, ObjectMask], previous: dict
    ) -> None:
        """Follow a new object (a daughter or a new track) from this frame on."""
        area = int(result.mask.sum())
        self.reference[obj] = (area, float(image[result.mask].mean()) if area else 0.0)
        found[obj], previous[obj] = result, result.mask

    def _follow(
        self,
        obj: int,
        mask: np.ndarray,
        last_image: np.ndarray,
        image: np.ndarray,
        drift: tuple[int, int],
        occupied: np.ndarray | None = None,
        priors: dict[int, np.ndarray] | None = None,
    ) -> ObjectMask | None:
        """The object's mask on the current frame from its previous mask, or None if not found; ``priors``: a
        dict the object's motion prior (bool (H, W)) is recorded in."""
        if not self.motion_prior:
            box = box_from_mask(mask, self.stop.box_margin)
            if box is None or box[2] <= box[0] or box[3] <= box[1]:
                return None
            predicted = self.segmenter.predict(box=box)
            return ObjectMask(predicted.mask, predicted.score) if predicted.mask.any() else None
        prior = shift_mask(mask, *self._object_move(obj, mask, last_image, image, drift, occupied))
        if priors is not None:
            priors[obj] = prior
        box = box_from_mask(prior, self.stop.box_margin)
        if box is None or box[2] <= box[0] or box[3] <= box[1]:
            return None
        growing = self.frames.kind != "volume"  # rods grow between frames; measured on time-lapses only
        if growing:
            box = self._lengthened(box, prior, image.shape)
        at_edge = prior[0].any() or prior[-1].any() or prior[:, 0].any() or prior[:, -1].any()
        visible = int(prior.sum()) if at_edge else None  # part of the object in view: the area to compare with
        for search in (box, self._wider(box, image.shape)):
            predicted = self._grown(search, image.shape) if growing else self.segmenter.predict(box=search)
            if self._keeps(obj, predicted.mask, predicted.score, image, visible):
                if growing:  # a time-lapse: the intensity compared with follows the object (module docstring)
                    self.reference[obj] = (self.reference[obj][0], float(image[predicted.mask].mean()))
                return ObjectMask(predicted.mask, predicted.score)
        return None

    @staticmethod
    def _lengthened(box: np.ndarray, prior: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``box`` (x0, y0, x1, y1) of a rod (``prior``, bool (H, W), :func:`rod_axes`) lengthened at both ends
        along the rod's axis by :data:`ROD_GROWTH` of its length and widened by :data:`ROD_WIDEN` of its width: a
        rod grows along its axis (the E. coli of the rods benchmark by 10-20 % a frame) and LiteMedSAM, given a box
        from last frame's mask, keeps inside it, so without this the masks shrink frame after frame (on the rods
        benchmark's frames 0-5 one cell's Dice rose from 0.59 to 0.85 with it). Other shapes: ``box`` unchanged."""
        axes = rod_axes(prior)
        if axes is None:
            return box
        length, width, axis, across = axes
        grow = ROD_GROWTH * length * axis + ROD_WIDEN * width * across
        h, w = shape
        x0, y0, x1, y1 = (float(v) for v in box)
        return np.array(
            [max(0.0, x0 - grow[0]), max(0.0, y0 - grow[1]), min(w - 1.0, x1 + grow[0]), min(h - 1.0, y1 + grow[1])]
        )

    def _grown(self, box: np.ndarray, shape: tuple[int, int]):
        """LiteMedSAM's mask from ``box``, the box grown where the mask runs into it: a side that the mask
        touches along at least :data:`CUT_FRACTION` of its length has cut the object (a rod that grew longer
        than last frame's mask, the box is taken from), so that side moves out by :data:`GROW_STEP` of the
        box's length along it and the model is asked again, at most :data:`GROW_TRIES` times."""
        predicted = self.segmenter.predict(box=box)
        h, w = shape
        for _ in range(GROW_TRIES):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            mask = predicted.mask
            if not mask.any() or x1 - x0 < 2 or y1 - y0 < 2:
                return predicted
            inside = mask[y0 : y1 + 1, x0 : x1 + 1]
            sides = (inside[:, 0], inside[0, :], inside[:, -1], inside[-1, :])  # left, top, right, bottom
            cut = [side.sum() >= max(CUT_MIN_PX, CUT_FRACTION * side.size) for side in sides]
            grow = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], float) * GROW_STEP
            limit = np.array([0, 0, w - 1, h - 1], float)
            bigger = np.where(cut, np.array(box, float) + np.array([-1, -1, 1, 1]) * grow, box)
            bigger = np.clip(bigger, 0, limit[[2, 3, 2, 3]])
            if not any(cut) or np.array_equal(bigger, np.asarray(box, float)):
                return predicted
            box, predicted = bigger, self.segmenter.predict(box=bigger)
        return predicted

    def _object_move(
        self,
        obj: int,
        mask: np.ndarray,
        last_image: np.ndarray,
        image: np.ndarray,
        drift: tuple[int, int],
        occupied: np.ndarray | None,
    ) -> tuple[int, int]:
        """(dy, dx) by which ``obj`` (``mask`` on ``last_image``) moved to reach ``image`` (module docstring). A rod
        (:func:`rod_axes`) is matched with the distance weighted on its width's scale, not its length's: rods in a
        colony lie side by side, one width apart, and a length-wide Gaussian let a look-alike neighbour win (on the
        rods benchmark's crowded frames 13-18 the per-object match scored below the global drift alone). A volume's
        slices keep the match weighted on the object's size, as they do the box as it is (unmeasured on volumes)."""
        axes = rod_axes(mask) if self.frames.kind != "volume" else None
        sigma = None if axes is None else MATCH_SIGMA * axes[1]
        return match_object(last_image, image, mask, drift, occupied, sigma)

    @staticmethod
    def _wider(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * SEARCH_GROWTH
        h, w = shape
        return np.array(
            [
                max(centre[0] - half[0], 0),
                max(centre[1] - half[1], 0),
                min(centre[0] + half[0], w - 1),
                min(centre[1] + half[1], h - 1),
            ]
        )

    def _keeps(self, obj: int, mask: np.ndarray, score: float, image: np.ndarray, visible: int | None = None) -> bool:
        """Whether a mask found for ``obj`` is still it (StopRule); ``visible``: for an object at the frame's
        edge, the area of its prior inside the frame, compared with instead of a larger prompted area."""
        area = int(mask.sum())
        key_area, key_mean = self.reference[obj]
        least = key_area if visible is None else min(key_area, visible)  # only the lower bound follows the edge
        shift = abs(float(image[mask].mean()) - key_mean) / 255.0 if area else 1.0
        return self.stop.keeps(area, least, score, shift) and area <= key_area / self.stop.min_area_fraction

    def finish(self, store: LabelStore) -> None:
        """Nothing to do: every frame's result is final."""

    def remove_object(self, obj: int) -> None:
        """Forget ``obj``'s anchors and prompts."""
        self.births = [(o, f) for o, f in self.births if o != obj]
        self.anchors.pop(obj, None)
        self.reference.pop(obj, None)
        self.prompts = {key: prompt for key, prompt in self.prompts.items() if key[0] != obj}


class DriftOnlyTracker(LiteMedSAMTracker):
    """The default tracker with a global-drift-only motion prior (no per-object move): the baseline of the rods
    benchmark (``benchmarks/tracking.py --rods``) and its test."""

    def _object_move(self, obj, mask, last_image, image, drift, occupied) -> tuple[int, int]:
        return drift
