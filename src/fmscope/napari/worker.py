"""The napari widgets' model thread: a thin Qt adapter over :class:`fmscope.jobs.JobRunner`.

The runner (shared with the 3D Slicer module) holds the queue, the keys, background jobs and the
cancel semantics; this adapter brings results, errors and progress to the Qt main thread through
queued signals. ``progress`` carries ``(message, done, total)`` for the widgets' status panel
(:class:`fmscope.napari.status_panel.StatusPanel`); jobs report through ``job.progress``, which the
engine calls, and front-end code may emit ``progress`` itself for its own short steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

from fmscope.jobs import Job, JobRunner

__all__ = ["Job", "ModelWorker"]


class ModelWorker(QObject):
    """The model thread and its queue, with Qt signals (see :class:`fmscope.jobs.JobRunner`)."""

    _call = Signal(object)  # a callable to run on the main thread
    progress = Signal(str, int, int)  # message, done, total
    busy_changed = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self._call.connect(self._run_here)  # a bound method: queued to this object's (the main) thread
        self.runner = JobRunner(
            post=self._call.emit,
            on_progress=lambda job, done, total, message: self.progress.emit(message, done, total),
            on_busy=self.busy_changed.emit,
            thread_init=_keep_triton_out,
        )

    def submit(
        self,
        fn: Callable[[Job], Any],
        key: str | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        background: bool = False,
        on_cancelled: Callable[[], None] | None = None,
    ) -> Job:
        """:meth:`fmscope.jobs.JobRunner.submit`; ``on_done`` / ``on_error`` / ``on_cancelled`` run on the
        Qt main thread."""
        return self.runner.submit(fn, key, on_done, on_error, background, on_cancelled)

    def cancel_all(self) -> None:
        """Cancel every queued and running job."""
        self.runner.cancel_all()

    @property
    def idle(self) -> bool:
        """No foreground job queued or running (background preparation may still run)."""
        return self.runner.idle

    @property
    def drained(self) -> bool:
        """No job at all queued or running, background ones included."""
        return self.runner.drained

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the thread after the running job (queued jobs are cancelled) and wait for it."""
        self.runner.shutdown(timeout)

    def _run_here(self, callback: Callable[[], None]) -> None:
        callback()


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
