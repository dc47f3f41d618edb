"""Cine data as a Sequence (slicer-core): 2D frames tracked from a box on one frame into a Sequence of
segmentation nodes holding the engine's masks (TrackingSession run directly), frame for frame."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from FMScopeLib import mrml_arrays
from FMScopeLib.logic import SegmentOptions
from mrml_helpers import add_frame_sequence, add_volume, labelmap_ijk_to_ras

from fmscope.errors import FmscopeError
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.samples import sample_data_dir

N_FRAMES, KEY, BOX = 4, 1, (130.0, 70.0, 190.0, 140.0)  # a box around a heart chamber on frame 1 of the echo clip
FRAME_TO_RAS = np.array([[-0.3, 0, 0, 12.0], [0, -0.3, 0, 40.0], [0, 0, 1.0, -7.5], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def echo() -> np.ndarray:
    """The first frames of the sample echo cine clip (multi-frame DICOM), uint8 RGB (T, H, W, 3)."""
    frames = open_frames(sample_data_dir() / "echo_a4c_cine.dcm")
    return np.stack([frames[i] for i in range(N_FRAMES)])


def _engine_labels(frames: np.ndarray) -> np.ndarray:
    session = TrackingSession(frames, model="litemedsam", device="cpu")
    session.add_box(KEY, 1, BOX)
    list(session.propagate("both"))
    return session.labels()


@pytest.mark.slow
@pytest.mark.parametrize("colour", ["grey", "rgb"])
def test_sequence_of_frames_gives_a_segmentation_sequence_with_the_engines_masks(scene, logic, echo, colour):
    frames = echo[..., 0] if colour == "grey" else echo
    sequence = add_frame_sequence(scene, frames, FRAME_TO_RAS)
    scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())  # the Sequences module does this in Slicer
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    nodes_before = scene.GetNumberOfNodes()
    output = logic.process_sequence(scene, sequence, KEY, BOX, SegmentOptions(segment_name="chamber"))
    assert scene.GetNumberOfNodes() == nodes_before + 1 and output.GetScene() is scene
    assert browser.IsSynchronizedSequenceNodeID(output.GetID())  # plays along with the frames
    assert logic.session_note.startswith("Session not recorded")  # no session records a cine run: said so
    assert output.GetNumberOfDataNodes() == N_FRAMES
    assert output.GetDataNodeClassName() == "vtkMRMLSegmentationNode"
    assert [output.GetNthIndexValue(i) for i in range(N_FRAMES)] == [
        sequence.GetNthIndexValue(i) for i in range(N_FRAMES)
    ]
    expected = _engine_labels(frames)
    assert all(expected[i].any() for i in range(N_FRAMES))
    for index in range(N_FRAMES):
        segmentation = output.GetNthDataNode(index)
        frame_node = sequence.GetNthDataNode(index)
        assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
        mask = mrml_arrays.read_segment(segmentation, "chamber", frame_node)
        assert np.array_equal(mask[0], expected[index] == 1), index
        assert np.allclose(labelmap_ijk_to_ras(segmentation, "chamber"), FRAME_TO_RAS)


def test_bad_sequences_are_refused_and_scene_unchanged(scene, logic):
    volume = add_volume(scene, np.zeros((3, 8, 8)), np.eye(4))  # a 3D volume is not a cine frame
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode")
    sequence.SetDataNodeAtValue(volume, "0")
    empty = scene.AddNewNodeByClass("vtkMRMLSequenceNode")
    mixed = add_frame_sequence(scene, np.zeros((2, 8, 8), np.uint8), np.eye(4))
    mixed.SetDataNodeAtValue(slicer.vtkMRMLSegmentationNode(), "9")
    frames = add_frame_sequence(scene, np.zeros((2, 8, 8), np.uint8), np.eye(4))
    before = scene.GetNumberOfNodes()
    for node, frame, words in [
        (sequence, 0, "3 slices"),
        (empty, 0, "empty"),
        (mixed, 0, "not an image"),
        (None, 0, "No sequence"),
        (frames, 5, "outside"),
    ]:
        with pytest.raises(FmscopeError, match=words) as error:
            logic.process_sequence(scene, node, frame, (1, 1, 5, 5))
        assert "Fix:" in str(error.value)
        assert scene.GetNumberOfNodes() == before


def test_roi_on_a_frame_gives_its_pixel_box(scene):
    from FMScopeLib import geometry
    from mrml_helpers import add_roi, volume_node

    frame = volume_node(np.zeros((1, 240, 320), np.uint8), FRAME_TO_RAS, vtk_type=3)  # VTK_UNSIGNED_CHAR
    roi = add_roi(scene, FRAME_TO_RAS, (130, 70, 0), (190, 140, 0))
    assert np.allclose(geometry.frame_box_from_roi(frame, roi), BOX, atol=1e-6)
    point = FRAME_TO_RAS @ [10, 10, 0, 1]
    assert geometry.slice_at(frame, point[:3], [0, 0, 1]) == (2, 0)
    # a volume stored sagittally (I = the old K axis, 5 mm): a view normal to I shows slice i
    swap = np.array([[0, 0, 0.7, 3.0], [0, 0.7, 0, -2.0], [5.0, 0, 0, 10.0], [0, 0, 0, 1]])
    volume = volume_node(np.zeros((8, 9, 6)), swap)
    point = swap @ [3.2, 4, 5, 1]
    assert geometry.slice_at(volume, point[:3], [0, 0, -1]) == (0, 3)
    with pytest.raises(FmscopeError, match="outside the volume"):
        geometry.slice_at(volume, (swap @ [9, 4, 5, 1])[:3], [0, 0, 1])
