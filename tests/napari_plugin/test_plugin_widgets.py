"""Every widget of the npe2 manifest as napari's Plugins menu opens it (a ``PublicOnlyProxy`` of the viewer),
and the layers a widget keeps stay the same objects through that proxy (issue 24)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from napari_helpers import MANIFEST, PLUGIN, WIDGETS

from fmscope.napari.track_panel import LABELS, TRACKS


@pytest.mark.parametrize("name", WIDGETS)
def test_every_manifest_widget_opens_from_the_plugins_menu(make_napari_viewer, open_widget, name):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, name)
    command_id = next(w.command for w in MANIFEST.contributions.widgets if w.display_name == name)
    python_name = next(c.python_name for c in MANIFEST.contributions.commands if c.id == command_id)
    assert f"{type(widget).__module__}:{type(widget).__name__}" == python_name
    assert viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] is widget  # the menu again: the same dock


def test_every_manifest_widget_has_a_user_path_test():
    """A widget added to the manifest fails here until a test opens it through ``open_widget`` and drives it."""
    sources = "\n".join(path.read_text(encoding="utf-8") for path in Path(__file__).parent.glob("*.py"))
    opened = set(re.findall(r'open_widget\(viewer, "([^"]+)"\)', sources))
    assert set(WIDGETS) <= opened, f"no user-path test opens {sorted(set(WIDGETS) - opened)}"


def test_track_panel_keeps_its_objects_when_layers_come_and_go(make_napari_viewer, open_widget):
    """Through the proxy each ``viewer.layers[name]`` is a new object: adding any layer (as the panel's own
    tracks layer is, after the first object) must not restart the session, nor forget the objects."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 32, 32), np.uint8), name="movie")
    panel = open_widget(viewer, "Track")
    image = panel._image_layer
    panel.state.objects[1] = {0}  # an object the user has boxed
    viewer.layers[LABELS].data[0, 4:9, 4:9] = 1
    panel._refresh_tracks()  # adds the tracks layer, as after the first prompt
    viewer.add_points([[0, 5, 5]], name="notes")
    assert TRACKS in viewer.layers and panel.object_rows() == [(1, "0..0", "0")]
    assert panel._image_layer is image
    viewer.layers.remove("movie")
    assert panel._image_layer is None and "removed" in panel.status.text()
