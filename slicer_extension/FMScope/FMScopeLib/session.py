"""The module's session record: MRML segments <-> the engine's labels session (:mod:`fmscope.session_record`).

Only translation lives here; journal, snapshots, resume and replay are the engine's. A session belongs to one
segmentation node on one volume. Its labels are a (k, j, i) uint16 array on the volume's grid; each segment fmscope
acted on is one object id, kept as the segment tag :data:`OBJECT_TAG` (saved in the ``.seg.nrrd``). A voxel
covered by two such segments stays with the object that held it first (the engine's rule,
:func:`fmscope.session_record.paint.paint_mask`), so the labels of overlapping segments are those of napari.

The session folder is named by the segmentation node's attribute :data:`SESSION_ATTRIBUTE` (saved with the scene,
``.mrml`` or ``.mrb``), so a reloaded scene finds it. A new session goes to the folder the user chose, else next to
the volume's file (``ct.nrrd.fmscope-session``), else next to the saved scene (``<volume name>.fmscope-session``),
else under ``$FMSCOPE_SESSIONS_DIR`` (default ``~/fmscope_sessions``), or to the first free numbered sibling of it.
Files in Slicer's temporary folder (a ``.mrb`` unpacked) do not count: a session there would go with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer
import vtk

from fmscope.errors import FmscopeError
from fmscope.session_record import ImageIdentity, ModelIdentity
from fmscope.session_record.find import Found, SessionInfo, default_folder, find_sessions, read_info, sessions_root
from fmscope.session_record.journal import JOURNAL_FILE
from fmscope.session_record.paint import paint_mask
from FMScopeLib import mrml_arrays

SESSION_ATTRIBUTE = "fmscope.session"  # on the segmentation node: the session folder (absolute path)
OBJECT_TAG = "fmscope.object"  # on a segment: its object id in the session's labels


def _safe(name: str) -> str:
    """A node name as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))[:60] or "volume"


def volume_file(volume_node) -> str | None:
    """The file the volume was loaded from (its storage node's), or None."""
    storage = volume_node.GetStorageNode()
    name = storage.GetFileName() if storage is not None else None
    return str(Path(name).absolute()) if name and Path(name).is_file() else None


def image_identity(volume_node) -> ImageIdentity:
    """The volume's identity: the sha256 of its (k, j, i) voxels, with its file's path when it has one (what
    ``fmscope replay`` reads: the same (k, j, i) array as :func:`fmscope.imaging.io.read_volume`)."""
    return ImageIdentity.of(mrml_arrays.volume_view(volume_node), volume_file(volume_node))  # hashed in place


def _temporary(path: Path) -> bool:
    """Whether ``path`` lies in Slicer's temporary folder (where a ``.mrb`` is unpacked: gone after Slicer closes)."""
    app = getattr(slicer, "app", None)  # the Slicer application; slicer-core has none
    folder = getattr(app, "temporaryPath", None)
    return bool(folder) and Path(folder).absolute() in path.absolute().parents


def default_base(volume_node, image: ImageIdentity, chosen: str | None = None) -> Path:
    """The session folder proposed for ``volume_node`` (see the module docstring); ``chosen``: the user's folder (a
    folder of other files gets a session folder inside it: fmscope never writes among files it did not make)."""
    if chosen:
        folder = Path(chosen).expanduser()
        if folder.is_dir() and not (folder / JOURNAL_FILE).exists() and any(folder.iterdir()):
            return folder / f"{_safe(volume_node.GetName())}.fmscope-session"
        return folder
    if image.path and not _temporary(Path(image.path)):
        return default_folder(image.path)
    scene = volume_node.GetScene()
    url = scene.GetURL() if scene is not None else ""
    if url and not _temporary(Path(url)):
        return Path(url).absolute().parent / f"{_safe(volume_node.GetName())}.fmscope-session"
    return sessions_root() / f"{_safe(volume_node.GetName())}-{image.sha256[:12]}.fmscope-session"


def object_of(segmentation_node, segment_id: str) -> int | None:
    """The object id tagged on a segment, or None."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    value = vtk.mutable("")
    if segment is None or not segment.GetTag(OBJECT_TAG, value) or not str(value).isdigit():
        return None
    return int(str(value))


def tag(segmentation_node, segment_id: str, object_id: int) -> None:
    segmentation_node.GetSegmentation().GetSegment(segment_id).SetTag(OBJECT_TAG, str(object_id))


def tagged_segments(segmentation_node) -> dict[int, str]:
    """{object id: segment id} of the segments tagged :data:`OBJECT_TAG`."""
    segmentation = segmentation_node.GetSegmentation()
    found = {}
    for n in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(n)
        object_id = object_of(segmentation_node, segment_id)
        if object_id is not None:
            found[object_id] = segment_id
    return found


def project(labels: np.ndarray, segmentation_node, volume_node) -> np.ndarray:
    """The labels as the tagged segments now are: each object painted with its segment's mask onto a copy of
    ``labels`` (objects whose segment was removed cleared). Equal to ``labels`` when nothing was edited by hand."""
    now = labels.copy()
    segments = tagged_segments(segmentation_node)
    for object_id in np.unique(labels):
        if object_id and int(object_id) not in segments:
            now[now == object_id] = 0
    for object_id, segment_id in sorted(segments.items()):
        paint_mask(now, object_id, mrml_arrays.read_segment(segmentation_node, segment_id, volume_node))
    return now


@dataclass
class Offer:
    """What :meth:`FMScopeLib.logic.FMScopeLogic.find_session` found for a volume and segmentation: the session
    to offer (``resumable``, None: none), the folder a new session goes to (``free``), and ``refused``: one line
    per session of another volume or other weights, naming which (never loaded)."""

    base: Path
    resumable: SessionInfo | None = None
    free: Path | None = None
    refused: list[str] = field(default_factory=list)

    def message(self) -> str:
        """The status line for the module."""
        lines = list(self.refused)
        if self.resumable is not None:
            info = self.resumable
            lines.append(f"Unfinished session {info.folder} ({info.actions} actions, {info.objects} segments): Resume?")
        if self.free is None:
            lines.append(f"Every session folder at {self.base} is taken: choose another session folder.")
        return " ".join(lines) or f"New work is recorded in {self.free}."


def refusal(info: SessionInfo, image: ImageIdentity, model: ModelIdentity) -> str | None:
    """Why the session ``info`` cannot be resumed on ``image`` with ``model`` (None: it can)."""
    if info.image.sha256 != image.sha256:
        return (
            f"{info.folder} is a session of another volume ({info.image.path or 'no file'}, "
            f"{' x '.join(map(str, info.image.shape))}, pixels sha256 {info.image.sha256[:12]}), not this one "
            f"({image.path or 'no file'}, sha256 {image.sha256[:12]}); not loaded."
        )
    if not info.made_with(model):
        return (
            f"{info.folder} is a session made with {info.model.name} (weights sha256 {info.model.weights_sha256[:12]}),"
            f" not {model.name} (weights sha256 {model.weights_sha256[:12]}); not loaded: choose that model to resume."
        )
    return None


def offer(segmentation_node, base: Path, image: ImageIdentity, model: ModelIdentity) -> Offer:
    """The session to offer: the one the segmentation node's :data:`SESSION_ATTRIBUTE` names first (a saved scene),
    else the newest of ``image`` and ``model`` at ``base`` or its numbered siblings."""
    found: Found = find_sessions(base, image, model)
    result = Offer(base, found.resumable, found.free)
    result.refused += [refusal(info, image, model) for info in found.other_image + found.other_weights]
    result.refused += [f"{folder} cannot be read ({why}); not loaded." for folder, why in found.unreadable.items()]
    named = segmentation_node.GetAttribute(SESSION_ATTRIBUTE) if segmentation_node is not None else None
    if (
        named
        and (Path(named) / JOURNAL_FILE).is_file()
        and not any(Path(named) == info.folder for info in found.other_image + found.other_weights)
    ):
        try:
            info = read_info(Path(named))
        except (FmscopeError, KeyError, TypeError, ValueError) as error:
            result.refused.append(f"{named} cannot be read ({error}); not loaded.")
            return result
        why = refusal(info, image, model)
        if why is None:
            result.resumable = info
        else:
            result.refused.append(why)
    return result


def describe_segments(segmentation_node) -> dict[str, list]:
    """{object id (str, as JSON keys are): [segment id, name, [r, g, b]]} of the tagged segments: recorded with
    every action, so resuming re-creates the segments as they were after the last one."""
    segmentation = segmentation_node.GetSegmentation()
    described = {}
    for object_id, segment_id in tagged_segments(segmentation_node).items():
        segment = segmentation.GetSegment(segment_id)
        described[str(object_id)] = [segment_id, segment.GetName(), [float(c) for c in segment.GetColor()]]
    return described


def restore_segments(segmentation_node, volume_node, labels: np.ndarray, segments: dict[str, list]) -> None:
    """Make the tagged segments of ``segmentation_node`` those of ``segments`` (:func:`describe_segments` of the
    last action; re-created with their ids, names and colours where missing, removed where not listed) holding
    ``labels == object id`` each. Untagged segments are left alone."""
    mrml_arrays.ensure_segmentation_converters()
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    existing = tagged_segments(segmentation_node)
    for object_id, segment_id in existing.items():
        if str(object_id) not in segments:
            segmentation.RemoveSegment(segment_id)
    for key, (segment_id, name, color) in sorted(segments.items(), key=lambda item: int(item[0])):
        object_id = int(key)
        if object_id in existing:
            segment_id = existing[object_id]
        else:
            if segmentation.GetSegment(segment_id) is not None:  # the id is another (untagged) segment's now
                segment_id = ""
            segment_id = segmentation.AddEmptySegment(segment_id, name, list(color))
            tag(segmentation_node, segment_id, object_id)
        mrml_arrays.write_segment(segmentation_node, segment_id, labels == object_id, volume_node)
