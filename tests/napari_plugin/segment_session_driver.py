"""A napari session driven as a user, to be killed (tests/napari_plugin/test_segment_session.py's kill test).

Opens IMAGE (a PNG) in a hidden napari viewer, opens *Plugins > fmscope > Segment*, draws one box (action 1), saves
the labels after it as OUT/after-1.npy, then paints rectangles on the fmscope labels layer (napari's
``data_setitem``, one history item each, as a brush stroke is), rectangle k (:func:`rectangle`) with label k, and
prints each action's number once the panel has recorded it, until it is killed.

Run: python segment_session_driver.py IMAGE OUT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ACTIONS = 200
BOX = (40, 40, 90, 90)  # x0, y0, x1, y1


def rectangle(k: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns action k (>= 2) paints: a rectangle placed by a fixed generator."""
    rng = np.random.default_rng(k)
    y0, x0 = (int(v) for v in rng.integers(0, shape[0] - 4, size=2))
    h, w = (int(v) for v in rng.integers(2, 30, size=2))
    return slice(y0, min(y0 + h, shape[0])), slice(x0, min(x0 + w, shape[1]))


def main(image: str, out: str) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=False)
    viewer.open(image, plugin="napari")
    _dock, widget = viewer.window.add_plugin_dock_widget("fmscope", "Segment")
    app = QApplication.instance()

    def wait(condition, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError("the Segment panel did not finish in time")
            app.processEvents()
            time.sleep(0.002)

    def recorded(n: int) -> bool:
        return widget.session.recorder is not None and widget.session.recorder.seq == n

    wait(lambda: widget.session.found is not None and widget.worker.idle)
    x0, y0, x1, y1 = BOX
    viewer.layers["fmscope boxes"].add_rectangles(np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float))
    wait(lambda: recorded(1))
    labels = viewer.layers["fmscope labels"]
    np.save(Path(out) / "after-1.npy", labels.data)
    print(1, flush=True)
    for k in range(2, ACTIONS + 1):
        rows, cols = rectangle(k, labels.data.shape)
        ys, xs = np.mgrid[rows, cols]
        labels.data_setitem((ys.ravel(), xs.ravel()), k)
        wait(lambda k=k: recorded(k))
        print(k, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
