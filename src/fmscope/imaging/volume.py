"""3D: segment objects on a key slice, then propagate slice by slice in both directions.

Each next box comes from the previous slice's mask (grown by a small margin), as in the
official MedSAM/LiteMedSAM 3D inference; every slice is embedded once and all objects on
it are decoded in one batch. An object stops when its mask vanishes, shrinks below a
fraction of its key-slice area, the model's confidence drops, or the mask's mean intensity
moves away from the key slice's (past the object's end the model tends to outline whatever
lies in the box, e.g. lung air next to a tumour) (:class:`StopRule`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from fmscope.errors import FmscopeError
from fmscope.imaging.image_input import is_blank
from fmscope.imaging.intensity import Intensity, resolve_intensity
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.prompts import box_from_mask, validate_box

DIRECTIONS = ("both", "up", "down")


@dataclass(frozen=True)
class StopRule:
    """When propagation of one object ends."""

    min_area_fraction: float = 0.1  # of the object's area on the key slice
    min_score: float = 0.5  # the model's IoU estimate
    max_intensity_shift: float = 0.25  # |mean - key-slice mean| as a fraction of the mapped 0..255 range
    box_margin: float = 2.0  # pixels added around the previous mask's box

    def keeps(self, area: int, key_area: int, score: float, intensity_shift: float) -> bool:
        """Whether a slice's mask still belongs to the object."""
        return (
            area > 0
            and area >= self.min_area_fraction * key_area
            and score >= self.min_score
            and intensity_shift <= self.max_intensity_shift
        )


def _validate_volume(volume: np.ndarray) -> np.ndarray:
    array = np.asarray(volume)
    if array.ndim != 3:
        raise FmscopeError(
            f"segment_volume needs a 3D (z, y, x) array, got shape {array.shape}.",
            "Use Segmenter for 2D images; select one channel / time point of 4D data.",
        )
    if array.shape[0] < 1 or min(array.shape[1:]) < 2:
        raise FmscopeError(f"The volume is empty (shape {array.shape}).", "Pass a non-empty volume.")
    if array.dtype.kind == "f" and not np.isfinite(array).any():
        raise FmscopeError(
            "The volume holds no finite values (all NaN or infinite).", "Check that the right volume was loaded."
        )
    return array


def segment_volume(
    volume: np.ndarray,
    key_slice: int,
    boxes: Sequence[float] | Mapping[int, Sequence[float]],
    segmenter: Segmenter | None = None,
    window: str | tuple[float, float] | Intensity | None = None,
    direction: str = "both",
    slice_range: tuple[int, int] | None = None,
    stop: StopRule = StopRule(),
    progress: bool = False,
    on_slice: Callable[[int, int], None] | None = None,
    key_masks: Mapping[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Label volume (uint16, same shape as ``volume``) grown from boxes on ``key_slice``.

    ``boxes``: one [x0, y0, x1, y1] box (label 1) or ``{label: box}`` for several objects.
    ``direction``: ``"both"``, ``"up"`` (increasing z) or ``"down"``. ``slice_range``:
    inclusive (first, last) z limits. The intensity mapping (``window`` or the volume's
    percentiles) is computed once for the whole volume so slices stay comparable.
    ``on_slice(done, total)`` is called after every slice; raising
    :class:`fmscope.errors.Cancelled` from it stops the work. ``key_masks``: ``{label: (H, W)
    bool mask}`` for objects already outlined on the key slice (e.g. refined with clicks); those
    are kept as they are on the key slice and propagated from, instead of re-segmented from
    their box (each needs an entry in ``boxes`` too).
    """
    array = _validate_volume(volume)
    depth = array.shape[0]
    if not 0 <= key_slice < depth:
        raise FmscopeError(
            f"Key slice {key_slice} is outside the volume's 0..{depth - 1}.", f"Give --slice between 0 and {depth - 1}."
        )
    if direction not in DIRECTIONS:
        raise FmscopeError(f"Unknown direction '{direction}'.", f"Use one of: {', '.join(DIRECTIONS)}.")
    first, last = (0, depth - 1) if slice_range is None else (int(slice_range[0]), int(slice_range[1]))
    if not 0 <= first <= key_slice <= last < depth:
        raise FmscopeError(
            f"Slice range {first}..{last} must lie in 0..{depth - 1} and contain the key slice {key_slice}.",
            "Adjust the range or the key slice.",
        )
    prompts = dict(boxes) if isinstance(boxes, Mapping) else {1: boxes}
    if not prompts or any(int(label) < 1 for label in prompts):
        raise FmscopeError("Give at least one box, with labels >= 1.", "Example: {1: [x0, y0, x1, y1]}.")
    shape = array.shape[1:]
    prompts = {int(label): validate_box(box, shape) for label, box in prompts.items()}
    given = {int(label): np.asarray(mask, dtype=bool) for label, mask in (key_masks or {}).items()}
    if any(label not in prompts or mask.shape != shape for label, mask in given.items()):
        raise FmscopeError(
            f"key_masks must be (H, W) = {shape} masks of labels that have a box.",
            "Give each key mask with its label's box, on the key slice's grid.",
        )

    segmenter = segmenter if segmenter is not None else Segmenter()
    intensity = resolve_intensity(array, window)
    labels = np.zeros(array.shape, dtype=np.uint16)

    def segment_slice(z: int, slice_boxes: dict[int, np.ndarray]) -> dict[int, tuple[np.ndarray, float, float]]:
        """{label: (mask, score, mean mapped intensity in the mask)} on slice z."""
        segmenter.set_image(array[z], window=intensity)
        mapped = segmenter.mapped_image[..., 0]  # grayscale slices: every channel holds the mapping
        results = segmenter.predict_many(list(slice_boxes.values()))
        out = {}
        for label, result in zip(slice_boxes, results):
            mask = result.mask & (labels[z] == 0)
            out[label] = (mask, result.score, float(mapped[mask].mean()) if mask.any() else 0.0)
        return out

    to_segment = {label: box for label, box in prompts.items() if label not in given}
    key_results = segment_slice(key_slice, to_segment) if to_segment else {}
    if given:
        segmenter.set_image(array[key_slice], window=intensity)
        mapped = segmenter.mapped_image[..., 0]
        for label, mask in given.items():
            key_results[label] = (mask, 1.0, float(mapped[mask].mean()) if mask.any() else 0.0)
    key_areas, key_means = {}, {}
    for label, (mask, _, mean) in key_results.items():
        labels[key_slice][mask] = label
        key_areas[label], key_means[label] = int(mask.sum()), mean

    steps = {"up": [range(key_slice + 1, last + 1)], "down": [range(key_slice - 1, first - 1, -1)]}
    sweeps = steps["up"] + steps["down"] if direction == "both" else steps[direction]
    total = 1 + sum(len(s) for s in sweeps)
    done = 1
    if on_slice is not None:
        on_slice(done, total)
    with tqdm(total=total - 1, desc="propagating", unit="slice", disable=not progress, leave=False) as bar:
        for sweep in sweeps:
            previous = {label: mask for label, (mask, _, _) in key_results.items() if key_areas[label] > 0}
            for z in sweep:
                boxes_here = {}
                for label, mask in previous.items():
                    box = box_from_mask(mask, stop.box_margin)
                    if box is not None and box[2] > box[0] and box[3] > box[1]:
                        boxes_here[label] = box
                if not boxes_here or is_blank(array[z]):
                    break  # nothing left to follow, or a slice of padding / air: the objects end here
                previous = {}
                for label, (mask, score, mean) in segment_slice(z, boxes_here).items():
                    shift = abs(mean - key_means[label]) / 255.0
                    if stop.keeps(int(mask.sum()), key_areas[label], score, shift):
                        labels[z][mask] = label
                        previous[label] = mask
                bar.update(1)
                done += 1
                if on_slice is not None:
                    on_slice(done, total)
    return labels
