"""A recorded volume propagation, re-run: the napari Segment panel's Propagate (fmscope.napari.segment_widget).

The action (kind ``propagate``) carries ``plane`` = (key slice,), ``object_id``, ``box`` (x0, y0, x1, y1 on the key
slice, used when the object has no pixels there yet), ``window`` and ``params`` {"range": [first, last] (inclusive
z), "direction": "both" | "up" | "down"}. As in the panel, the object's mask on the key slice, when it has one, is
kept and propagated from; every slice of the range on the propagated side(s) is then painted with :func:`paint_mask`
(the key slice too when it was segmented from the box).

A propagation made with MedSAM2 / SAM2.1 (the action's ``model``; the 3D Slicer module's MedSAM2 choice) is re-run
with MedSAM2's 3D flow (:func:`fmscope.imaging.tracking.volume.track_volume`: a box, or the key slice's mask, on the
key slice), its frames mapped with the recorded ``window`` (:func:`fmscope.session_record.engine.window_mapping`).

Optional params, from the 3D Slicer module (slicer_extension/FMScope): ``"axes"``, the transpose of the labels /
volume axes that puts the slices first (Slicer propagates along any IJK axis; default: axis 0 is the slice axis);
``"replace": true``, the object is cleared everywhere and re-segmented from the box (Slicer's *Overwrite segment*).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.session_record.action import Action
from fmscope.session_record.engine import is_sam2, window_mapping
from fmscope.session_record.paint import paint_mask

if TYPE_CHECKING:
    from fmscope.session_record.engine import Engine


def propagate_action(labels: np.ndarray, volume: np.ndarray, action: Action, segmenter: Engine) -> None:
    """Re-run the propagation ``action`` on ``volume`` (Z, H, W) into ``labels`` (Z, H, W, in place) with
    ``segmenter`` (a Segmenter, or a LoadedSam2 for a MedSAM2 / SAM2.1 action)."""
    from fmscope.imaging.intensity import Intensity
    from fmscope.imaging.prompts import box_from_mask
    from fmscope.imaging.volume import segment_volume

    if volume.ndim != 3 or len(action.plane) != 1 or "range" not in action.params:
        raise FmscopeError(
            f"The propagate action on plane {action.plane} of a {volume.shape} image lacks its key slice or range.",
            "Record propagations with plane=(key slice,) and params={'range': [first, last]}.",
        )
    if "axes" in action.params:  # views: painting them paints ``labels``
        volume, labels = volume.transpose(action.params["axes"]), labels.transpose(action.params["axes"])
    key = action.plane[0]
    first, last = (int(z) for z in action.params["range"])
    obj = action.object_id
    if action.params.get("replace"):
        labels[labels == obj] = 0
    key_mask = labels[key] == obj
    kept = {obj: key_mask} if key_mask.any() else {}
    box = box_from_mask(key_mask) if kept else action.box
    direction = action.params.get("direction", "both")
    if is_sam2(segmenter):
        from fmscope.imaging.tracking.volume import track_volume

        result = track_volume(
            volume,
            key,
            {} if kept else {obj: box},
            model=segmenter.name,
            direction=direction,
            slice_range=(first, last),
            key_masks=kept,
            loaded=segmenter,
            intensity=None if action.window is None else window_mapping(action.window),
        )
    else:
        result = segment_volume(
            volume,
            key,
            {obj: box},
            segmenter=segmenter,
            window=None if action.window is None else Intensity(*action.window),
            direction=direction,
            slice_range=(first, last),
            key_masks=kept,
        )
    low = first if direction in ("both", "down") else key
    high = last if direction in ("both", "up") else key
    for z in range(low, high + 1):
        if not (kept and z == key):
            paint_mask(labels[z], obj, result[z] == obj)
