"""The CLI's renderer of :class:`fmscope.progress.Progress`: one tqdm bar per step, on stderr.

Every command that runs a long engine step does ``with tqdm_progress() as progress:`` and passes
``progress`` down; a new message closes the previous step's bar and opens the next one.
Ctrl+C stays KeyboardInterrupt (exit 130, see :func:`fmscope.cli.main`), not a cancel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

from fmscope.progress import Progress


class TqdmRenderer:
    """``(done, total, message)`` -> a transient tqdm bar per step. A message ``"Step: detail"`` names the
    step before the colon (the bar's label) and shows the detail after it; a new step opens a new bar."""

    def __init__(self, unit: str = "it") -> None:
        self.unit = unit
        self._bar: tqdm | None = None
        self._message: str | None = None

    def __call__(self, done: int, total: int, message: str) -> None:
        if self._bar is None or message != self._message:
            self.close()
            self._bar, self._message = (
                tqdm(total=total, desc=message or "working", unit=self.unit, leave=False),
                message,
            )
        bar = self._bar
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        if total and done >= total:
            bar.refresh()  # tqdm skips redraws within its mininterval; the finished state is always drawn

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def tqdm_progress(unit: str = "it") -> Iterator[Progress]:
    """A :class:`Progress` drawn as tqdm bars on stderr for the duration of the ``with`` block."""
    renderer = TqdmRenderer(unit)
    try:
        yield Progress(renderer)
    finally:
        renderer.close()
