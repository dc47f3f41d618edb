"""A progress bar (with Cancel) over a status line: how the fmscope widgets report worker progress and errors."""

from __future__ import annotations

from collections.abc import Callable

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from fmscope.errors import FmscopeError


class StatusPanel(QWidget):
    """``progress`` (hidden when idle), its ``cancel_button`` and ``status`` (word-wrapped text).

    ``on_cancel``: what Cancel does (the widget cancels its worker's jobs: :meth:`fmscope.jobs.Job.cancel`,
    which the engine's progress reports check); without it the panel has no Cancel button.
    """

    def __init__(self, text: str, on_cancel: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self._on_cancel = on_cancel
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel(text)
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.status)

    def _show_progress(self, visible: bool) -> None:
        self.progress.setVisible(visible)
        self.cancel_button.setVisible(visible and self._on_cancel is not None)

    def cancel(self) -> None:
        """The Cancel button: stop the running job; what it would have written is not written."""
        if self._on_cancel is not None:
            self._on_cancel()
        self.cancelled()

    def cancelled(self, text: str = "Cancelled; nothing was changed.") -> None:
        """Show that a job ended cancelled (a job's ``on_cancelled``, after its last progress report)."""
        self._show_progress(False)
        self.status.setText(text)

    def on_progress(self, message: str, done: int, total: int) -> None:
        """Slot for ``ModelWorker.progress``."""
        self._show_progress(done < total)
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        if message:
            self.status.setText(message)

    def say(self, text: str, error: bool = False) -> None:
        """Show ``text`` in the status line (and as a napari error notification when ``error``)."""
        self.status.setText(text)
        if error:
            show_error(text)

    def fail(self, error: BaseException, unexpected: str = "Failed") -> None:
        """Show an error in the panel and as a napari notification (FmscopeError: its own words)."""
        message = str(error) if isinstance(error, FmscopeError) else f"{unexpected}: {error!r}"
        self.status.setText(message)
        self._show_progress(False)
        show_error(message)
