"""How the Logic translates segment changes into session actions, on real MRML nodes and without running a model:
results are written as the Logic's ``write`` receives them from ``compute`` (a mask and its recorded action)."""

from __future__ import annotations

import numpy as np
import slicer
from FMScopeLib import geometry, mrml_arrays, session
from FMScopeLib.logic import ComputedMask, FMScopeLogic, SegmentOptions
from mrml_helpers import add_volume

from fmscope.session_record import Action
from fmscope.session_record.journal import Journal

SHAPE = (4, 12, 16)  # k, j, i


def _computed(volume_node, mask, sha: str) -> ComputedMask:
    action = Action(
        "propagate",
        0,
        box=(1.0, 1.0, 5.0, 5.0),
        plane=(1,),
        window=(-1000.0, 400.0, "lung"),
        model="litemedsam",
        weights_sha256=sha * 64,
        backend="torch",
        precision="fp32",
        params={"range": [0, 3], "direction": "both", "axes": [0, 1, 2], "from_box": True},
    )
    return ComputedMask(mask, geometry.SliceBox(2, 1, (1.0, 1.0, 5.0, 5.0)), volume_node.GetID(), action)


def _box(k0, k1, j0, j1, i0, i1):
    mask = np.zeros(SHAPE, bool)
    mask[k0:k1, j0:j1, i0:i1] = True
    return mask


def _kinds(folder):
    journal = Journal(folder)
    try:
        return [action.kind for _, action, _ in journal.actions()]
    finally:
        journal.close()


def test_changes_edits_and_a_model_change_are_recorded(scene, tmp_path):
    volume_node = add_volume(scene, np.arange(np.prod(SHAPE)).reshape(SHAPE), np.eye(4), name="no file")
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    logic = FMScopeLogic(device="cpu")
    first = logic.write(
        segmentation, volume_node, _computed(volume_node, _box(0, 3, 1, 6, 1, 6), "a"), SegmentOptions()
    )
    second = logic.write(
        segmentation,
        volume_node,
        _computed(volume_node, _box(1, 2, 7, 10, 8, 12), "a"),
        SegmentOptions(segment_name="second"),
    )
    folder = segmentation.GetAttribute(session.SESSION_ATTRIBUTE)
    # a volume without a file in an unsaved scene: the sessions folder ($FMSCOPE_SESSIONS_DIR, see conftest)
    assert folder.startswith(str(session.sessions_root())) and "no_file-" in folder
    assert session.tagged_segments(segmentation) == {1: first, 2: second}

    segmentation.GetSegmentation().RemoveSegment(second)  # removed in Segment Editor
    edited = mrml_arrays.read_segment(segmentation, first, volume_node)
    edited[2] = False  # erased on one slice
    mrml_arrays.write_segment(segmentation, first, edited, volume_node)
    options = SegmentOptions(segment_id=first)
    logic.write(segmentation, volume_node, _computed(volume_node, _box(0, 2, 1, 5, 1, 5), "a"), options)
    assert _kinds(folder) == ["propagate", "propagate", "paint", "propagate"]
    live = logic._sessions[(segmentation.GetID(), volume_node.GetID())]
    assert np.array_equal(live.labels, _box(0, 2, 1, 5, 1, 5).astype(np.uint16))  # object 2 gone with its segment

    # other weights: this session is left as it is, a new one starts beside it
    logic.write(segmentation, volume_node, _computed(volume_node, _box(0, 1, 1, 3, 1, 3), "b"), options)
    new_folder = segmentation.GetAttribute(session.SESSION_ATTRIBUTE)
    assert new_folder == f"{folder}-2" and logic.session_note == ""
    assert _kinds(folder) == ["propagate", "propagate", "paint", "propagate"]
    assert logic.undo(scene, volume_node)
    assert _kinds(new_folder) == ["propagate", "undo"]
    live = logic._sessions[(segmentation.GetID(), volume_node.GetID())]
    assert np.array_equal(live.labels, _box(0, 2, 1, 5, 1, 5).astype(np.uint16))
    logic.close_sessions()


def test_a_saved_scene_hosts_the_session_of_a_volume_without_a_file(scene, tmp_path):
    volume_node = add_volume(scene, np.zeros(SHAPE), np.eye(4), name="pasted volume")
    scene.SetURL(str(tmp_path / "case.mrml"))
    image = session.image_identity(volume_node)
    assert image.path == ""
    assert session.default_base(volume_node, image) == tmp_path / "pasted_volume.fmscope-session"
    assert session.default_base(volume_node, image, str(tmp_path / "chosen")) == tmp_path / "chosen"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "data.csv").write_text("x")  # a folder of other files: a session folder inside it
    assert session.default_base(volume_node, image, str(tmp_path / "full")) == (
        tmp_path / "full" / "pasted_volume.fmscope-session"
    )


def test_each_segment_reads_back_alone_from_a_shared_layer(scene):
    """Segments share one labelmap layer: reading one must not return its neighbours' voxels."""
    volume_node = add_volume(scene, np.zeros(SHAPE), np.eye(4))
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    mrml_arrays.ensure_segmentation_converters()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    masks = {"a": _box(0, 2, 1, 4, 1, 4), "b": _box(2, 4, 6, 9, 6, 9)}
    ids = {}
    for name, mask in masks.items():
        ids[name] = segmentation.GetSegmentation().AddEmptySegment(name, name, [1.0, 0.0, 0.0])
        mrml_arrays.write_segment(segmentation, ids[name], mask, volume_node)
    for name, mask in masks.items():
        assert np.array_equal(mrml_arrays.read_segment(segmentation, ids[name], volume_node), mask), name
