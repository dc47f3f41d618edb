"""Tracking results: one object's mask on one frame, and the per-frame label store.

Objects never overlap in the labels. **Rule:** on each frame, objects are painted in order of
increasing score (the model's confidence for that object on that frame; ties by decreasing
id), so a pixel claimed by several objects goes to the most confident one (the lower id on a
tie). Frames are stored zlib-compressed, so a long video's labels take little memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


@dataclass
class ObjectMask:
    """One object's result on one frame: bool (H, W) mask and a score in [0, 1]."""

    mask: np.ndarray
    score: float


def paint_labels(objects: dict[int, ObjectMask], shape: tuple[int, int]) -> np.ndarray:
    """uint16 (H, W) labels from per-object masks with the no-overlap rule (see module docstring)."""
    labels = np.zeros(shape, dtype=np.uint16)
    for obj in sorted(objects, key=lambda k: (objects[k].score, -k)):
        labels[objects[obj].mask] = obj
    return labels


def paint_frame(labels: np.ndarray, frame: int, engine: np.ndarray, tracked: set[int]) -> bool:
    """Write ``engine`` (H, W) into ``labels[frame]`` where ``labels`` holds background or a ``tracked`` id (the
    Track panel's painting rule: labels painted by hand, any other id, are never overwritten). Returns whether
    anything changed."""
    plane = labels[frame]
    writable = (plane == 0) | np.isin(plane, list(tracked))
    changed = writable & (plane != engine)
    if not changed.any():
        return False
    plane[changed] = engine[changed]
    return True


class LabelStore:
    """uint16 label frames (compressed) and each object's score per frame."""

    def __init__(self, n_frames: int, shape: tuple[int, int]) -> None:
        self.n_frames, self.shape = n_frames, shape
        self._frames: dict[int, bytes] = {}
        self.scores: dict[int, dict[int, float]] = {}  # frame -> {object: score}

    def frame(self, index: int) -> np.ndarray:
        """uint16 (H, W) labels of one frame (zeros when untracked)."""
        packed = self._frames.get(index)
        if packed is None:
            return np.zeros(self.shape, dtype=np.uint16)
        return np.frombuffer(zlib.decompress(packed), dtype=np.uint16).reshape(self.shape).copy()

    def update(self, index: int, objects: dict[int, ObjectMask]) -> np.ndarray:
        """Replace these objects on frame ``index`` (others stay); returns the frame's labels."""
        current = self.frame(index)
        old_scores = self.scores.get(index, {})
        merged = {obj: ObjectMask(current == obj, score) for obj, score in old_scores.items() if obj not in objects}
        merged.update({obj: result for obj, result in objects.items() if result.mask.any()})
        labels = paint_labels(merged, self.shape)
        self.set_frame(index, labels, {obj: float(merged[obj].score) for obj in merged})
        return labels

    def set_frame(self, index: int, labels: np.ndarray, scores: dict[int, float]) -> None:
        """Store a frame's labels as they are (objects absent from ``labels`` are dropped from scores)."""
        present = set(np.unique(labels).tolist()) - {0}
        kept = {obj: score for obj, score in scores.items() if obj in present}
        if kept:
            self._frames[index] = zlib.compress(np.ascontiguousarray(labels, dtype=np.uint16).tobytes(), 1)
            self.scores[index] = kept
        else:
            self._frames.pop(index, None)
            self.scores.pop(index, None)

    def snapshot(self, frames) -> dict[int, tuple[bytes | None, dict[int, float] | None]]:
        """What ``frames`` hold now (compressed labels and scores), for :meth:`restore` (undo)."""
        return {
            int(i): (self._frames.get(int(i)), dict(self.scores[int(i)]) if int(i) in self.scores else None)
            for i in frames
        }

    def restore(self, snapshot: dict[int, tuple[bytes | None, dict[int, float] | None]]) -> None:
        """Put back the frames of a :meth:`snapshot` exactly as they were."""
        for index, (packed, scores) in snapshot.items():
            if packed is None:
                self._frames.pop(index, None)
                self.scores.pop(index, None)
            else:
                self._frames[index], self.scores[index] = packed, dict(scores)

    def stack(self) -> np.ndarray:
        """uint16 (T, H, W) labels of every frame."""
        out = np.zeros((self.n_frames, *self.shape), dtype=np.uint16)
        for index in self._frames:
            out[index] = self.frame(index)
        return out

    def object_frames(self, obj: int) -> dict[int, float]:
        """{frame: score} for the frames where object ``obj`` has pixels."""
        return {index: scores[obj] for index, scores in sorted(self.scores.items()) if obj in scores}
