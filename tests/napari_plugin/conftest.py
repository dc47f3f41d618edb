"""Fixtures shared by the napari widget tests: every widget is opened the way napari opens it.

napari's Plugins menu calls ``viewer.window.add_plugin_dock_widget("fmscope", NAME)``, which builds the widget
from the npe2 manifest (``src/fmscope/napari/napari.yaml``) and hands it a ``PublicOnlyProxy`` of the viewer,
not the viewer itself; the user-workflow tests go through that same path (issue 24).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from napari_helpers import PLUGIN

PRIVATE_ACCESS = "error:Private attribute access:FutureWarning"  # napari >= 0.10 refuses it through the proxy


def pytest_collection_modifyitems(items) -> None:
    """A widget reading a private napari attribute through the proxy fails its test (napari only warns now)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings(PRIVATE_ACCESS))


@pytest.fixture
def open_widget(make_napari_viewer, qtbot):
    """``open_widget(viewer, name)``: the fmscope widget ``name`` (a manifest display name) docked in ``viewer``
    by napari's plugin machinery, as *Plugins > fmscope > name* does; its worker is shut down afterwards."""
    opened = []

    def open_(viewer, name: str):
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        assert widget.viewer is not viewer and widget.viewer.__wrapped__ is viewer  # the proxy, as users get it
        opened.append(widget)
        return widget

    yield open_
    for widget in opened:
        widget.worker.shutdown()


@pytest.fixture
def viewer_widget(make_napari_viewer, open_widget):
    """A real viewer with the Spatial omics widget docked from the Plugins menu."""
    viewer = make_napari_viewer()
    return viewer, open_widget(viewer, "Spatial omics")
