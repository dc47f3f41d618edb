"""An fmscope model file as the Slicer module's model choice (slicer-core MRML scene, real lung CT)."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from FMScopeLib import geometry, mrml_arrays
from FMScopeLib.logic import SegmentOptions
from mrml_helpers import add_volume, ijk_to_ras_from_volume

from fmscope.errors import FmscopeError
from fmscope.imaging.model_file import TunedModel, trained_state, write_model_file
from fmscope.training.segmenter import TRAINED_PARTS

pytestmark = pytest.mark.slow


def test_model_file_is_a_model_choice_and_another_base_is_refused(scene, logic, lung, segmenter, tmp_path):
    volume, truth, z, box = lung
    node = add_volume(scene, volume.array, ijk_to_ras_from_volume(volume))
    # A model file holding the base weights: it must segment exactly like the base, through its own Segmenter.
    path = tmp_path / "tuned.pt"
    tuned = TunedModel(
        "litemedsam",
        "litemedsam",
        segmenter.model.weights_sha256,
        TRAINED_PARTS,
        trained_state(segmenter.model.net, TRAINED_PARTS),
        {"images": 4, "objects": 250},
        0.6,
        0.7,
    )
    write_model_file(path, tuned)
    assert "tuned from litemedsam" in logic.describe_model(str(path), None)
    slice_box = geometry.SliceBox(2, z, tuple(box))
    masks = []
    for model in ("litemedsam", str(path)):
        segmentation = slicer.vtkMRMLSegmentationNode()
        scene.AddNode(segmentation)
        segment_id = logic.process(
            node, segmentation, slice_box, SegmentOptions(model=model, window="lung", slice_range=(z, z))
        )
        masks.append(mrml_arrays.read_segment(segmentation, segment_id, node))
    assert masks[0].any() and np.array_equal(masks[0], masks[1])
    assert logic.segmenter(str(path), None) is not logic.segmenter("litemedsam", None)

    tuned.base_sha256 = "0" * 64
    write_model_file(tmp_path / "other.pt", tuned)
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    with pytest.raises(FmscopeError, match="was tuned from litemedsam"):
        logic.process(node, segmentation, slice_box, SegmentOptions(model=str(tmp_path / "other.pt")))
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0
