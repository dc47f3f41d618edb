"""Helpers shared by the napari widget tests."""


def wait_idle(qtbot, widget, timeout=300_000):
    """Wait until the widget's model thread has delivered every job (results painted on the Qt thread)."""
    qtbot.waitUntil(lambda: widget.worker.idle, timeout=timeout)
    qtbot.wait(20)
