"""napari reader for NIfTI / NRRD / MHA volumes: voxel spacing becomes the layer scale."""

from __future__ import annotations

from collections.abc import Callable

from fmscope.errors import FmscopeError
from fmscope.imaging import io
from fmscope.names import display_name

LayerData = list[tuple]


def volume_layer_data(path: str) -> LayerData:
    """[(array, {name, scale, translate, metadata}, 'image')] for one volume file (z, y, x order);
    the metadata keeps the :class:`~fmscope.imaging.io.Volume` (geometry) and axis 0 = z."""
    volume = io.read_volume(path)
    origin_zyx = tuple(reversed(volume.origin))
    return [
        (
            volume.array,
            {
                "name": display_name(path),
                "scale": volume.spacing_zyx,
                "translate": origin_zyx,
                "metadata": {"fmscope_volume": volume, "fmscope_axis": "z"},
            },
            "image",
        )
    ]


def get_reader(path: str | list[str]) -> Callable[[str], LayerData] | None:
    """npe2 reader hook: a reader function for supported volume paths, else None."""
    if isinstance(path, list):
        return None
    if not str(path).lower().endswith(io.VOLUME_SUFFIXES):
        return None

    def read(target: str) -> LayerData:
        try:
            return volume_layer_data(target)
        except FmscopeError:
            return []  # another reader may handle it; napari reports when none can

    return read
