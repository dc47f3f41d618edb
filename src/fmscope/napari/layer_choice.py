"""Choosing layers in the fmscope widgets: the user's image layers, and combo boxes refilled quietly."""

from __future__ import annotations

import napari
from qtpy.QtWidgets import QComboBox


def user_image_layers(viewer: napari.Viewer) -> list:
    """The viewer's Image layers that are not fmscope's own results (names starting with 'fmscope')."""
    return [layer for layer in viewer.layers
            if isinstance(layer, napari.layers.Image) and not layer.name.startswith("fmscope")]


def refill(combo: QComboBox, items: list[str]) -> None:
    """Replace a combo box's items without emitting signals, keeping the current item when it remains."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(items)
    if current in items:
        combo.setCurrentText(current)
    combo.blockSignals(False)
