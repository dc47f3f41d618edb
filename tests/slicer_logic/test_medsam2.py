"""MedSAM2 as the Slicer module's model choice: its 3D flow on real MRML nodes (slicer-core) writes exactly
what ``fmscope volume --model medsam2`` writes; without a checkpoint: a message and an unchanged scene.

The checkpoint is MedSAM2's official layout with random weights (tests/sam2_checkpoint.py), so the masks
are not anatomy; the point is that the Slicer path and the CLI path are the same computation."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from FMScopeLib import geometry, mrml_arrays
from FMScopeLib.logic import FMScopeLogic, SegmentOptions
from mrml_helpers import add_frame_sequence, add_volume, ijk_to_ras_from_volume, labelmap_ijk_to_ras

from fmscope import samples
from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging import io

RANGE = (8, 10)  # three slices around the key slice keep the CPU run short (MedSAM2 embeds at 512 px)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    pytest.importorskip("sam2", reason="sam2 is installed by make test (Makefile step)")
    from sam2_checkpoint import write_random_medsam2_checkpoint

    return write_random_medsam2_checkpoint(tmp_path_factory.mktemp("medsam2") / "MedSAM2_latest.pt")


@pytest.mark.slow
def test_medsam2_3d_flow_writes_what_the_cli_writes(scene, logic, lung, checkpoint, tmp_path, capsys):
    volume, truth, z, box = lung
    case = samples.get_case("ct_lung_volume")
    out = tmp_path / "cli.nii.gz"
    code = main(
        [
            "volume",
            str(case.image_path),
            "--slice",
            str(z),
            "--box",
            *map(str, box),
            "--model",
            "medsam2",
            "--checkpoint",
            checkpoint,
            "--window",
            "lung",
            "--range",
            *map(str, RANGE),
            "--device",
            "cpu",
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    written = io.read_volume(out)

    matrix = ijk_to_ras_from_volume(volume)
    node = add_volume(scene, volume.array, matrix)
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    slice_box = geometry.SliceBox(2, z, tuple(box))
    segment_id = logic.process(
        node,
        segmentation,
        slice_box,
        SegmentOptions(model="medsam2", checkpoint=checkpoint, window="lung", slice_range=RANGE),
    )
    mask = mrml_arrays.read_segment(segmentation, segment_id, node)

    assert written.array.any() and not written.array[: RANGE[0]].any() and not written.array[RANGE[1] + 1 :].any()
    assert np.array_equal(mask, written.array > 0), "the Slicer Logic and fmscope volume must agree voxel for voxel"
    # ... and in space: the segment lies on the CLI output's grid
    assert np.allclose(labelmap_ijk_to_ras(segmentation, segment_id), ijk_to_ras_from_volume(written), atol=1e-6)
    assert np.allclose(ijk_to_ras_from_volume(written), matrix, atol=1e-6)
    assert logic.sam2("medsam2", checkpoint) is logic.sam2("medsam2", checkpoint)  # loaded once, kept between runs


@pytest.mark.slow
def test_medsam2_repropagation_changes_only_that_side(scene, logic, lung, checkpoint):
    from fmscope.imaging.tracking.volume import track_volume

    volume, truth, z, (x0, y0, x1, y1) = lung
    node = add_volume(scene, volume.array, ijk_to_ras_from_volume(volume))
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    mrml_arrays.ensure_segmentation_converters()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("tumour")
    before = np.zeros(volume.array.shape, bool)  # as if painted by hand on slices z-1..z+1
    before[z - 1 : z + 2, int(y0) : int(y1), int(x0) : int(x1)] = True
    before[z, int(y0) : int(y0) + 6, int(x0) : int(x0) + 6] = False  # the correction on slice z
    mrml_arrays.write_segment(segmentation, segment_id, before, node)
    options = SegmentOptions(
        model="medsam2", checkpoint=checkpoint, window="lung", direction="down", slice_range=(z - 1, z)
    )
    logic.repropagate(node, segmentation, segment_id, 2, z, options)
    after = mrml_arrays.read_segment(segmentation, segment_id, node)
    assert np.array_equal(after[z:], before[z:])  # the corrected slice and everything above: unchanged
    engine = track_volume(
        volume.array,
        z,
        key_masks={1: before[z]},
        checkpoint=checkpoint,
        window="lung",
        device="cpu",
        direction="down",
        slice_range=(z - 1, z),
    )
    assert np.array_equal(after[z - 1], engine[z - 1] > 0)
    assert np.array_equal(after[: z - 1], before[: z - 1])


def _scene_state(scene):
    segmentations = [
        scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))
    ]
    return (
        scene.GetNumberOfNodes(),
        [s.GetSegmentation().GetNumberOfSegments() for s in segmentations],
        [s.GetMTime() for s in segmentations],
    )


@pytest.mark.parametrize("checkpoint_given", [None, "missing.pt"])
def test_medsam2_without_checkpoint_is_refused_and_scene_unchanged(
    scene, logic, lung, checkpoint_given, monkeypatch, tmp_path
):
    monkeypatch.delenv("FMSCOPE_CHECKPOINT_DIR", raising=False)
    volume, truth, z, box = lung
    node = add_volume(scene, volume.array, ijk_to_ras_from_volume(volume))
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    mrml_arrays.ensure_segmentation_converters()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
    painted = segmentation.GetSegmentation().AddEmptySegment("painted")
    mask = np.zeros(volume.array.shape, bool)
    mask[z, 80:100, 80:100] = True
    mrml_arrays.write_segment(segmentation, painted, mask, node)
    sequence = add_frame_sequence(scene, np.zeros((3, 16, 16), np.uint8), np.eye(4))
    checkpoint = None if checkpoint_given is None else str(tmp_path / checkpoint_given)
    options = SegmentOptions(model="medsam2", checkpoint=checkpoint)
    before = _scene_state(scene)
    calls = {
        "volume": lambda: logic.process(node, segmentation, geometry.SliceBox(2, z, tuple(box)), options),
        "re-propagate": lambda: logic.repropagate(node, segmentation, painted, 2, z, options),
        "sequence": lambda: logic.process_sequence(scene, sequence, 0, (2, 2, 10, 10), options),
    }
    for name, call in calls.items():
        with pytest.raises(FmscopeError) as error:
            call()
        message = str(error.value)
        assert "medsam2" in message and "MedSAM2_latest.pt" in message and "Checkpoint" in message, (name, message)
        assert ("No checkpoint is chosen" if checkpoint is None else "does not exist") in message
        assert _scene_state(scene) == before, name
    assert np.array_equal(mrml_arrays.read_segment(segmentation, painted, node), mask)


@pytest.mark.slow
def test_medsam2_cine_sequence_equals_tracking_session(scene, logic, checkpoint):
    from fmscope.imaging.tracking import TrackingSession, open_frames
    from fmscope.samples import sample_data_dir

    clip = open_frames(sample_data_dir() / "echo_a4c_cine.dcm")
    frames = np.stack([clip[i] for i in range(3)])
    box = (130.0, 70.0, 190.0, 140.0)
    sequence = add_frame_sequence(scene, frames, np.eye(4))
    output = logic.process_sequence(
        scene, sequence, 0, box, SegmentOptions(model="medsam2", checkpoint=checkpoint, segment_name="chamber")
    )
    session = TrackingSession(frames, model="medsam2", checkpoint=checkpoint, device="cpu")
    session.add_box(0, 1, box)
    list(session.propagate("both"))
    expected = session.labels()
    assert output.GetNumberOfDataNodes() == 3 and expected.any()
    for index in range(3):
        mask = mrml_arrays.read_segment(output.GetNthDataNode(index), "chamber", sequence.GetNthDataNode(index))
        assert np.array_equal(mask[0], expected[index] == 1), index


@pytest.mark.slow  # ~30 s: MedSAM2 at 512 px on a few slices of a 6-slice crop, then replayed
def test_medsam2_runs_are_recorded_and_replay_to_the_saved_labels(lung, checkpoint, tmp_path):
    from test_session import _load, _write_crop

    from fmscope.session_record.journal import Journal

    path = tmp_path / "crop.nrrd"
    key, box = _write_crop(lung, path)
    scene = slicer.vtkMRMLScene()
    volume_node = _load(scene, path)
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    logic = FMScopeLogic(device="cpu")
    options = SegmentOptions(model="medsam2", checkpoint=checkpoint, window="lung", slice_range=(key, key + 1))
    tumour = logic.process(volume_node, segmentation, geometry.SliceBox(2, key, box), options)
    edited = mrml_arrays.read_segment(segmentation, tumour, volume_node)
    x0, y0, x1, y1 = (int(v) for v in box)
    edited[key + 1, y0:y1, x0:x1] = True  # Segment Editor: the box painted on the next slice (random weights)
    mrml_arrays.write_segment(segmentation, tumour, edited, volume_node)
    again = SegmentOptions(model="medsam2", checkpoint=checkpoint, window="lung", direction="up", slice_range=(0, 4))
    logic.repropagate(volume_node, segmentation, tumour, 2, key + 1, again)
    assert logic.session_note == ""
    live = next(iter(logic._sessions.values()))
    folder, saved = live.recorder.folder, live.labels.copy()
    logic.close_sessions()
    journal = Journal(folder)
    actions = [action for _, action, _ in journal.actions()]
    journal.close()
    assert [(a.kind, a.model) for a in actions] == [("propagate", "medsam2"), ("paint", None), ("propagate", "medsam2")]
    assert actions[0].window[2] == "lung" and actions[0].weights_sha256 and actions[0].backend
    out = tmp_path / "replayed.nii.gz"
    assert main(["replay", str(folder), "-o", str(out), "--checkpoint", checkpoint, "--device", "cpu"]) == 0
    assert np.array_equal(io.read_volume(out).array, saved) and saved.any()
