"""Label snapshots: the whole labels array after one action, as ``labels-<seq>.npy`` in the session folder.

Written atomically (:func:`fmscope.atomic.atomic_write`), so a snapshot file is either whole or absent; the journal
names a snapshot only once its file is in place, and older snapshot files are removed after that.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmscope.atomic import INTERNAL, atomic_write
from fmscope.errors import FmscopeError

PREFIX = "labels-"
START = "start-labels.npy"  # the labels the session started from (replay's start), never removed


def snapshot_name(seq: int) -> str:
    """The snapshot after action ``seq``; 0: the start."""
    return START if seq == 0 else f"{PREFIX}{seq:09d}.npy"


def write_snapshot(folder: Path, seq: int, labels: np.ndarray) -> str:
    """Write ``labels`` as the snapshot after action ``seq``; returns the file name (inside ``folder``)."""
    name = snapshot_name(seq)

    def write(target: Path) -> None:
        with open(target, "wb") as stream:
            np.save(stream, labels, allow_pickle=False)
            stream.flush()
            os.fsync(stream.fileno())

    atomic_write(folder / name, write, owner=INTERNAL)  # the session folder is fmscope's own
    return name


def read_snapshot(folder: Path, name: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The snapshot ``name``, checked to hold labels of ``shape`` and ``dtype``."""
    path = folder / name
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise FmscopeError(
            f"Cannot read the labels snapshot {path} ({type(error).__name__}: {str(error)[:200]}).",
            "The session folder was changed by hand; restore the file or start a new session.",
        ) from None
    if labels.shape != tuple(shape) or labels.dtype.str != dtype:
        raise FmscopeError(
            f"The labels snapshot {path} holds {labels.dtype} {labels.shape}, the session {dtype} {tuple(shape)}.",
            "The session folder was changed by hand; restore the file or start a new session.",
        )
    return labels


def remove_older(folder: Path, keep: str) -> None:
    """Delete the snapshot files other than ``keep`` and :data:`START` (earlier ones, or one a killed autosave
    left unnamed in the journal)."""
    for path in folder.glob(f"{PREFIX}*.npy"):
        if path.name != keep:
            path.unlink(missing_ok=True)
