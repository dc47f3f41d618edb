"""Replay: re-run a session's journal with the engine and compare with the labels it saved.

Box / point / refine prompts are re-run with :class:`fmscope.imaging.predictor.Segmenter` on their plane, with the
recorded intensity window and ROI-zoom crop, and painted in with the Segment panel's rule
(:func:`fmscope.session_record.paint.paint_mask`); volume propagations through
:func:`fmscope.imaging.volume.segment_volume`, or MedSAM2's 3D flow for a MedSAM2 / SAM2.1 session
(:mod:`fmscope.session_record.propagate`); the Track panel's prompts and propagations on a tracking session with the
same engine (:mod:`fmscope.session_record.tracking`, which also undoes the engine's steps; the engines:
:mod:`fmscope.session_record.engine`). Every other action (hand painting, undo, division edits) is applied from the
pixels the journal recorded for it; a ``train`` action is not re-run (it only names the weights it wrote).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.session_record.action import PROMPT_KINDS, PROPAGATE, TRACK, Action
from fmscope.session_record.engine import engine_identity, is_sam2, tracking_sessions
from fmscope.session_record.identity import ImageIdentity
from fmscope.session_record.journal import Journal
from fmscope.session_record.paint import paint_mask
from fmscope.session_record.propagate import propagate_action
from fmscope.session_record.recorder import check_identity, restore
from fmscope.session_record.snapshot import START, read_snapshot
from fmscope.session_record.tracking import TrackReplay

if TYPE_CHECKING:
    from fmscope.session_record.engine import Engine


@dataclass
class ReplayResult:
    """``labels`` from the replay; ``saved``: the labels the session saved; ``rerun`` / ``from_record``: how many
    actions were re-run with the model / applied from recorded pixels; ``dice``: {object id: Dice of the replayed
    object against the saved one} for the objects that differ (empty when ``identical``)."""

    labels: np.ndarray
    saved: np.ndarray
    rerun: int
    from_record: int
    dice: dict[int, float] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return bool(np.array_equal(self.labels, self.saved))


def _intensity(action: Action):
    from fmscope.imaging.intensity import Intensity

    return None if action.window is None else Intensity(*action.window)


def _identity(journal: Journal, image: np.ndarray | str | Path, image_path: str | Path | None) -> ImageIdentity:
    recorded = ImageIdentity.from_json(journal.meta("image"))
    if not recorded.by_file:
        return ImageIdentity.of(np.asarray(image), image_path)
    path = image_path or (image if isinstance(image, (str, Path)) else None)
    if path is None:
        raise FmscopeError(
            f"The session {journal.folder} identifies its image by its file ({recorded.path}); no file was given.",
            "Give the image file the session was made on.",
        )
    return ImageIdentity.of_file(path, recorded.shape, recorded.dtype)


def replay(
    folder: str | Path,
    image: np.ndarray | str | Path,
    segmenter: Engine,
    image_path: str | Path | None = None,
    trained: Mapping[str, Engine] | None = None,
) -> ReplayResult:
    """Re-run the session in ``folder`` on ``image`` (the pixels it was made on; for a session that identifies its
    image by file, a video or cine read on demand, that file's path) with ``segmenter``: the session's model and
    weights, a :class:`~fmscope.imaging.predictor.Segmenter` or for MedSAM2 / SAM2.1 a
    :class:`~fmscope.imaging.tracking.sam2_model.LoadedSam2` (:func:`fmscope.session_record.engine.load_engine`); its
    backend and precision may differ, then the labels may too. ``trained``: {weights_sha256: engine} for the model
    files the session's training runs wrote, which its later actions used
    (:func:`fmscope.session_record.training.check_trained_weights` finds and checks them). Returns a
    :class:`ReplayResult`. Raises :class:`FmscopeError` for another image or other weights (as :func:`resume`)."""
    trained = dict(trained or {})
    journal = Journal(folder)
    try:
        check_identity(journal, _identity(journal, image, image_path), engine_identity(segmenter))
        saved = restore(journal)[0]
        shape, dtype = journal.meta("labels_shape"), journal.meta("labels_dtype")
        labels = np.array(read_snapshot(journal.folder, START, shape, dtype), copy=True)
        rerun = from_record = 0
        current_plane: tuple | None = None
        tracking: TrackReplay | None = None  # from the first tracking action on
        for _seq, action, delta in journal.actions():
            if action.kind == TRACK and tracking is None:
                tracking = TrackReplay(
                    tracking_sessions(image if isinstance(image, np.ndarray) else str(image), segmenter)
                )
            if tracking is not None:
                rerun_now = tracking.apply(labels, action, delta)
                rerun, from_record = rerun + rerun_now, from_record + (not rerun_now)
                continue
            engine = trained.get(action.weights_sha256, segmenter)
            if action.kind == PROPAGATE:
                propagate_action(labels, image, action, engine)
                current_plane = None  # segment_volume set its own slices
                rerun += 1
                continue
            if action.kind not in PROMPT_KINDS:
                delta.apply(labels)
                from_record += 1
                continue
            if is_sam2(segmenter) or not isinstance(image, np.ndarray):
                raise FmscopeError(
                    f"The session holds a 2D '{action.kind}' prompt, which "
                    f"{engine_identity(segmenter).name} sessions never record.",
                    "The journal was changed by hand; replay the session it came from.",
                )
            key = (action.plane, action.window, action.weights_sha256)
            if key != current_plane:
                engine.set_image(image[action.plane] if action.plane else image, _intensity(action))
                current_plane = key
            result = engine.predict(
                box=action.box,
                points=[list(p) for p in action.points] or None,
                labels=list(action.point_labels) or None,
                crop=action.crop,
            )
            paint_mask(labels[action.plane] if action.plane else labels, action.object_id, result.mask)
            rerun += 1
    finally:
        journal.close()
    outcome = ReplayResult(labels, saved, rerun, from_record)
    if not outcome.identical:
        from fmscope.metrics import dice  # scipy: only when there is a difference to measure

        for object_id in np.union1d(np.unique(labels), np.unique(saved)):
            if object_id and not np.array_equal(labels == object_id, saved == object_id):
                outcome.dice[int(object_id)] = dice(labels == object_id, saved == object_id)
    return outcome
