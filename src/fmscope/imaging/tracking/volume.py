"""MedSAM2's 3D flow on a volume: boxes (or masks) on a key slice, tracked through z.

The one implementation behind ``fmscope volume --model medsam2|sam2.1_*`` and the 3D Slicer
module's MedSAM2 choice: a :class:`~fmscope.imaging.tracking.TrackingSession` over the volume
(z = frame axis, ``kind="volume"``: two states, forward and backward from the key slice, each
object's largest 3D connected component), run to the end and returned as a label volume.
No Qt, no Slicer: front ends pass arrays and get arrays back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.imaging.io import Volume
from fmscope.imaging.tracking.frames import volume_frames
from fmscope.imaging.tracking.session import TrackingSession
from fmscope.models import DEFAULT_VOLUME_TRACKER, VOLUME, names, volume_flow
from fmscope.progress import Progress, as_progress

SAM2_MODELS = tuple(name for name in names(VOLUME) if volume_flow(name) == "tracking")  # models with a 3D flow
# fmscope volume's directions (segment_volume's) -> the tracking session's
VOLUME_DIRECTIONS = {"both": "both", "up": "forward", "down": "backward"}
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def track_volume(
    volume: Volume | np.ndarray,
    key_slice: int,
    boxes: Sequence[float] | Mapping[int, Sequence[float]] | None = None,
    model: str = DEFAULT_VOLUME_TRACKER,
    checkpoint: str | os.PathLike | None = None,
    window: str | tuple[float, float] | None = None,
    device: str | None = None,
    direction: str = "both",
    slice_range: tuple[int, int] | None = None,
    key_masks: Mapping[int, np.ndarray] | None = None,
    progress: Progress | None = None,
    name: str = "the volume",
    loaded=None,
    backend: str | None = None,
    precision: str = "fp32",
    intensity=None,
) -> np.ndarray:
    """uint16 (z, y, x) labels tracked from prompts on ``key_slice`` with a MedSAM2 / SAM2.1 model.

    ``boxes``: one [x0, y0, x1, y1] box (object 1) or ``{object: box}``; ``key_masks``:
    ``{object: (y, x) bool mask}`` prompts instead of (or besides) boxes, e.g. a slice the user
    corrected by hand. ``direction``: ``"both"``, ``"up"`` (increasing z) or ``"down"``;
    ``slice_range``: inclusive (first, last) z limits. ``progress`` is told ``(done, total,
    "tracking")`` after every slice and raises :class:`fmscope.errors.Cancelled` once its job is
    cancelled (nothing is returned then). A plain array is taken as a volume of
    unit spacing (the geometry does not change the masks). ``loaded``: a model already loaded with
    :func:`fmscope.imaging.tracking.sam2_model.load_sam2` (a front end keeps one between runs);
    else ``checkpoint`` is loaded, its image encoder on ``backend`` at ``precision`` (:func:`load_sam2`).
    ``intensity``: with ``loaded``, the exact :class:`~fmscope.imaging.tracking.preprocess.MinMaxTo8Bit` mapping to
    use instead of the one ``window`` gives (a replayed session's, :mod:`fmscope.session_record.engine`).
    """
    if model not in SAM2_MODELS:
        raise FmscopeError(f"'{model}' has no 3D tracking flow.", f"Use one of: {', '.join(SAM2_MODELS)}.")
    if direction not in VOLUME_DIRECTIONS:
        raise FmscopeError(f"Unknown direction '{direction}'.", f"Use one of: {', '.join(VOLUME_DIRECTIONS)}.")
    if not isinstance(volume, Volume):
        array = np.asarray(volume)
        volume = Volume(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), IDENTITY)
    prompts = {} if boxes is None else (dict(boxes) if isinstance(boxes, Mapping) else {1: boxes})
    masks = dict(key_masks or {})
    if not prompts and not masks:
        raise FmscopeError("No prompt given.", "Give a box (or a mask) on the key slice.")
    frames = volume_frames(volume, name=name)
    backend_name, backend = backend, None
    if loaded is not None:
        from fmscope.imaging.tracking.medsam2 import Sam2Tracker

        backend = Sam2Tracker(frames, model=model, window=window, device=device, loaded=loaded, intensity=intensity)
    session = TrackingSession(
        frames,
        model=model,
        checkpoint=checkpoint,
        window=window,
        device=device,
        backend=backend,
        precision=precision,
        inference_backend=backend_name,
    )
    for obj, box in prompts.items():
        if obj not in masks:
            session.add_box(key_slice, obj, box)
    for obj, mask in masks.items():
        session.add_mask(key_slice, obj, mask)
    for _ in session.propagate(VOLUME_DIRECTIONS[direction], slice_range, progress=as_progress(progress)):
        pass
    return session.labels()
