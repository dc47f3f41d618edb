"""One persistent model thread: the Qt event loop never runs a model.

Jobs run one at a time in submission order. A job submitted with a ``key`` supersedes the
queued and running jobs with the same key: they are marked cancelled, queued ones never
start, and a running one's result is dropped. Results and errors come back on the Qt main
thread through queued signals. Background jobs (work done ahead, such as preparing zoom crops)
give way: submitting any other job cancels them (the submitter queues them again when it wants),
and they do not count in :attr:`ModelWorker.idle`; :attr:`ModelWorker.drained` waits for them too.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import QObject, Signal

from fmscope.errors import Cancelled


@dataclass
class Job:
    """A unit of model work; ``fn(job)`` runs on the worker thread and may poll ``job.cancelled``."""

    fn: Callable[["Job"], Any]
    key: str | None
    on_done: Callable[[Any], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    job_id: int = 0
    background: bool = False
    _cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if this job was cancelled (call between steps)."""
        if self.cancelled:
            raise Cancelled()


class ModelWorker(QObject):
    """The model thread and its queue."""

    _finished = Signal(object, object)
    _failed = Signal(object, object)
    progress = Signal(str, int, int)  # message, done, total
    busy_changed = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: list[Job] = []
        self._finished.connect(self._deliver)
        self._failed.connect(self._deliver_error)
        self._thread = threading.Thread(target=self._run, name="fmscope-model", daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[Job], Any],
        key: str | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        background: bool = False,
    ) -> Job:
        """Queue ``fn``; with a ``key``, earlier jobs with that key are cancelled, and a foreground
        job cancels every background one."""
        job = Job(fn, key, on_done, on_error, next(self._ids), background=background)
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

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the thread after the running job (queued jobs are cancelled) and wait for it."""
        self.cancel_all()
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        _keep_triton_out()
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not job.cancelled:
                self.busy_changed.emit(True)
                try:
                    result = job.fn(job)
                except BaseException as error:  # reported to the UI, never kills the thread
                    self._failed.emit(job, error)
                else:
                    self._finished.emit(job, result)
                self.busy_changed.emit(False)
            else:
                self._finished.emit(job, None)

    def _forget(self, job: Job) -> None:
        with self._lock:
            if job in self._pending:
                self._pending.remove(job)

    def _deliver(self, job: Job, result: Any) -> None:
        self._forget(job)
        if not job.cancelled and job.on_done is not None:
            job.on_done(result)

    def _deliver_error(self, job: Job, error: BaseException) -> None:
        self._forget(job)
        if job.cancelled or isinstance(error, Cancelled):
            return
        if job.on_error is not None:
            job.on_error(error)


def _keep_triton_out() -> None:
    """Without a GPU, make ``import triton`` fail in this process, so torch treats it as absent.

    torch's optimisers import torch._dynamo on first use, which imports triton when installed;
    loading triton's library inside a running napari (Qt with Mesa's OpenGL, as under Xvfb)
    crashes the process, on any thread (seen with torch 2.14.1, napari 0.9.2). fmscope never
    compiles with triton, and on a CPU nothing can: the CUDA case is left untouched.
    """
    import sys

    import torch

    if "triton" not in sys.modules and not torch.cuda.is_available():
        sys.modules["triton"] = None
