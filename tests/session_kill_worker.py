"""A process that records hand-painting actions into a session as fast as it can, autosaving on a worker thread,
until it is killed (tests/test_session_record.py's kill test). Prints the number of each action once record()
has returned. ``state(seed, n)`` is the labels after action n, for the test to compare with.

Run: python session_kill_worker.py FOLDER SEED
"""

from __future__ import annotations

import sys
import threading

import numpy as np

SHAPE = (192, 192)
ACTIONS = 400


def _stroke(rng: np.random.Generator) -> tuple[int, int, int, int, int]:
    """(object id, y0, x0, y1, x1) of action's rectangle; id 0 erases."""
    y0, x0 = rng.integers(0, SHAPE[0] - 8, size=2)
    h, w = rng.integers(2, 40, size=2)
    return int(rng.integers(0, 6)), int(y0), int(x0), int(min(y0 + h, SHAPE[0])), int(min(x0 + w, SHAPE[1]))


def states(seed: int, count: int):
    """The labels (uint16) after actions 1..count, and each action's stroke."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint16)
    for _ in range(count):
        stroke = _stroke(rng)
        labels = labels.copy()
        labels[stroke[1] : stroke[3], stroke[2] : stroke[4]] = stroke[0]
        yield labels, stroke


def state(seed: int, n: int) -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint16)
    for labels, _ in states(seed, n):
        pass
    return labels


def main(folder: str, seed: int) -> None:
    from fmscope import models
    from fmscope.session_record import Action, ImageIdentity, ModelIdentity, Recorder

    image = np.random.default_rng(0).integers(0, 255, SHAPE, dtype=np.uint8)
    entry = models.BY_NAME[models.DEFAULT_SEGMENTER]
    model = ModelIdentity(entry.name, entry.sha256, "openvino", "fp32")
    recorder = Recorder.start(folder, ImageIdentity.of(image, "random.png"), model, np.zeros(SHAPE, np.uint16))
    saver: threading.Thread | None = None
    for n, (labels, (object_id, y0, x0, y1, x1)) in enumerate(states(seed, ACTIONS), start=1):
        kind = "erase" if object_id == 0 else "paint"
        recorder.record(Action(kind, object_id, params={"rectangle_yx": [y0, x0, y1, x1]}), labels)
        print(n, flush=True)
        if saver is None or not saver.is_alive():  # autosave off this thread, as a front end's worker would
            saver = threading.Thread(target=recorder.autosave)
            saver.start()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
