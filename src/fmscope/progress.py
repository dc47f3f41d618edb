"""One progress and cancel protocol for every long-running engine step.

The engine takes a :class:`Progress` (``progress=`` argument; None means "nobody is watching")
and calls :meth:`Progress.update` with ``(done, total, message)`` after each unit of work
(a slice, a frame, a batch of cells, an epoch ...). ``update`` first hands the figures to the
front end's renderer, then runs the cancel check: when the job was cancelled it raises
:class:`fmscope.errors.Cancelled`, the one exception that means "the user stopped this". Engine
code never catches it; it writes nothing after it, so the user's data stay as they were.

Renderers (front ends only; this module imports no UI):

- CLI: :func:`fmscope.cli.progress.tqdm_progress` (a tqdm bar per message, on stderr);
- napari and 3D Slicer: :class:`fmscope.jobs.JobRunner` gives each job a Progress whose
  figures the front end shows in its progress bar / status line, and whose cancel check is the
  job's Cancel button.

Design after tqdm's ``(n, total, desc)`` triple and Dask's ``progress`` reporters: the reporter
is passed down, never global, so two jobs never share one bar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from fmscope.errors import Cancelled

Render = Callable[[int, int, str], None]  # (done, total, message); called on the thread doing the work
T = TypeVar("T")


class Progress:
    """Reports ``(done, total, message)`` to ``render`` and stops the work when ``cancel`` says so.

    ``cancel``: a ``threading.Event``, a callable returning True once the user cancelled, or the
    Progress of the job this one is a part of.
    Thread-safe in the sense the engine needs: ``render`` and the check run on the worker thread;
    :meth:`cancel` may be called from any thread.
    """

    def __init__(
        self, render: Render | None = None, cancel: threading.Event | Callable[[], bool] | Progress | None = None
    ) -> None:
        self._render = render
        self._event = cancel if isinstance(cancel, threading.Event) else threading.Event()
        if isinstance(cancel, Progress):
            cancel = cancel._is_cancelled
        self._cancel_check = None if isinstance(cancel, threading.Event) else cancel

    # the cancel side ---------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the work to stop at its next :meth:`update` / :meth:`check` (any thread)."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._is_cancelled()

    def _is_cancelled(self) -> bool:
        return self._event.is_set() or (self._cancel_check is not None and bool(self._cancel_check()))

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job was cancelled (call between units of work)."""
        if self.cancelled:
            raise Cancelled("Cancelled by the user.")

    # the report side ---------------------------------------------------------------------------
    def update(self, done: int, total: int, message: str = "") -> None:
        """``done`` of ``total`` units finished in the step named ``message``; then the cancel check.

        A message ``"Step: detail"`` names the step before the colon; renderers keep one bar per step
        and show the detail beside it (an epoch's score, the file being read).
        """
        self._report(int(done), max(int(total), 1), message)
        self.check()

    def counter(self, message: str) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback for one named step (for code that counts but names nothing)."""
        return lambda done, total: self.update(done, total, message)

    def within(self, name: str) -> Progress:
        """A reporter for a part of this job (a demo case, a batch item): its messages are prefixed with
        ``name``; it renders here and is cancelled with this one."""
        return Progress(lambda done, total, message: self._report(done, total, f"{name} {message}".strip()), self)

    def _report(self, done: int, total: int, message: str) -> None:
        if self._render is not None:
            self._render(done, total, message)

    def iterate(self, items: Iterable[T], total: int, message: str) -> Iterator[T]:
        """Yield ``items`` and report each one done (0 of ``total`` first, so a bar shows at once)."""
        self.update(0, total, message)
        for done, item in enumerate(items, start=1):
            yield item
            self.update(done, total, message)


def as_progress(progress: Progress | None) -> Progress:
    """``progress``, or a silent, never-cancelled reporter when None (engine functions call this once)."""
    return progress if progress is not None else Progress()
