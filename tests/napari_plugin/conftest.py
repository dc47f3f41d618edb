"""Fixtures shared by the napari widget tests: every widget is opened the way napari opens it.

napari's Plugins menu calls ``viewer.window.add_plugin_dock_widget("fmscope", NAME)``, which builds the widget
from the npe2 manifest (``src/fmscope/napari/napari.yaml``) and hands it a ``PublicOnlyProxy`` of the viewer,
not the viewer itself; the user-workflow tests go through that same path (issue 24).
"""

from __future__ import annotations

import gc
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
        opened.append((viewer, widget))
        return widget

    yield open_
    for viewer, widget in opened:
        widget.worker.shutdown()
    viewers = list({id(viewer): viewer for viewer, _ in opened}.values())
    stuck = [viewer for viewer in viewers if not layers_removed(viewer)]
    if stuck:
        for viewer, widget in opened:  # stop the widgets listening, so that napari's own close can end
            for group in (viewer.layers.events, viewer.dims.events):
                for emitter in group.emitters.values():
                    emitter.disconnect(widget)
        pytest.fail(f"a widget keeps adding layers back while the viewer's layers are removed: {stuck[0].layers}")


def layers_removed(viewer, spare: int = 50) -> bool:
    """Remove the viewer's layers one by one, as closing napari does, with the widgets still listening. False
    when they keep coming back (a widget that loses track of its image layer re-adds its own layers on every
    removal: closing napari would never end)."""
    for _ in range(len(viewer.layers) + spare):
        if not len(viewer.layers):
            return True
        viewer.layers.pop()
    return False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """napari runs a full ``gc.collect()`` on every layer removal and viewer close (a Windows OpenGL fix), ~1 s
    each with torch and the models in the heap: 6-18 s per test. The objects alive when a test's call (and its
    teardown, below) starts are frozen meanwhile (``gc.freeze``), so those collections only scan what was made
    since; everything is collected as usual after."""
    gc.freeze()
    try:
        return (yield)
    finally:
        gc.unfreeze()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """See :func:`pytest_runtest_call`."""
    gc.freeze()
    try:
        return (yield)
    finally:
        gc.unfreeze()


@pytest.fixture
def viewer_widget(make_napari_viewer, open_widget):
    """A real viewer with the Spatial omics widget docked from the Plugins menu."""
    viewer = make_napari_viewer()
    return viewer, open_widget(viewer, "Spatial omics")


@pytest.fixture(autouse=True)
def sessions_dir(tmp_path, monkeypatch):
    """The Segment panel records sessions of images without a file under $FMSCOPE_SESSIONS_DIR: a test's own."""
    folder = tmp_path / "fmscope_sessions"
    monkeypatch.setenv("FMSCOPE_SESSIONS_DIR", str(folder))
    return folder
