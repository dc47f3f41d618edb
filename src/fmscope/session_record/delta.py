"""The pixels an action changed: the bounding box of the change and the labels inside it afterwards.

Applying a delta writes those values over its box, so it is idempotent: applying the deltas after a snapshot,
in order, onto that snapshot (or onto any later state of the same session) gives the labels after the last one.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Delta:
    """``bounds``: per axis of the labels, (start, stop) of the changed box (empty: nothing changed);
    ``values``: zlib of the labels' C-order bytes inside it after the action."""

    bounds: tuple[tuple[int, int], ...]
    values: bytes

    @property
    def empty(self) -> bool:
        return not self.bounds

    def apply(self, labels: np.ndarray) -> None:
        """Write the recorded values into ``labels`` (in place)."""
        if self.empty:
            return
        region = tuple(slice(start, stop) for start, stop in self.bounds)
        shape = tuple(stop - start for start, stop in self.bounds)
        labels[region] = np.frombuffer(zlib.decompress(self.values), dtype=labels.dtype).reshape(shape)

    def bounds_json(self) -> str:
        return json.dumps([list(b) for b in self.bounds])

    @classmethod
    def from_row(cls, bounds: str, values: bytes) -> Delta:
        return cls(tuple(tuple(b) for b in json.loads(bounds)), bytes(values))


def difference(before: np.ndarray, after: np.ndarray) -> Delta:
    """The :class:`Delta` taking ``before`` to ``after`` (same shape and dtype)."""
    changed = before != after
    if not changed.any():
        return Delta((), b"")
    bounds = []
    for axis in range(changed.ndim):
        other = tuple(a for a in range(changed.ndim) if a != axis)
        index = np.flatnonzero(changed.any(axis=other))
        bounds.append((int(index[0]), int(index[-1]) + 1))
    region = tuple(slice(start, stop) for start, stop in bounds)
    return Delta(tuple(bounds), zlib.compress(np.ascontiguousarray(after[region]).tobytes(), 1))
