"""Choosing layers in the fmscope widgets: the user's image layers, the layers themselves, combo boxes refilled quietly.

napari hands a widget opened from its Plugins menu a ``PublicOnlyProxy`` of the viewer, not the viewer
(``viewer.window.add_plugin_dock_widget``), and every attribute or item read through that proxy is a *new*
proxy object: ``viewer.layers[name] is viewer.layers[name]`` is False there, ``id()`` differs on each read,
while napari's own events (``event.value``) carry the layers themselves. So a widget never keeps or compares
a layer as read through the viewer: it keeps :func:`own` of it (or takes it from :func:`layer_named` /
:func:`user_image_layers`), and identity (``is``, ``id()``, dict keys) then holds whether the widget was opened
from the menu or built directly with a viewer (issue 24).
"""

from __future__ import annotations

import napari
from qtpy.QtWidgets import QComboBox


def own(obj):
    """The napari object behind a napari ``PublicOnlyProxy`` (a wrapt proxy; its ``__wrapped__``), else ``obj``."""
    return getattr(obj, "__wrapped__", obj)


def layer_named(viewer: napari.Viewer, name: str):
    """The layer called ``name`` itself (never a proxy of it), None when the viewer has none."""
    return own(viewer.layers[name]) if name in viewer.layers else None


def user_image_layers(viewer: napari.Viewer) -> list:
    """The viewer's Image layers themselves that are not fmscope's own results (names starting with 'fmscope')."""
    return [
        own(layer)
        for layer in viewer.layers
        if isinstance(layer, napari.layers.Image) and not layer.name.startswith("fmscope")
    ]


def refill(combo: QComboBox, items: list[str]) -> None:
    """Replace a combo box's items without emitting signals, keeping the current item when it remains."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(items)
    if current in items:
        combo.setCurrentText(current)
    combo.blockSignals(False)
