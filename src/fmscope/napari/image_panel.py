"""What the Segment widget and the Track panel share: the image layer they work on, chosen from the viewer.

:class:`ImagePanel` is a mixin placed before ``QWidget`` in the panel's bases. The panel provides ``viewer``,
``image_combo`` (the layer choice), ``panel`` (a :class:`~fmscope.napari.status_panel.StatusPanel`) and
``_image_layer``, and overrides the hooks :meth:`_shape_problem`, :meth:`_image_set` and :meth:`_image_removed`.
Layers are kept and compared as the layers themselves (:func:`~fmscope.napari.layer_choice.own`), so the panel
behaves the same when napari opens it from its Plugins menu (issue 24).
"""

from __future__ import annotations

import numpy as np

from fmscope.napari.layer_choice import layer_named, own, refill, user_image_layers


def grid_of(layer, dims: int) -> dict:
    """The placement of ``layer``'s last ``dims`` axes in napari's world: ``scale``, ``translate`` and ``affine``
    ((dims + 1, dims + 1): a volume's direction, :func:`fmscope.napari.reader.volume_placement`), as keywords
    for the layers a panel adds over it."""
    affine = np.asarray(layer.affine.affine_matrix, float)[-dims - 1 :, -dims - 1 :]
    return {"scale": tuple(layer.scale[-dims:]), "translate": tuple(layer.translate[-dims:]), "affine": affine}


def same_grid(layer, grid: dict, dims: int) -> bool:
    """Whether ``layer``'s last ``dims`` axes are placed as ``grid`` (:func:`grid_of`) places them."""
    mine = grid_of(layer, dims)
    return all(np.allclose(mine[key], grid[key]) for key in ("scale", "translate", "affine"))


class ImagePanel:
    """The image layer choice and its life cycle (layers added, chosen, removed)."""

    _image_layer = None

    def _say(self, text: str, error: bool = False) -> None:
        self.panel.say(text, error)

    def _image_layers(self) -> list:
        return user_image_layers(self.viewer)

    @staticmethod
    def _spatial_shape(layer) -> tuple[int, ...]:
        """The layer's pixel grid without its colour axis: (Y, X), (Z, Y, X) or (T, Y, X)."""
        return tuple(layer.data.shape[:-1]) if layer.rgb else tuple(layer.data.shape)

    def _on_image_grid(self, layer) -> bool:
        """Whether a prompt layer's pixel grid is the image's (same scale, offset and affine); says why not."""
        dims = len(self._spatial_shape(self._image_layer))
        image = self._image_layer
        same = same_grid(layer, grid_of(image, dims), dims)
        if not same:
            self._say(
                f"'{layer.name}' is not on the grid of '{image.name}' (scale, translate or affine differ); its prompt "
                "was ignored and nothing changed. Use the layers fmscope created for this image.",
                error=True,
            )
        return same

    def _refresh_layers(self, event=None) -> None:
        refill(self.image_combo, [layer.name for layer in self._image_layers()])
        self._layers_refreshed()
        self._on_image_chosen()

    def _on_layer_removed(self, event) -> None:
        removed = own(event.value)
        self._layer_removed(removed)
        if removed is self._image_layer:
            self._image_layer = None
            self._image_removed()
            self._say("The image layer was removed; choose another image.")
        self._refresh_layers()

    def _on_image_chosen(self, _index: int | None = None) -> None:
        name = self.image_combo.currentText()
        layer = layer_named(self.viewer, name)
        if layer is None or layer is self._image_layer:
            return
        shape = self._spatial_shape(layer)
        problem = self._shape_problem(shape)
        if problem:
            self._say(f"'{name}' has {len(shape)} spatial dimensions; {problem}", error=True)
            self._image_layer = None
            return
        self._image_layer = layer
        self._image_set(layer, shape)

    # hooks -------------------------------------------------------------------------------------------------------
    def _shape_problem(self, shape: tuple[int, ...]) -> str | None:
        """Why an image of this spatial shape cannot be used (the end of the message), or None."""
        return None

    def _image_set(self, layer, shape: tuple[int, ...]) -> None:
        """The user chose ``layer`` (spatial ``shape``): set the panel up for it."""

    def _image_removed(self) -> None:
        """The chosen image layer was removed from the viewer: stop work on it and forget it."""

    def _layer_removed(self, layer) -> None:
        """Any layer was removed (before the image check): drop what the panel kept about it."""

    def _layers_refreshed(self) -> None:
        """The image choice was refilled (a layer was added or removed)."""
