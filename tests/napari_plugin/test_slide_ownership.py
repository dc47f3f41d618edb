"""Slides in the napari Spatial widget: images placed by their full SpatialData transformation,
and annotation layers that belong to one slide (real viewer, real SpatialData stores)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from napari_helpers import wait_idle

from fmscope.errors import FmscopeError
from fmscope.napari import sample_data
from fmscope.napari.spatial_state import ANNOTATIONS
from fmscope.napari.spatial_widget import PREDICTED

PIXELS_YX = np.array([[10, 12], [40, 70], [55, 5], [25, 33], [3, 77]])  # where the cells are in the image


def pixel_to_microns_yx(angle_deg: float) -> np.ndarray:
    """The intended placement: 0.5 um pixels, rotated, offset by (y 50, x 100) um."""
    angle = np.deg2rad(angle_deg)
    linear = 0.5 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.block([[linear, np.array([[50.0], [100.0]])], [np.zeros((1, 2)), np.ones((1, 1))]])


def write_store(path, system: str, cells_to_system, angle_deg: float) -> np.ndarray:
    """A SpatialData store whose image reaches ``system`` through the cells' transformation after the
    intended pixel -> microns placement; returns the cells' (y, x) in microns."""
    import spatialdata
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Affine, Sequence

    placement = pixel_to_microns_yx(angle_deg)
    microns_yx = (placement @ np.c_[PIXELS_YX, np.ones(len(PIXELS_YX))].T).T[:, :2]
    image = np.zeros((3, 60, 80), dtype=np.uint8)
    image[:, PIXELS_YX[:, 0], PIXELS_YX[:, 1]] = 255
    to_microns = Affine(placement, input_axes=("y", "x"), output_axes=("y", "x"))
    images = {
        "he": Image2DModel.parse(
            image,
            dims=("c", "y", "x"),
            scale_factors=[2],
            transformations={system: Sequence([to_microns, cells_to_system])},
        )
    }
    xy = microns_yx[:, ::-1]
    shapes = ShapesModel.parse(xy, geometry=0, radius=np.full(len(xy), 2.0), transformations={system: cells_to_system})
    counts = np.random.default_rng(0).poisson(3, (len(xy), 6)).astype(np.float32)
    table = ad.AnnData(
        counts,
        obs=pd.DataFrame(
            {"region": pd.Categorical(["cells"] * len(xy)), "instance": np.arange(len(xy))},
            index=[f"c{i}" for i in range(len(xy))],
        ),
        var=pd.DataFrame(index=[f"g{i}" for i in range(6)]),
    )
    table.obsm["spatial"] = xy
    table.uns["fmscope"] = {"microns_per_unit": 1.0}  # the cells' units: a store that states none is refused
    table = TableModel.parse(table, region="cells", region_key="region", instance_key="instance")
    spatialdata.SpatialData(images=images, shapes={"cells": shapes}, tables={"table": table}).write(path)
    return microns_yx


@pytest.mark.parametrize(
    "system, cells_scale, angle", [("global", 3.0, 30.0), ("microns", 1.0, -90.0), ("global", 1.0, 0.0)]
)
def test_image_is_placed_by_its_full_transformation(viewer_widget, qtbot, tmp_path, system, cells_scale, angle):
    from spatialdata.transformations import Scale

    viewer, widget = viewer_widget
    path = tmp_path / "rotated.zarr"
    microns_yx = write_store(path, system, Scale([cells_scale] * 2, axes=("y", "x")), angle)
    widget.open_slide(str(path))
    wait_idle(qtbot, widget)
    image, cells = viewer.layers["rotated tissue"], viewer.layers["rotated cells"]
    assert image.multiscale
    assert np.allclose(cells.data, microns_yx)
    in_image = np.array([image.world_to_data(point) for point in cells.data])
    assert np.allclose(in_image, PIXELS_YX, atol=1e-6), in_image  # each cell on its bright pixel
    assert np.all(np.asarray(image.data[0])[PIXELS_YX[:, 0], PIXELS_YX[:, 1], 0] == 255)
    assert widget.slide.image_microns_per_pixel == pytest.approx(0.5)
    corner = np.asarray(image.data_to_world((60, 0)))
    assert np.allclose(corner, (pixel_to_microns_yx(angle) @ [60, 0, 1])[:2])


def paint_halves(layer) -> int:
    """Label 1 on the left half of the annotation layer, 2 on the right; returns the first column of 2."""
    half = layer.data.shape[1] // 2
    layer.data[:, :half] = 1
    layer.data[:, half:] = 2
    layer.refresh()
    return half


def test_annotations_belong_to_their_slide(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    for _ in range(2):  # two slides with the same cells at the same place
        for data, kwargs, kind in sample_data.semi_synthetic_tissue():
            getattr(viewer, f"add_{kind}")(data, **kwargs)
    assert widget.slide_combo.count() == 2
    first, second = (widget.state.slides[widget.slide_combo.itemText(i)] for i in range(2))
    widget.slide_combo.setCurrentIndex(0)
    assert widget.slide is first
    layer = widget.add_annotation_layer()
    assert layer.name == f"{ANNOTATIONS} (semi_synthetic_tissue)"
    half = paint_halves(layer)
    painted = layer.data.copy()
    widget.names_edit.setText("1: left, 2: right")
    columns = np.round((first.adata.obsm["spatial"][:, 0] - layer.translate[1]) / layer.scale[1])
    expected = np.where(columns < half, "left", "right")
    assert np.array_equal(widget.cell_annotations(first), expected)

    widget.slide_combo.setCurrentIndex(1)  # the other slide: the painting is not its own
    assert widget.slide is second
    with pytest.raises(FmscopeError, match="has no annotation layer"):
        widget.cell_annotations(second)
    widget.head_edit.setText(str(tmp_path / "head.pt"))
    widget.train_head()
    wait_idle(qtbot, widget)
    assert "has no annotation layer" in widget.status.text()
    assert PREDICTED not in viewer.layers and "fmscope_predicted_domain" not in second.adata.obs
    assert not (tmp_path / "head.pt").exists()

    own = widget.add_annotation_layer()  # a layer of its own, next to the first slide's
    assert own is not layer and own.name == f"{ANNOTATIONS} (semi_synthetic_tissue (2))"
    assert np.array_equal(layer.data, painted) and not own.data.any()
    assert np.array_equal(widget.cell_annotations(second), np.full(second.adata.n_obs, ""))
    assert np.array_equal(widget.cell_annotations(first), expected)

    widget.slide_combo.setCurrentIndex(0)
    assert widget.add_annotation_layer() is layer  # selected again, never replaced by an empty one
    assert np.array_equal(layer.data, painted)
