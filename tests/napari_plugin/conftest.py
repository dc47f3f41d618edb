"""Fixtures shared by the napari widget tests."""

from __future__ import annotations

import pytest

from fmscope.napari.spatial_widget import SpatialWidget


@pytest.fixture
def viewer_widget(make_napari_viewer, qtbot):
    """A real viewer with the Spatial omics widget docked; its worker is shut down afterwards."""
    viewer = make_napari_viewer()
    widget = SpatialWidget(viewer)
    viewer.window.add_dock_widget(widget)
    yield viewer, widget
    widget.worker.shutdown()
