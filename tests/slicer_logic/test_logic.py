"""FMScope Logic on real MRML nodes (slicer-core) and the real lung CT, any orientation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import slicer
from FMScopeLib import geometry, mrml_arrays
from FMScopeLib.logic import SegmentOptions
from mrml_helpers import add_roi, add_volume, ijk_to_ras_from_volume

from fmscope import samples
from fmscope.errors import FmscopeError
from fmscope.imaging import io
from fmscope.metrics import dice

pytestmark = pytest.mark.slow


def _run(scene, logic, array_kji, ijk_to_ras, ijk_min, ijk_max, **options):
    volume_node = add_volume(scene, array_kji, ijk_to_ras)
    roi = add_roi(scene, ijk_to_ras, ijk_min, ijk_max)
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    box = geometry.slice_box_from_roi(volume_node, roi)
    segment_id = logic.process(volume_node, segmentation, box, SegmentOptions(window="lung", **options))
    return volume_node, segmentation, segment_id, box


def _centroid_ras(mask_kji, ijk_to_ras):
    k, j, i = np.nonzero(mask_kji)
    return (ijk_to_ras @ np.array([i.mean(), j.mean(), k.mean(), 1.0]))[:3]


def test_segment_matches_truth_and_cli(scene, logic, lung, tmp_path):
    volume, truth, z, (x0, y0, x1, y1) = lung
    matrix = ijk_to_ras_from_volume(volume)
    volume_node, segmentation, segment_id, box = _run(scene, logic, volume.array, matrix, (x0, y0, z), (x1, y1, z))
    assert (box.axis, box.index) == (2, z)
    assert segmentation.GetSegmentation().GetSegment(segment_id).GetName() == "fmscope"
    mask = mrml_arrays.read_segment(segmentation, segment_id, volume_node)
    score = dice(mask, truth)
    assert score >= 0.7, score

    case = samples.get_case("ct_lung_volume")
    out = tmp_path / "cli.nii.gz"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fmscope.cli",
            "volume",
            str(case.image_path),
            "--slice",
            str(z),
            "--box",
            *map(str, (x0, y0, x1, y1)),
            "--window",
            "lung",
            "-o",
            str(out),
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert result.returncode == 0, result.stderr
    assert np.array_equal(io.read_volume(out).array > 0, mask), "the CLI and the Slicer Logic must agree"


def test_result_follows_origin_and_flipped_axis(scene, logic, lung):
    volume, truth, z, (x0, y0, x1, y1) = lung
    base = ijk_to_ras_from_volume(volume)
    _, seg_a, id_a, _ = _run(scene, logic, volume.array, base, (x0, y0, z), (x1, y1, z))
    mask_a = mrml_arrays.read_segment(seg_a, id_a, scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetItemAsObject(0))

    # Move the origin 40 mm and flip the I axis (array flipped to keep the anatomy where it is).
    moved = base.copy()
    moved[:3, 3] += [40.0, -25.0, 10.0]
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, volume.array.shape[2] - 1
    flipped = moved @ flip  # voxel i of the new grid = voxel (n - 1 - i) of the old one
    array_flipped = volume.array[:, :, ::-1]
    n = volume.array.shape[2]
    node_b, seg_b, id_b, box_b = _run(scene, logic, array_flipped, flipped, (n - 1 - x1, y0, z), (n - 1 - x0, y1, z))
    mask_b = mrml_arrays.read_segment(seg_b, id_b, node_b)
    truth_b = truth[:, :, ::-1]
    assert dice(mask_b, truth_b) >= 0.7
    shift = _centroid_ras(mask_b, flipped) - _centroid_ras(mask_a, base)
    assert np.allclose(shift, [40.0, -25.0, 10.0], atol=1.5), shift  # the segment moved with the anatomy
    assert np.allclose(_centroid_ras(mask_b, flipped), _centroid_ras(truth_b, flipped), atol=2.0)


def test_sagittal_acquisition_with_anisotropic_spacing(scene, logic, lung):
    """The same anatomy stored with the slice axis as I (sagittal-like layout): the key slice is
    taken along the axis the box is thin in, and the result lands on the tumour in RAS."""
    volume, truth, z, (x0, y0, x1, y1) = lung
    base = ijk_to_ras_from_volume(volume)
    # New grid: (i', j', k') = (k, j, i) of the old one, so the 5 mm axis is now I.
    swap = np.eye(4)[[2, 1, 0, 3]]
    matrix = base @ swap
    array = np.ascontiguousarray(volume.array.transpose(2, 1, 0))  # (k', j', i') = (i, j, k)
    node, segmentation, segment_id, box = _run(scene, logic, array, matrix, (z, y0, x0), (z, y1, x1))
    assert (box.axis, box.index) == (0, z)
    mask = mrml_arrays.read_segment(segmentation, segment_id, node)
    assert dice(mask, truth.transpose(2, 1, 0)) >= 0.7
    assert np.allclose(_centroid_ras(mask, matrix), _centroid_ras(truth, base), atol=2.0)


def test_corners_on_a_slice_view(scene, lung):
    volume, truth, z, (x0, y0, x1, y1) = lung
    matrix = ijk_to_ras_from_volume(volume)
    node = add_volume(scene, volume.array, matrix)
    a = (matrix @ [x0, y0, z, 1])[:3]
    b = (matrix @ [x1, y1, z, 1])[:3]
    box = geometry.slice_box_from_corners(node, a, b, slice_normal_ras=[0, 0, 1])
    assert (box.axis, box.index) == (2, z)
    assert np.allclose(box.box, (x0, y0, x1, y1), atol=1e-6)


def test_overwrite_and_undo(scene, logic, lung):
    volume, truth, z, (x0, y0, x1, y1) = lung
    matrix = ijk_to_ras_from_volume(volume)
    node, segmentation, segment_id, box = _run(scene, logic, volume.array, matrix, (x0, y0, z), (x1, y1, z))
    first = mrml_arrays.read_segment(segmentation, segment_id, node)
    smaller = geometry.SliceBox(2, z, (x0 + 4, y0 + 4, x1 - 4, y1 - 4))
    logic.process(node, segmentation, smaller, SegmentOptions(window="lung", segment_id=segment_id))
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert not np.array_equal(mrml_arrays.read_segment(segmentation, segment_id, node), first)
    assert logic.undo(scene, node)
    assert np.array_equal(mrml_arrays.read_segment(segmentation, segment_id, node), first)
    assert logic.undo(scene, node)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0


def _scene_state(scene):
    segments = [
        scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode").GetSegmentation().GetNumberOfSegments()
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))
    ]
    return scene.GetNumberOfNodes(), segments


@pytest.mark.parametrize("problem", ["outside", "2d", "no_volume", "model", "no_segmentation"])
def test_bad_input_leaves_scene_unchanged(scene, logic, lung, problem, monkeypatch):
    volume, truth, z, (x0, y0, x1, y1) = lung
    matrix = ijk_to_ras_from_volume(volume)
    node = add_volume(scene, volume.array if problem != "2d" else volume.array[z : z + 1], matrix)
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    options = SegmentOptions(window="lung")
    box = geometry.SliceBox(2, 0 if problem == "2d" else z, (x0, y0, x1, y1))
    target = segmentation
    if problem == "outside":
        roi = add_roi(scene, matrix, (500, 500, z), (560, 560, z))
        box = geometry.slice_box_from_roi(node, roi)
    elif problem == "no_volume":
        node = None
    elif problem == "model":
        monkeypatch.delenv("FMSCOPE_CHECKPOINT_DIR", raising=False)
        options.model = "medsam_vit_b"
    elif problem == "no_segmentation":
        target = None
    before = _scene_state(scene)
    with pytest.raises(FmscopeError) as error:
        logic.process(node, target, box, options)
    assert "Fix:" in str(error.value)
    assert _scene_state(scene) == before


def test_roi_outside_the_volume_is_refused_when_placed(scene, lung):
    volume, truth, z, _ = lung
    matrix = ijk_to_ras_from_volume(volume)
    node = add_volume(scene, volume.array, matrix)
    roi = add_roi(scene, matrix, (10, 10, 80), (40, 40, 80))
    with pytest.raises(FmscopeError, match="outside the volume"):
        geometry.slice_box_from_roi(node, roi)
