"""A progress bar over a status line: how the fmscope widgets report worker progress and errors."""

from __future__ import annotations

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from fmscope.errors import FmscopeError


class StatusPanel(QWidget):
    """``progress`` (hidden when idle) and ``status`` (word-wrapped text)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel(text)
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

    def on_progress(self, message: str, done: int, total: int) -> None:
        """Slot for ``ModelWorker.progress``."""
        self.progress.setVisible(done < total)
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
        self.progress.setVisible(False)
        show_error(message)
