"""A tracking session: prompts for objects on frames, propagation as a generator, labels out.

One API for every model that can track (:mod:`fmscope.models`: LiteMedSAM, MedSAM2, SAM2.1, model files)::

    session = TrackingSession(open_frames("cine.dcm"), model=DEFAULT_VOLUME_TRACKER, checkpoint="MedSAM2_latest.pt")
    session.add_box(frame=0, obj=1, box=[x0, y0, x1, y1])
    for result in session.propagate("both"):      # one FrameResult per frame, as soon as it is ready
        show(result.frame, result.labels, result.done, result.total)
    labels = session.labels()                      # uint16 (T, H, W); objects never overlap

A prompt on a frame the object was already tracked on is a *correction*: the next
``propagate()`` re-runs that object's direction from the corrected frame only up to the
object's next prompted frame. Propagation reports each frame to a
:class:`fmscope.progress.Progress` and stops after the current frame when its job is cancelled
(:class:`fmscope.errors.Cancelled` is raised), or when the caller stops iterating; frames done so
far are kept in the session. Overlaps: see :mod:`fmscope.imaging.tracking.results`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.imaging.prompts import validate_box, validate_points
from fmscope.imaging.tracking.frames import FrameSource, LazyStackFrames, open_frames
from fmscope.imaging.tracking.lineage import Lineage
from fmscope.imaging.tracking.prompt import Prompt
from fmscope.imaging.tracking.results import LabelStore, ObjectMask
from fmscope.models import DEFAULT_SEGMENTER, TRACK, can, choices_text, volume_flow
from fmscope.progress import Progress, as_progress

DIRECTIONS = ("both", "forward", "backward")
MAX_OBJECT_ID = 65535  # labels are uint16


@dataclass
class FrameResult:
    """One frame's labels after an update, the updated objects' scores, and progress (done of total)."""

    frame: int
    labels: np.ndarray  # uint16 (H, W)
    scores: dict[int, float]
    done: int
    total: int


class TrackingStopped(FmscopeError):
    """Propagation failed on one frame (unreadable, damaged ...): ``frame`` is its index and ``done``
    the number of frames finished before it in this propagate() call, which stay in the session."""

    def __init__(self, frame: int, done: int, error: FmscopeError) -> None:
        self.frame, self.done = frame, done
        super().__init__(
            f"Tracking stopped at frame {frame} ({done} frame(s) tracked before it): {error.problem}", error.fix
        )


class TrackerBackend(Protocol):
    """What a model provides to the session (MedSAM2 / SAM2.1: Sam2Tracker; default: LiteMedSAMTracker)."""

    def add_prompt(
        self, frame: int, obj: int, prompt: Prompt, reverse: bool | None, append: bool
    ) -> dict[int, ObjectMask]: ...

    def propagate(self, start: int, stop: int, reverse: bool) -> Iterator[tuple[int, dict[int, ObjectMask]]]: ...

    def finish(self, store: LabelStore) -> None: ...

    def remove_object(self, obj: int) -> None: ...


def make_backend(
    frames: FrameSource,
    model: str,
    checkpoint: str | os.PathLike | None,
    window: str | tuple[float, float] | None,
    device: str | None,
    precision: str = "fp32",
    inference_backend: str | None = None,
) -> TrackerBackend:
    """The tracking backend for catalogue name ``model`` (:mod:`fmscope.models`, capability ``track``), or for an
    fmscope model file (a segmenter fine-tuned by ``fmscope train-segmenter``: it tracks as the default tracker
    does, per frame). ``precision``: the image encoder's (``"fast"``: bfloat16) and ``inference_backend`` its
    runtime (``torch`` / ``openvino`` / ``auto``, see :mod:`fmscope.backends`); sam2 models run their other parts
    on torch. Raises FmscopeError for a model that cannot track."""
    if not can(model, TRACK):
        raise FmscopeError(f"'{model}' cannot track.", f"Use one of: {choices_text(TRACK)}.")
    if volume_flow(model) != "tracking":  # the default tracker, per frame: LiteMedSAM and model files
        from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker

        return LiteMedSAMTracker(
            frames,
            model=model,
            checkpoint=checkpoint,
            window=window,
            device=device,
            precision=precision,
            inference_backend=inference_backend,
        )
    from fmscope.imaging.tracking.medsam2 import Sam2Tracker

    return Sam2Tracker(
        frames,
        model=model,
        checkpoint=checkpoint,
        window=window,
        device=device,
        backend=inference_backend,
        precision=precision,
    )


class TrackingSession:
    """Track objects through ``frames`` (a :class:`FrameSource`, path or (T, H, W[, 3]) array)."""

    def __init__(
        self,
        frames: FrameSource | str | os.PathLike | np.ndarray,
        model: str = DEFAULT_SEGMENTER,
        checkpoint: str | os.PathLike | None = None,
        window: str | tuple[float, float] | None = None,
        device: str | None = None,
        backend: TrackerBackend | None = None,
        precision: str = "fp32",
        inference_backend: str | None = None,
        divisions: bool = False,
        detect_new: bool = False,
    ) -> None:
        """``divisions``: while propagating forward, end an object that divides and start its two daughters
        (new ids, the parent recorded in :attr:`lineage`); ``detect_new``: start a track for each new object
        found on a later frame. Both need the default tracker (FmscopeError otherwise)."""
        self.frames = open_frames(frames)
        if isinstance(self.frames, LazyStackFrames):  # huge frames: refused before a model loads (track a window)
            raise self.frames.too_large()
        self.model = model
        self.backend = (
            backend
            if backend is not None
            else make_backend(self.frames, model, checkpoint, window, device, precision, inference_backend)
        )
        self.store = LabelStore(self.frames.n_frames, self.frames.shape)
        self.prompts: dict[int, dict[int, Prompt]] = {}  # object -> frame -> prompt
        self.tracked: dict[int, dict[int, bool]] = {}  # object -> frame -> tracked in reverse
        self._corrections: list[tuple[int, int]] = []  # (object, frame) awaiting re-propagation
        self.lineage = Lineage()  # daughter -> parent (divisions)
        self._issued: set[int] = set()  # ids given to daughters and new objects
        if divisions or detect_new:
            enable = getattr(self.backend, "enable_lineage", None)
            if enable is None:
                raise FmscopeError(
                    f"Divisions and new objects are found by the default tracker ({DEFAULT_SEGMENTER}); "
                    f"{model} does not find them.",
                    f"Leave out --divisions / --detect-new, or track with --model {DEFAULT_SEGMENTER}.",
                )
            enable(divisions, detect_new, self._new_id)

    # prompts -------------------------------------------------------------------------------------
    def add_box(self, frame: int, obj: int, box) -> FrameResult:
        """Box [x0, y0, x1, y1] (pixels) for object ``obj`` on ``frame``; replaces that frame's prompt."""
        self._check(frame, obj)
        return self._prompt(frame, obj, Prompt(box=validate_box(box, self.frames.shape)), append=False)

    def add_points(self, frame: int, obj: int, points, labels=None) -> FrameResult:
        """Clicks (x, y) with labels 1 (object) / 0 (background); added to the frame's earlier clicks."""
        self._check(frame, obj)
        coords, flags = validate_points(points, labels, self.frames.shape)
        if len(coords) == 0:
            raise FmscopeError("No points given.", "Give at least one point X Y.")
        return self._prompt(frame, obj, Prompt(points=coords, labels=flags), append=True)

    def add_mask(self, frame: int, obj: int, mask: np.ndarray) -> FrameResult:
        """A bool (H, W) mask for ``obj`` on ``frame``."""
        self._check(frame, obj)
        mask = np.asarray(mask).astype(bool)
        if mask.shape != self.frames.shape or not mask.any():
            raise FmscopeError(
                f"The mask has shape {mask.shape} with {int(mask.sum())} pixels set; the frames "
                f"are {self.frames.shape}.",
                "Give a non-empty mask of the frame's size.",
            )
        return self._prompt(frame, obj, Prompt(mask=mask), append=False)

    def _check(self, frame: int, obj: int) -> None:
        n = self.frames.n_frames
        if not 0 <= int(frame) < n:
            raise FmscopeError(
                f"Frame {frame} is outside {self.frames.name} (frames 0..{n - 1}).",
                f"Give a frame between 0 and {n - 1}.",
            )
        if not 1 <= int(obj) <= MAX_OBJECT_ID:
            raise FmscopeError(f"Object id {obj} is not in 1..{MAX_OBJECT_ID}.", "Number objects from 1.")

    def _prompt(self, frame: int, obj: int, prompt: Prompt, append: bool) -> FrameResult:
        frame, obj = int(frame), int(obj)
        reverse = self.tracked.get(obj, {}).get(frame)
        existing = self.prompts.get(obj, {}).get(frame)
        append = append and existing is not None and existing.mask is None
        objects = self.backend.add_prompt(frame, obj, prompt, reverse, append)
        if append:
            prompt = Prompt(
                existing.box,
                np.concatenate([existing.points, prompt.points]) if existing.points is not None else prompt.points,
                np.concatenate([existing.labels, prompt.labels]) if existing.labels is not None else prompt.labels,
            )
        self.prompts.setdefault(obj, {})[frame] = prompt
        if reverse is not None:
            self._corrections.append((obj, frame))
        labels = self.store.update(frame, objects)
        return FrameResult(frame, labels, {k: v.score for k, v in objects.items()}, 1, 1)

    # propagation ---------------------------------------------------------------------------------
    def propagate(
        self,
        direction: str = "both",
        frame_range: tuple[int, int] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[FrameResult]:
        """Yield a :class:`FrameResult` per frame as it is tracked.

        Objects never propagated yet: ``forward`` from the first prompted frame to the range's
        end, ``backward`` from there to the range's start, ``both`` one then the other. Pending
        corrections: from each corrected frame to the object's next prompted frame (in the
        direction that frame was tracked). ``frame_range``: inclusive (first, last). ``progress``: told
        ``(done, total, "tracking")`` after each frame is yielded; raises Cancelled once cancelled.
        """
        if direction not in DIRECTIONS:
            raise FmscopeError(f"Unknown direction '{direction}'.", f"Use one of: {', '.join(DIRECTIONS)}.")
        if not self.prompts:
            raise FmscopeError("No prompts yet.", "Add a box, points or a mask on a frame first.")
        n = self.frames.n_frames
        first, last = (0, n - 1) if frame_range is None else (int(frame_range[0]), int(frame_range[1]))
        if not 0 <= first <= last < n:
            raise FmscopeError(
                f"Frame range {first}..{last} is not within 0..{n - 1}.", f"Give FIRST <= LAST between 0 and {n - 1}."
            )
        passes = self._plan(direction, first, last)
        total = sum(abs(stop - start) + 1 for start, stop, _ in passes)
        progress = as_progress(progress)
        progress.update(0, total, "tracking")
        done = 0
        for start, stop, reverse in passes:
            current = start  # the frame being tracked, named if it fails
            try:
                for frame, objects in self.backend.propagate(start, stop, reverse):
                    revised = self._take_divisions(frame)
                    for obj in objects:
                        self.tracked.setdefault(obj, {})[frame] = reverse
                    labels = self.store.update(frame, objects)
                    done += 1
                    current = frame + (-1 if reverse else 1)
                    for earlier in revised:  # a division found now that began on an earlier frame
                        yield FrameResult(earlier, self.store.frame(earlier), {}, done - 1, total)
                    yield FrameResult(frame, labels, {k: v.score for k, v in objects.items()}, done, total)
                    progress.update(done, total, "tracking")
            except TrackingStopped:
                raise
            except FmscopeError as error:
                raise TrackingStopped(current, done, error) from None
        self._corrections.clear()
        self.backend.finish(self.store)

    def _plan(self, direction: str, first: int, last: int) -> list[tuple[int, int, bool]]:
        """(start, stop, reverse) passes for this propagate() call."""
        fresh = [obj for obj in self.prompts if obj not in self.tracked]
        if fresh or not self._corrections:
            prompted = [f for obj in self.prompts for f in self.prompts[obj] if first <= f <= last]
            if not prompted:
                raise FmscopeError(
                    f"No prompt lies in the frame range {first}..{last}.",
                    "Widen the range or prompt a frame inside it.",
                )
            start = min(prompted)
            passes = []
            if direction in ("both", "forward"):
                passes.append((start, last, False))
            if direction in ("both", "backward") and start > first:
                passes.append((start, first, True))
            return passes
        passes = []
        for obj, frame in self._corrections:
            reverse = self.tracked[obj][frame]
            later = [f for f in self.prompts[obj] if (f < frame if reverse else f > frame)]
            if reverse:
                stop = max([first] + [f + 1 for f in later])
            else:
                stop = min([last] + [f - 1 for f in later])
            passes.append((frame, max(min(stop, last), first), reverse))
        return passes

    # lineage -------------------------------------------------------------------------------------
    def _new_id(self) -> int:
        """A free object id for a daughter or a new object."""
        used = set(self.prompts) | set(self.tracked) | self._issued | set(self.lineage.parents)
        new = max(used, default=0) + 1
        if new > MAX_OBJECT_ID:
            raise FmscopeError(f"No object id is left in 1..{MAX_OBJECT_ID}.", "Track fewer objects.")
        self._issued.add(new)
        return new

    def _take_divisions(self, frame: int) -> list[int]:
        """Record the divisions the backend found (parents in :attr:`lineage`); a division that began on a
        frame before ``frame`` relabels that frame (the parent's pixels there become its daughters'), and one
        with the parent's mask on its last frame (:attr:`~fmscope.imaging.tracking.divisions.Division.last`)
        relabels that frame. Returns the frames so revised."""
        found = getattr(self.backend, "divisions", None)
        revised = []
        while found:
            division = found.pop(0)
            for daughter, mask in division.daughters.items():
                self.lineage.link(daughter, division.parent)
                self.tracked.setdefault(daughter, {})[division.frame] = False
            if division.last is not None:  # the parent's mask on its last frame changes (a rod seen in halves)
                score = self.store.scores.get(division.frame - 1, {}).get(division.parent, 1.0)
                self.store.update(division.frame - 1, {division.parent: ObjectMask(division.last, score)})
                revised.append(division.frame - 1)
            if division.frame != frame:
                score = self.store.scores.get(division.frame, {}).get(division.parent, 1.0)
                parts = {division.parent: ObjectMask(np.zeros(self.frames.shape, bool), 0.0)}
                parts.update({d: ObjectMask(m, score) for d, m in division.daughters.items()})
                self.store.update(division.frame, parts)
                revised.append(division.frame)
        return revised

    def remove_division(self, parent: int) -> list[int]:
        """Undo the division of ``parent``: its daughters' pixels become the parent's again (it goes on
        through their frames) and the daughters are forgotten. Returns the frames changed. Raises
        FmscopeError when ``parent`` has no daughters, a daughter divided again (undo that first) or a
        daughter was prompted (remove that object instead)."""
        parent = int(parent)
        daughters = self.lineage.daughters(parent)
        if not daughters:
            raise FmscopeError(f"Object {parent} has no recorded division.", "Pick the parent of a division.")
        later = [d for d in daughters if self.lineage.daughters(d)]
        if later:
            raise FmscopeError(
                f"Daughter {later[0]} of object {parent} divided again.", f"Undo the division of {later[0]} first."
            )
        prompted = [d for d in daughters if d in self.prompts]
        if prompted:
            raise FmscopeError(
                f"Daughter {prompted[0]} of object {parent} was prompted; merging it would drop its prompts.",
                f"Remove object {prompted[0]} instead, or keep the division.",
            )
        frames = sorted({f for d in daughters for f in self.store.object_frames(d)})
        for index in frames:
            labels, scores = self.store.frame(index), dict(self.store.scores.get(index, {}))
            here = [scores.pop(d) for d in daughters if d in scores]
            labels[np.isin(labels, daughters)] = parent
            scores[parent] = max(here + [scores.get(parent, 0.0)])
            self.store.set_frame(index, labels, scores)
        for daughter in daughters:
            self.lineage.unlink(daughter)
            self.tracked.setdefault(parent, {}).update(self.tracked.pop(daughter, {}))
            self.backend.remove_object(daughter)
        return frames

    def remove_object(self, obj: int) -> list[int]:
        """Forget object ``obj``: its prompts, its tracking and its pixels; returns the frames it was on."""
        obj = int(obj)
        self.backend.remove_object(obj)
        frames = sorted(self.store.object_frames(obj))
        for index in frames:
            labels = self.store.frame(index)
            labels[labels == obj] = 0
            self.store.set_frame(index, labels, self.store.scores.get(index, {}))
        self.prompts.pop(obj, None)
        self.tracked.pop(obj, None)
        self.lineage.remove(obj)
        self._corrections = [(o, f) for o, f in self._corrections if o != obj]
        return frames

    # results -------------------------------------------------------------------------------------
    def labels(self) -> np.ndarray:
        """uint16 (T, H, W) labels (0 background, object ids otherwise)."""
        return self.store.stack()

    def frame_labels(self, frame: int) -> np.ndarray:
        """uint16 (H, W) labels of one frame."""
        return self.store.frame(int(frame))

    def object_frames(self, obj: int) -> dict[int, float]:
        """{frame: score} where object ``obj`` has pixels."""
        return self.store.object_frames(int(obj))
