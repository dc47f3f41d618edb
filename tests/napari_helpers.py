"""Helpers shared by the napari widget tests: the plugin's manifest, waiting on a widget, clicking its buttons."""

from pathlib import Path

from npe2 import PluginManifest

import fmscope.napari

PLUGIN = "fmscope"
MANIFEST = PluginManifest.from_file(Path(fmscope.napari.__file__).with_name("napari.yaml"))
# the display names under Plugins > fmscope, read from the manifest so that a new widget is tested too
WIDGETS = [widget.display_name for widget in MANIFEST.contributions.widgets]


def wait_idle(qtbot, widget, timeout=300_000):
    """Wait until the widget's model thread has delivered every job (results painted on the Qt thread)."""
    qtbot.waitUntil(lambda: widget.worker.idle, timeout=timeout)
    qtbot.wait(20)


def click(qtbot, widget, text: str) -> None:
    """Click, with the mouse, the one button of ``widget`` whose text is ``text`` (as a user finds it)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QPushButton

    buttons = [button for button in widget.findChildren(QPushButton) if button.text() == text]
    assert len(buttons) == 1, f"{len(buttons)} buttons named {text!r}"
    assert buttons[0].isEnabled(), f"{text!r} is disabled"
    qtbot.mouseClick(buttons[0], Qt.LeftButton)
