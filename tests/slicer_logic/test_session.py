"""The module's session record on real MRML nodes (slicer-core): every segment change recorded, the session kept
with the scene, resumed after a crash, refused for another volume or other weights, and ``fmscope replay`` giving
the saved labels voxel for voxel. A tiny crop of the sample lung CT (6 slices of 96 x 96) keeps it fast."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from FMScopeLib import geometry, mrml_arrays, session
from FMScopeLib.logic import FMScopeLogic, SegmentOptions

from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging import io
from fmscope.session_record import ModelIdentity, resume
from fmscope.session_record.journal import Journal

pytestmark = pytest.mark.slow


def _write_crop(lung, path, shift: int = 0):
    """The crop around the tumour's key slice as a NRRD file; returns (key slice, box) in the crop."""
    volume, _, z, (x0, y0, x1, y1) = lung
    cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
    rows, cols = slice(cy - 48 + shift, cy + 48 + shift), slice(cx - 48, cx + 48)
    crop = np.ascontiguousarray(volume.array[z - 2 : z + 4, rows, cols])
    image = sitk.GetImageFromArray(crop)
    image.SetSpacing(volume.spacing)
    sitk.WriteImage(image, str(path))
    return 2, (x0 - cols.start, y0 - rows.start, x1 - cols.start, y1 - rows.start)


def _load(scene, path):
    """The volume read by Slicer's own archetype storage node (as File > Add Data does)."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName("crop")
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def _segments(segmentation, volume_node) -> dict[str, np.ndarray]:
    seg = segmentation.GetSegmentation()
    return {
        seg.GetNthSegment(n).GetName(): mrml_arrays.read_segment(segmentation, seg.GetNthSegmentID(n), volume_node)
        for n in range(seg.GetNumberOfSegments())
    }


@pytest.fixture(scope="module")
def recorded(lung, logic, tmp_path_factory):
    """A session driven as a user: box (new segment), a Segment Editor edit then re-propagation upwards, a box that
    overwrites the segment, its undo, and a second segment from a coronal box; the scene saved after the first
    action."""
    folder = tmp_path_factory.mktemp("slicer_session")
    path = folder / "crop.nrrd"
    key, box = _write_crop(lung, path)
    scene = slicer.vtkMRMLScene()
    volume_node = _load(scene, path)
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    recorder = FMScopeLogic(device="cpu", _segmenters=logic._segmenters)  # the loaded model, sessions on
    options = SegmentOptions(window="lung", slice_range=(key, key + 1))
    tumour = recorder.process(volume_node, segmentation, geometry.SliceBox(2, key, box), options)

    segment_file = folder / "segmentation.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(segment_file))
    assert storage.WriteData(segmentation)
    segmentation.SetAndObserveStorageNodeID(storage.GetID())
    scene.SetURL(str(folder / "scene.mrml"))
    assert scene.Commit()
    saved_scene = _segments(segmentation, volume_node)

    edited = mrml_arrays.read_segment(segmentation, tumour, volume_node)
    edited[key + 1, :, : int(np.nonzero(edited[key + 1])[1].mean())] = False  # Segment Editor: erase its left half
    mrml_arrays.write_segment(segmentation, tumour, edited, volume_node)
    recorder.repropagate(
        volume_node,
        segmentation,
        tumour,
        2,
        key + 1,
        SegmentOptions(window="lung", direction="up", slice_range=(0, key + 2)),
    )
    x0, y0, x1, y1 = box
    smaller = geometry.SliceBox(2, key, (x0 + 3, y0 + 3, x1 - 3, y1 - 3), (key, key))
    recorder.process(volume_node, segmentation, smaller, SegmentOptions(window="lung", segment_id=tumour))
    assert recorder.undo(scene, volume_node)
    other = geometry.SliceBox(1, 10, (5, 0, 40, 5), (10, 10))  # a coronal box (slices along J): replayed so too
    recorder.process(volume_node, segmentation, other, SegmentOptions(window="lung", segment_name="second"))
    assert recorder.session_note == ""
    last = _segments(segmentation, volume_node)
    live = next(iter(recorder._sessions.values()))
    session_folder = live.recorder.folder
    live.recorder.close()  # killed: no last autosave
    return {
        "folder": folder,
        "path": path,
        "key": key,
        "box": box,
        "session": session_folder,
        "saved_scene": saved_scene,
        "last": last,
        "labels": live.labels,
        "model": live.recorder.model,
    }


def test_every_change_is_recorded_with_its_identity(recorded):
    assert recorded["session"] == recorded["path"].parent / "crop.nrrd.fmscope-session"  # beside the volume's file
    journal = Journal(recorded["session"])
    try:
        actions = [action for _, action, _ in journal.actions()]
        image = journal.meta("image")
    finally:
        journal.close()
    assert [a.kind for a in actions] == ["propagate", "paint", "propagate", "propagate", "undo", "propagate"]
    assert image["path"] == str(recorded["path"]) and tuple(image["shape"]) == (6, 96, 96)
    first = actions[0]
    assert first.model == recorded["model"].name and len(first.weights_sha256) == 64 and first.backend
    assert first.window[2] == "lung" and first.plane == (recorded["key"],)
    assert first.params["range"] == [recorded["key"], recorded["key"] + 1]
    assert actions[3].params["replace"] and not actions[2].params["replace"]
    assert actions[2].params["direction"] == "up" and actions[1].params["by"] == "Segment Editor"
    assert set(actions[-1].params["segments"]) == {"1", "2"}
    assert actions[-1].params["axes"] == [1, 0, 2] and actions[0].params["axes"] == [0, 1, 2]
    # the session's labels are the segments as they are, object by object
    for name, mask in recorded["last"].items():
        object_id = 1 if name == "fmscope" else 2
        assert np.array_equal(recorded["labels"] == object_id, mask), name


def test_replay_gives_the_saved_labels_voxel_for_voxel(recorded, tmp_path, capsys):
    out = tmp_path / "replayed.nii.gz"
    assert main(["replay", str(recorded["session"]), "-o", str(out), "--device", "cpu"]) == 0
    assert "identical to the saved labels" in capsys.readouterr().out
    replayed = io.read_volume(out).array
    assert np.array_equal(replayed, recorded["labels"])
    assert replayed.max() == 2
    assert main(["session", "info", str(recorded["session"])]) == 0
    summary = capsys.readouterr().out
    assert str(recorded["path"]) in summary and "propagate 4" in summary and "paint 1" in summary, summary


def test_saved_scene_finds_and_resumes_the_session(recorded, logic):
    scene = slicer.vtkMRMLScene()
    scene.SetURL(str(recorded["folder"] / "scene.mrml"))
    assert scene.Connect()
    volume_node = scene.GetNthNodeByClass(0, "vtkMRMLScalarVolumeNode")
    segmentation = scene.GetNthNodeByClass(0, "vtkMRMLSegmentationNode")
    assert segmentation.GetAttribute(session.SESSION_ATTRIBUTE) == str(recorded["session"])
    assert _segments(segmentation, volume_node).keys() == recorded["saved_scene"].keys()  # saved after action 1
    fresh = FMScopeLogic(device="cpu", _segmenters=logic._segmenters)
    options = SegmentOptions(window="lung")
    offer = fresh.find_session(volume_node, segmentation, options)
    assert offer.resumable is not None and offer.resumable.folder == recorded["session"]
    assert offer.resumable.actions == 6 and "Resume?" in offer.message()
    assert fresh.resume_session(volume_node, segmentation, options) == str(recorded["session"])
    restored = _segments(segmentation, volume_node)
    assert restored.keys() == recorded["last"].keys()
    for name, mask in recorded["last"].items():
        assert np.array_equal(restored[name], mask), name
    # recording goes on in the same folder
    fresh.undo(scene, volume_node)  # nothing to undo after a resume: the stack starts empty
    key = recorded["key"]
    fresh.process(volume_node, segmentation, geometry.SliceBox(2, key, (60, 60, 80, 80), (key, key)), options)
    assert fresh.session_note == ""
    live = next(iter(fresh._sessions.values()))
    assert live.recorder.folder == recorded["session"] and live.recorder.seq == 7
    fresh.close_sessions()


def test_a_fresh_load_of_the_volume_offers_the_session(recorded, logic):
    scene = slicer.vtkMRMLScene()
    volume_node = _load(scene, recorded["path"])
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    fresh = FMScopeLogic(device="cpu", _segmenters=logic._segmenters)
    offer = fresh.find_session(volume_node, segmentation, SegmentOptions(window="lung"))
    assert offer.resumable is not None and offer.resumable.folder == recorded["session"]


def test_another_volume_or_other_weights_are_refused(recorded, logic, lung, tmp_path):
    scene = slicer.vtkMRMLScene()
    other_path = tmp_path / "shifted.nrrd"
    _write_crop(lung, other_path, shift=4)
    volume_node = _load(scene, other_path)
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    segmentation.SetAttribute(session.SESSION_ATTRIBUTE, str(recorded["session"]))  # a scene naming that session
    fresh = FMScopeLogic(device="cpu", _segmenters=logic._segmenters)
    options = SegmentOptions(window="lung")
    offer = fresh.find_session(volume_node, segmentation, options)
    assert offer.resumable is None
    assert any("another volume" in line and str(recorded["path"]) in line for line in offer.refused), offer.refused
    with pytest.raises(FmscopeError, match="another image"):
        fresh.resume_session(volume_node, segmentation, options, folder=str(recorded["session"]))
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0  # nothing changed

    same = _load(scene, recorded["path"])
    image = session.image_identity(same)
    model = recorded["model"]
    other_weights = ModelIdentity(model.name, "0" * 64, model.backend, model.precision)
    offer = session.offer(segmentation, session.default_base(same, image), image, other_weights)
    assert offer.resumable is None
    assert any("made with" in line and model.weights_sha256[:12] in line for line in offer.refused), offer.refused
    with pytest.raises(FmscopeError, match="weights sha256"):
        resume(recorded["session"], image, other_weights)
