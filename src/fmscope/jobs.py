"""The one job runner of the napari widgets and the 3D Slicer module: a persistent model thread, no Qt.

Jobs run one at a time in submission order on one thread, so the UI thread never runs a model.
A job's function gets its :class:`Job`, whose :attr:`Job.progress` (:class:`fmscope.progress.Progress`)
it passes to the engine: the engine reports ``(done, total, message)`` through it and stops with
:class:`fmscope.errors.Cancelled` once the job is cancelled. Cancel semantics, the same in both front ends:

- :meth:`Job.cancel` (the Cancel button) stops the job at the engine's next progress report;
  its ``on_done`` / ``on_error`` are never called, so a cancelled job writes nothing into the
  user's layers or nodes (results are written by ``on_done``, on the UI thread); its
  ``on_cancelled`` (if any) runs instead, on the UI thread, to put the controls back;
- a job submitted with a ``key`` supersedes the queued and running jobs with that key;
- background jobs (work done ahead) give way: any foreground submission cancels them.

Results, errors and progress come back on the UI thread through ``post``: the front end's way to
run a callable there (napari: a queued Qt signal, :mod:`fmscope.napari.worker`). Without ``post``
they queue up until the UI thread calls :meth:`JobRunner.deliver` (3D Slicer polls it from a QTimer).
Design after the napari ModelWorker this replaced and concurrent.futures' single-worker executor.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fmscope.errors import Cancelled
from fmscope.progress import Progress

Post = Callable[[Callable[[], None]], None]


@dataclass
class Job:
    """A unit of model work; ``fn(job)`` runs on the runner's thread and passes ``job.progress`` to the engine."""

    fn: Callable[["Job"], Any]
    key: str | None
    on_done: Callable[[Any], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    job_id: int = 0
    background: bool = False
    on_cancelled: Callable[[], None] | None = None
    state: tuple[int, int, str] = (0, 1, "")  # the last (done, total, message) the engine reported
    progress: Progress = field(init=False)
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _render: Callable[["Job", int, int, str], None] | None = None

    def __post_init__(self) -> None:
        self.progress = Progress(self._report, self._cancelled)

    def _report(self, done: int, total: int, message: str) -> None:
        self.state = (done, total, message)
        if self._render is not None and not self.cancelled:  # a cancelled job's bar is gone: no more reports
            self._render(self, done, total, message)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if this job was cancelled (for steps that report nothing)."""
        self.progress.check()


class JobRunner:
    """The model thread and its queue (see the module docstring).

    ``post``: runs a callable on the UI thread (None: queue it for :meth:`deliver`). ``on_progress(job,
    done, total, message)`` and ``on_busy(running)`` are called on the model thread (a Qt adapter turns
    them into signals). ``thread_init`` runs first thing on the model thread.
    """

    def __init__(
        self,
        post: Post | None = None,
        on_progress: Callable[[Job, int, int, str], None] | None = None,
        on_busy: Callable[[bool], None] | None = None,
        thread_init: Callable[[], None] | None = None,
    ) -> None:
        self._post = post
        self._deliveries: queue.Queue[Callable[[], None]] = queue.Queue()
        self._on_progress, self._on_busy, self._thread_init = on_progress, on_busy, thread_init
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: list[Job] = []
        self._thread = threading.Thread(target=self._run, name="fmscope-model", daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[Job], Any],
        key: str | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        background: bool = False,
        on_cancelled: Callable[[], None] | None = None,
    ) -> Job:
        """Queue ``fn``; with a ``key``, earlier jobs with that key are cancelled, and a foreground
        job cancels every background one. ``on_done(result)`` / ``on_error(error)`` / ``on_cancelled()``
        run on the UI thread, exactly one of them (on_cancelled also for a job cancelled before it started)."""
        job = Job(fn, key, on_done, on_error, next(self._ids), background, on_cancelled, _render=self._on_progress)
        with self._lock:
            for other in self._pending:
                if (key is not None and other.key == key) or (other.background and not background):
                    other.cancel()
            self._pending.append(job)
        self._queue.put(job)
        return job

    def cancel_all(self) -> None:
        """Cancel every queued and running job."""
        with self._lock:
            for job in self._pending:
                job.cancel()

    @property
    def idle(self) -> bool:
        """No foreground job queued or running (background preparation may still run)."""
        with self._lock:
            return not any(not job.background for job in self._pending)

    @property
    def drained(self) -> bool:
        """No job at all queued or running, background ones included."""
        with self._lock:
            return not self._pending

    def deliver(self) -> None:
        """Run the results, errors and progress queued for the UI thread (call it on the UI thread)."""
        while True:
            try:
                callback = self._deliveries.get_nowait()
            except queue.Empty:
                return
            callback()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the thread after the running job (queued jobs are cancelled) and wait for it."""
        self.cancel_all()
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _send(self, callback: Callable[[], None]) -> None:
        if self._post is not None:
            self._post(callback)
        else:
            self._deliveries.put(callback)

    def _run(self) -> None:
        if self._thread_init is not None:
            self._thread_init()
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancelled:
                self._send(lambda job=job: self._finish(job, None, None))
                continue
            if self._on_busy is not None:
                self._on_busy(True)
            try:
                result, error = job.fn(job), None
            except BaseException as failure:  # reported to the UI, never kills the thread
                result, error = None, failure
            self._send(lambda job=job, result=result, error=error: self._finish(job, result, error))
            if self._on_busy is not None:
                self._on_busy(False)

    def _finish(self, job: Job, result: Any, error: BaseException | None) -> None:
        """On the UI thread: forget the job and hand its outcome over, unless it was cancelled."""
        with self._lock:
            if job in self._pending:
                self._pending.remove(job)
        if job.cancelled or isinstance(error, Cancelled):
            if job.on_cancelled is not None:
                job.on_cancelled()
            return
        if error is not None:
            if job.on_error is not None:
                job.on_error(error)
        elif job.on_done is not None:
            job.on_done(result)
