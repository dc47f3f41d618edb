"""FMScopeLogic: segment a Slicer volume from a box with the fmscope engine.

All behaviour lives here; the widget only binds controls to it. ``compute`` needs no MRML
writes and can run off the GUI thread; ``write`` changes the scene and runs on the GUI
thread; ``process`` does both. Design after SlicerTotalSegmentator's
``TotalSegmentatorLogic.process`` (Logic usable without its widget).

Three flows, each as compute (no MRML writes) + write (scene changes):

* a volume from a box on one slice: LiteMedSAM / MedSAM / SAM slice by slice
  (:func:`fmscope.imaging.volume.segment_volume`), or MedSAM2's 3D flow with a sam2-family model
  (:func:`fmscope.imaging.tracking.volume.track_volume`, what ``fmscope volume --model medsam2`` runs);
* re-propagation of a segment the user corrected on one slice (``compute_repropagation``):
  that slice's mask is the new prompt, only the slices beyond it in the chosen direction change;
* a Sequence of 2D frames (cine) tracked from a box on one frame (``compute_sequence``) into a
  Sequence of segmentation nodes (``write_sequence``) with :class:`fmscope.imaging.tracking.TrackingSession`.

Every change of a segment by ``write`` or ``undo`` is recorded in a session (:mod:`fmscope.session_record`,
translated by :mod:`FMScopeLib.session`): edits made with Segment Editor since the last action first (as a
``paint`` action, from their voxels), then the action itself (``propagate`` with the model, weights, backend,
precision and intensity window, re-run by ``fmscope replay`` slice by slice or with MedSAM2's 3D flow; ``undo``).
``find_session`` / ``resume_session`` offer and restore an unfinished one. A cine Sequence run writes a new Sequence
of segmentations, outside any session: it is not recorded, and ``session_note`` says so.

Volumes larger than ``FMScopeLogic.range_limit_bytes`` (default :data:`RANGE_LIMIT_MB`, the module's setting
*Slice range limit*) are never copied whole for the slice-by-slice models: the engine reads them slice range by
slice range along the slice axis (:class:`fmscope.imaging.volume_ranges.VolumeRanges`, at most that many bytes
at a time, the automatic window computed exactly from the ranges) and gives the same mask, voxel for voxel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from fmscope import checkpoints
from fmscope.errors import FmscopeError
from fmscope.imaging.intensity import resolve_intensity
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.prompts import box_from_mask
from fmscope.imaging.tracking.volume import SAM2_MODELS, track_volume
from fmscope.imaging.volume import segment_volume
from fmscope.imaging.volume_ranges import VolumeRanges
from fmscope.models import DEFAULT_SEGMENTER
from fmscope.progress import Progress
from fmscope.session_record import Action, ImageIdentity, ModelIdentity, Recorder, resume
from fmscope.session_record.action import PAINT, PROPAGATE, UNDO
from fmscope.session_record.engine import engine_identity, sam2_volume_window, window_mapping
from fmscope.session_record.paint import paint_mask
from FMScopeLib import RANGE_LIMIT_MB, geometry, mrml_arrays, session

# A cine run makes a new Sequence of segmentations, never changes a session's segments: said, not silently skipped.
SEQUENCE_NOT_RECORDED = (
    "Session not recorded: 'Track through frames' writes a new Sequence of segmentations, which no session "
    "records (sessions record the segments of a segmentation on a volume). Save the Sequence with the scene to keep it."
)


@dataclass
class SegmentOptions:
    """What to run and where to put the result."""

    # a catalogue name (fmscope.models; the sam2 family runs MedSAM2's 3D flow), or the path of an fmscope model file
    model: str = DEFAULT_SEGMENTER
    # MedSAM2 / MedSAM / SAM weights (for a model file: the base weights it was tuned from);
    # else $FMSCOPE_CHECKPOINT_DIR
    checkpoint: str | None = None
    window: str | tuple[float, float] | None = None
    direction: str = "both"  # both, up (increasing index), down; for sequences up = forward in time
    slice_range: tuple[int, int] | None = None  # along the slice axis; default: the box's own span, else all
    segment_name: str = "fmscope"
    color: tuple[float, float, float] = (0.95, 0.35, 0.25)
    segment_id: str | None = None  # overwrite this segment instead of adding a new one


@dataclass
class ComputedMask:
    """The engine's result on the volume grid, before it is written to the scene."""

    mask_kji: np.ndarray
    slice_box: geometry.SliceBox
    volume_id: str
    # the session action to record once written (object id 0 until then); None: not recorded
    action: Action | None = None
    # (first, last) slices along the slice axis of each range the engine read; empty: the volume was read whole
    ranges_read: tuple[tuple[int, int], ...] = ()


@dataclass
class ComputedSequence:
    """Tracked labels of a Sequence of 2D frames, before they are written to the scene."""

    labels: np.ndarray  # uint16 (T, H, W); object 1 = the box's
    sequence_id: str


def _require_segmentation(segmentation_node) -> None:
    if segmentation_node is None:
        raise FmscopeError("No segmentation is selected.", "Choose or create an output segmentation.")


def require_checkpoint(model: str, checkpoint: str | None) -> None:
    """MedSAM2 / SAM2.1 weights must be chosen (or in $FMSCOPE_CHECKPOINT_DIR) and exist: say so before any work."""
    if model not in SAM2_MODELS:
        return
    spec = checkpoints.get_spec(model)
    try:
        checkpoints.resolve(model, checkpoint)
    except FmscopeError as error:
        chosen = "No checkpoint is chosen" if checkpoint is None else f"The checkpoint '{checkpoint}' does not exist"
        raise FmscopeError(
            f"{chosen} for {model}; fmscope never downloads weights ({error.problem})",
            f"Choose the {spec.filename} file ({spec.source}) under 'Checkpoint' in the FMScope "
            "module (it is remembered), or put it in the folder $FMSCOPE_CHECKPOINT_DIR names.",
        ) from None


def _direction(direction: str, allowed: tuple[str, ...] = ("both", "up", "down")) -> str:
    if direction not in allowed:
        raise FmscopeError(f"Unknown direction '{direction}'.", f"Use one of: {', '.join(allowed)}.")
    return direction


@dataclass
class _UndoStep:
    segmentation_id: str
    segment_id: str
    previous: np.ndarray | None  # None: the segment was created by the step


@dataclass
class _Live:
    """A session being recorded: its recorder and its labels after the last recorded action ((k, j, i) uint16)."""

    recorder: Recorder
    labels: np.ndarray


def _propagation(
    model: ModelIdentity, window: tuple, axis: int, index: int, box, slice_range: tuple[int, int], direction: str
) -> Action:
    """The session action of a propagation by ``model`` (a slice-by-slice model, or MedSAM2's 3D flow) with the
    intensity ``window`` (low, high, name) from ``box`` (or, when the object has pixels there, its mask) on slice
    ``index`` normal to IJK ``axis``, over ``slice_range`` in ``direction`` (object id filled in by ``write``)."""
    return Action(
        PROPAGATE,
        0,
        box=tuple(float(v) for v in box),
        plane=(int(index),),
        window=window,
        model=model.name,
        weights_sha256=model.weights_sha256,
        backend=model.backend,
        precision=model.precision,
        params={
            "range": [int(slice_range[0]), int(slice_range[1])],
            "direction": direction,
            "axes": list(geometry.slice_first_axes(axis)),
        },
        time=time.time(),
    )


@dataclass
class FMScopeLogic:
    """Runs fmscope on MRML volumes; keeps one Segmenter per (model, checkpoint), an undo stack and the sessions
    being recorded (one per segmentation node and volume)."""

    device: str | None = None
    backend: str | None = None  # image encoder runtime: torch / openvino / auto; None: $FMSCOPE_BACKEND, else auto
    record_sessions: bool = True  # record every segment change (fmscope.session_record)
    session_folder: str | None = None  # the user's folder for new sessions; None: beside the volume's file / scene
    session_note: str = ""  # the last session problem (the segment is written all the same), for the status line
    range_limit_bytes: int = RANGE_LIMIT_MB * 2**20  # larger volumes: read slice range by slice range
    _segmenters: dict = field(default_factory=dict)
    _sam2: dict = field(default_factory=dict)
    _undo: list = field(default_factory=list)
    _sessions: dict = field(default_factory=dict)  # (segmentation node id, volume node id) -> _Live
    _identities: dict = field(default_factory=dict)  # volume node id -> ((voxels MTime, file), ImageIdentity)

    def segmenter(self, model: str, checkpoint: str | None) -> Segmenter:
        """The (cached) engine for a model; loading errors surface as FmscopeError."""
        key = (model, checkpoint, self.backend)
        if key not in self._segmenters:
            self._segmenters[key] = Segmenter(model, checkpoint=checkpoint, device=self.device, backend=self.backend)
        return self._segmenters[key]

    def sam2(self, model: str, checkpoint: str | None):
        """The (cached) MedSAM2 / SAM2.1 model for the tracking flows; loading errors surface as FmscopeError."""
        from fmscope.imaging.tracking.sam2_model import load_sam2

        key = (model, checkpoint)
        if key not in self._sam2:
            self._sam2[key] = load_sam2(model, checkpoint, self.device)
        return self._sam2[key]

    def engine_volume(self, volume_node, axis: int) -> np.ndarray | VolumeRanges:
        """The voxels as the engine reads them, the slice axis (IJK ``axis``) first: a copy of the whole volume, or,
        above :attr:`range_limit_bytes`, a :class:`VolumeRanges` copying ranges of at most that many bytes of the
        volume node's own voxels (which must not change while it runs: :meth:`_unchanged` checks)."""
        voxels = mrml_arrays.volume_view(volume_node)
        if voxels.nbytes <= self.range_limit_bytes:
            return geometry.permute_to_axis(voxels.copy(), axis)
        along_axis = geometry.permute_to_axis(voxels, axis)
        return VolumeRanges(
            lambda first, last: np.array(along_axis[first : last + 1]),
            along_axis.shape,
            along_axis.dtype,
            self.range_limit_bytes,
            name=f"'{volume_node.GetName()}'",
        )

    @staticmethod
    def _unchanged(volume_node, source, version: int) -> tuple[tuple[int, int], ...]:
        """The ranges ``source`` read; raises FmscopeError when a volume read range by range changed meanwhile (its
        image data's modification time is no longer ``version``): its ranges may mix two versions."""
        if not isinstance(source, VolumeRanges):
            return ()
        if volume_node.GetImageData().GetMTime() != version:
            raise FmscopeError(
                f"The volume '{volume_node.GetName()}' changed while it was segmented range by range.",
                "Run again without changing the volume meanwhile.",
            )
        return tuple(source.ranges_read)

    @staticmethod
    def _whole(source, volume_node, axis: int) -> np.ndarray:
        """The whole volume, slice axis first (MedSAM2's 3D flow reads it whole)."""
        if isinstance(source, np.ndarray):
            return source
        return geometry.permute_to_axis(mrml_arrays.volume_array(volume_node), axis)

    @staticmethod
    def _intensity(source, window, progress: Progress | None = None):
        """The window for ``source`` (an auto window of a volume read in ranges: read range by range, cancellable)."""
        if isinstance(source, VolumeRanges):
            return source.intensity(window, progress)
        return resolve_intensity(source, window)

    def describe_model(self, model: str, checkpoint: str | None) -> str:
        """One line about a model choice for the UI: its name, or what a model file was tuned from and on."""
        loaded = self.segmenter(model, checkpoint).model
        return loaded.name if loaded.tuned is None else loaded.tuned.describe()

    def compute(
        self,
        volume_node,
        slice_box: geometry.SliceBox,
        options: SegmentOptions,
        progress: Progress | None = None,
    ) -> ComputedMask:
        """Segment through the volume from ``slice_box``; touches nothing in the scene."""
        require_checkpoint(options.model, options.checkpoint)
        along_axis = self.engine_volume(volume_node, slice_box.axis)
        version = volume_node.GetImageData().GetMTime()
        slice_range = options.slice_range or slice_box.slice_range
        if options.model in SAM2_MODELS:  # MedSAM2's 3D flow, as fmscope volume --model medsam2
            loaded = self.sam2(options.model, options.checkpoint)
            whole = self._whole(along_axis, volume_node, slice_box.axis)
            model, window = engine_identity(loaded), sam2_volume_window(whole, options.window)
            labels = track_volume(
                whole,
                slice_box.index,
                {1: list(slice_box.box)},
                model=options.model,
                checkpoint=options.checkpoint,
                window=options.window,
                device=self.device,
                direction=options.direction,
                slice_range=slice_range,
                progress=progress,
                name=volume_node.GetName(),
                loaded=loaded,
                intensity=window_mapping(window),  # the one recorded (what options.window gives)
            )
        else:
            segmenter = self.segmenter(options.model, options.checkpoint)
            intensity = self._intensity(along_axis, options.window, progress)
            model, window = ModelIdentity.of(segmenter), (float(intensity.low), float(intensity.high), intensity.name)
            labels = segment_volume(
                along_axis,
                slice_box.index,
                {1: list(slice_box.box)},
                segmenter=segmenter,
                window=intensity,
                direction=options.direction,
                slice_range=slice_range,
                progress=progress,
            )
        span = slice_range or (0, len(labels) - 1)
        action = _propagation(model, window, slice_box.axis, slice_box.index, slice_box.box, span, options.direction)
        action.params["from_box"] = True
        ranges = self._unchanged(volume_node, along_axis, version)
        mask = geometry.permute_back(labels > 0, slice_box.axis)
        return ComputedMask(mask, slice_box, volume_node.GetID(), action, ranges)

    def compute_repropagation(
        self,
        volume_node,
        segmentation_node,
        segment_id: str,
        axis: int,
        index: int,
        options: SegmentOptions,
        progress: Progress | None = None,
    ) -> ComputedMask:
        """The segment after re-propagating from slice ``index`` (normal to IJK ``axis``), where the user
        corrected it: that slice's mask is the prompt; slices beyond it in ``options.direction`` (up:
        increasing index, down, or both) within ``options.slice_range`` are recomputed, every other
        slice (``index`` itself included) keeps its content. Touches nothing in the scene."""
        _require_segmentation(segmentation_node)
        direction = _direction(options.direction)
        require_checkpoint(options.model, options.checkpoint)
        if segment_id is None or segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
            raise FmscopeError(f"Segment '{segment_id}' does not exist.", "Pick the segment you corrected.")
        if axis not in (0, 1, 2):
            raise FmscopeError(f"Slice axis {axis} is not 0 (I), 1 (J) or 2 (K).", "Give the axis of the slice view.")
        along_axis = self.engine_volume(volume_node, axis)
        version = volume_node.GetImageData().GetMTime()
        current = geometry.permute_to_axis(mrml_arrays.read_segment(segmentation_node, segment_id, volume_node), axis)
        depth = len(current)
        if not 0 <= index < depth:
            raise FmscopeError(
                f"Slice {index} is outside the volume (0..{depth - 1}).", "Show the corrected slice in the slice view."
            )
        key_mask = current[index]
        box = box_from_mask(key_mask)
        if box is None:
            raise FmscopeError(
                f"Segment '{segment_id}' is empty on slice {index}.",
                "Paint the object on this slice with Segment Editor, or go to a slice that shows it.",
            )
        if box[2] <= box[0] or box[3] <= box[1]:  # a one-pixel-wide line: give its box some width
            h, w = key_mask.shape
            box = np.array([max(box[0] - 1, 0), max(box[1] - 1, 0), min(box[2] + 1, w - 1), min(box[3] + 1, h - 1)])
        first, last = options.slice_range or (0, depth - 1)
        if not 0 <= first <= index <= last < depth:
            raise FmscopeError(
                f"Slice range {first}..{last} must lie in 0..{depth - 1} and contain slice {index}.",
                "Adjust the range.",
            )
        if options.model in SAM2_MODELS:
            loaded = self.sam2(options.model, options.checkpoint)
            whole = self._whole(along_axis, volume_node, axis)
            model, window = engine_identity(loaded), sam2_volume_window(whole, options.window)
            labels = track_volume(
                whole,
                index,
                key_masks={1: key_mask},
                model=options.model,
                checkpoint=options.checkpoint,
                window=options.window,
                device=self.device,
                direction=direction,
                slice_range=(first, last),
                progress=progress,
                name=volume_node.GetName(),
                loaded=loaded,
                intensity=window_mapping(window),
            )
        else:
            segmenter = self.segmenter(options.model, options.checkpoint)
            intensity = self._intensity(along_axis, options.window, progress)
            model, window = ModelIdentity.of(segmenter), (float(intensity.low), float(intensity.high), intensity.name)
            labels = segment_volume(
                along_axis,
                index,
                {1: box},
                key_masks={1: key_mask},
                segmenter=segmenter,
                window=intensity,
                direction=direction,
                slice_range=(first, last),
                progress=progress,
            )
        action = _propagation(model, window, axis, index, box, (first, last), direction)
        result = current.copy()
        sides = {"up": [slice(index + 1, last + 1)], "down": [slice(first, index)]}
        for side in sides["up"] + sides["down"] if direction == "both" else sides[direction]:
            result[side] = labels[side] > 0
        return ComputedMask(
            geometry.permute_back(result, axis),
            geometry.SliceBox(axis, index, tuple(box)),
            volume_node.GetID(),
            action,
            self._unchanged(volume_node, along_axis, version),
        )

    def repropagate(
        self,
        volume_node,
        segmentation_node,
        segment_id: str,
        axis: int,
        index: int,
        options: SegmentOptions | None = None,
        progress: Progress | None = None,
    ) -> str:
        """compute_repropagation + write into the same segment (undoable); other segments are not touched."""
        options = replace(options or SegmentOptions(), segment_id=segment_id)
        computed = self.compute_repropagation(
            volume_node, segmentation_node, segment_id, axis, index, options, progress
        )
        return self.write(segmentation_node, volume_node, computed, options)

    # Sequences (cine) ------------------------------------------------------------------------------
    def compute_sequence(
        self,
        sequence_node,
        frame_index: int,
        box,
        options: SegmentOptions,
        progress: Progress | None = None,
    ) -> ComputedSequence:
        """Track the object in ``box`` ([i0, j0, i1, j1] pixels on frame ``frame_index``) through a Sequence
        of 2D frames (one-slice scalar or RGB volume nodes) with the engine's TrackingSession; touches
        nothing in the scene. ``options.direction``: both, up (forward in the sequence) or down;
        ``options.slice_range``: the frames to track (inclusive). ``progress``: told each frame; raises
        :class:`fmscope.errors.Cancelled` once its job is cancelled."""
        from fmscope.imaging.tracking import TrackingSession, open_frames

        direction = {"both": "both", "up": "forward", "down": "backward"}[_direction(options.direction)]
        require_checkpoint(options.model, options.checkpoint)
        frames = mrml_arrays.sequence_frames(sequence_node)
        if not 0 <= int(frame_index) < len(frames):
            raise FmscopeError(
                f"Frame {frame_index} is outside '{sequence_node.GetName()}' (frames 0..{len(frames) - 1}).",
                "Draw the box on a frame of the selected sequence.",
            )
        frames = open_frames(frames)
        backend = None
        if options.model in SAM2_MODELS:
            from fmscope.imaging.tracking.medsam2 import Sam2Tracker

            backend = Sam2Tracker(
                frames,
                model=options.model,
                window=options.window,
                device=self.device,
                loaded=self.sam2(options.model, options.checkpoint),
            )
        session = TrackingSession(
            frames,
            model=options.model,
            checkpoint=options.checkpoint,
            window=options.window,
            device=self.device,
            backend=backend,
        )
        session.add_box(frame_index, 1, list(box))
        for _ in session.propagate(direction, options.slice_range, progress=progress):
            pass
        return ComputedSequence(session.labels(), sequence_node.GetID())

    def write_sequence(self, scene, sequence_node, computed: ComputedSequence, options: SegmentOptions):
        """A new Sequence of segmentation nodes (one per frame, same index values, each on its frame's grid,
        one segment ``options.segment_name``), added to ``scene`` and to the browsers that play the input."""
        if sequence_node is None or computed.sequence_id != sequence_node.GetID():
            raise FmscopeError("The result belongs to another sequence.", "Run again on the selected sequence.")
        n = sequence_node.GetNumberOfDataNodes()
        if n != len(computed.labels):
            raise FmscopeError(
                f"The sequence now has {n} frames, the result {len(computed.labels)}.",
                "Run again on the sequence as it is.",
            )
        mrml_arrays.ensure_segmentation_converters()
        output = mrml_arrays.new_sequence_like(sequence_node, f"{sequence_node.GetName()} {options.segment_name}")
        try:
            for index in range(n):
                frame_node = sequence_node.GetNthDataNode(index)
                segmentation = mrml_arrays.segmentation_for_frame(
                    frame_node, computed.labels[index] == 1, options.segment_name, options.color
                )
                output.SetDataNodeAtValue(segmentation, sequence_node.GetNthIndexValue(index))
            scene.AddNode(output)
        except Exception:
            if output.GetScene() is not None:
                scene.RemoveNode(output)
            raise
        mrml_arrays.add_to_browsers(scene, sequence_node, output)
        self.session_note = SEQUENCE_NOT_RECORDED
        return output

    def process_sequence(
        self,
        scene,
        sequence_node,
        frame_index: int,
        box,
        options: SegmentOptions | None = None,
        progress: Progress | None = None,
    ):
        """compute_sequence + write_sequence; returns the new segmentation Sequence node."""
        options = options or SegmentOptions()
        return self.write_sequence(
            scene, sequence_node, self.compute_sequence(sequence_node, frame_index, box, options, progress), options
        )

    def write(self, segmentation_node, volume_node, computed: ComputedMask, options: SegmentOptions) -> str:
        """Put the mask into ``segmentation_node`` (new segment, or ``options.segment_id``); returns its id."""
        _require_segmentation(segmentation_node)
        if computed.volume_id != volume_node.GetID():
            raise FmscopeError("The result belongs to another volume.", "Run again on the selected volume.")
        mrml_arrays.ensure_segmentation_converters()
        segmentation = segmentation_node.GetSegmentation()
        if segmentation.GetNumberOfSegments() == 0:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        if options.segment_id is not None and segmentation.GetSegment(options.segment_id) is None:
            raise FmscopeError(f"Segment '{options.segment_id}' does not exist.", "Pick an existing segment.")
        live = self._session_before(segmentation_node, volume_node, computed.action, options.segment_id)
        if options.segment_id is not None:
            previous = mrml_arrays.read_segment(segmentation_node, options.segment_id, volume_node)
            segment_id = options.segment_id
        else:
            previous = None
            segment_id = segmentation.AddEmptySegment(options.segment_name, options.segment_name, list(options.color))
        try:
            mrml_arrays.write_segment(segmentation_node, segment_id, computed.mask_kji, volume_node)
        except Exception:
            if previous is None:
                segmentation.RemoveSegment(segment_id)
            raise
        self._undo.append(_UndoStep(segmentation_node.GetID(), segment_id, previous))
        if live is not None:
            params = {"replace": bool(computed.action.params.get("from_box") and previous is not None)}
            self._session_record(live, segmentation_node, segment_id, computed.action, computed.mask_kji, params)
        return segment_id

    def process(
        self,
        volume_node,
        segmentation_node,
        slice_box: geometry.SliceBox,
        options: SegmentOptions | None = None,
        progress: Progress | None = None,
    ) -> str:
        """compute + write: segment ``volume_node`` from ``slice_box`` into ``segmentation_node``."""
        options = options or SegmentOptions()
        _require_segmentation(segmentation_node)  # before the model runs, not after
        require_checkpoint(options.model, options.checkpoint)
        return self.write(
            segmentation_node, volume_node, self.compute(volume_node, slice_box, options, progress), options
        )

    def undo(self, scene, volume_node) -> bool:
        """Revert the last write (remove the new segment or restore the overwritten one)."""
        if not self._undo:
            return False
        step = self._undo.pop()
        segmentation_node = scene.GetNodeByID(step.segmentation_id)
        if segmentation_node is None:
            return False
        live = self._sessions.get((step.segmentation_id, volume_node.GetID())) if volume_node is not None else None
        if live is not None:
            self._record_hand_edits(live, segmentation_node, volume_node)
        object_id = session.object_of(segmentation_node, step.segment_id)
        if step.previous is None:
            segmentation_node.GetSegmentation().RemoveSegment(step.segment_id)
        else:
            mrml_arrays.write_segment(segmentation_node, step.segment_id, step.previous, volume_node)
        if live is not None and object_id is not None:
            labels = session.project(live.labels, segmentation_node, volume_node)
            self._commit(live, segmentation_node, Action(UNDO, object_id), labels)
        return True

    # Sessions (fmscope.session_record) ------------------------------------------------------------------
    def _session_before(self, segmentation_node, volume_node, action: Action | None, segment_id: str | None):
        """The live session for this segmentation and volume, started if needed (in a new folder when the
        model's weights changed), with the Segment Editor edits since the last action recorded; None when the
        action is not recorded. Problems go to ``session_note``: the segment is written all the same."""
        self.session_note = ""
        if not self.record_sessions or action is None:
            return None
        key = (segmentation_node.GetID(), volume_node.GetID())
        live = self._sessions.get(key)
        model = ModelIdentity(action.model, action.weights_sha256, action.backend, action.precision)
        if live is not None and live.recorder.model.weights_sha256 != model.weights_sha256:
            live.recorder.autosave()
            live.recorder.close()
            del self._sessions[key]
            live = None
        try:
            if segment_id is not None and session.object_of(segmentation_node, segment_id) is None:
                session.tag(segmentation_node, segment_id, self._new_object(segmentation_node, live))
            if live is None:
                image = self._image_identity(volume_node)
                base = session.default_base(volume_node, image, self.session_folder)
                found = session.offer(segmentation_node, base, image, model)
                if found.free is None:
                    raise FmscopeError(found.message(), "Choose another session folder in the module.")
                if found.free.parent == session.sessions_root():
                    found.free.parent.mkdir(parents=True, exist_ok=True)
                labels = np.zeros(image.shape, np.uint16)
                labels = session.project(labels, segmentation_node, volume_node)
                live = _Live(Recorder.start(found.free, image, model, labels), labels)
                self._sessions[key] = live
                segmentation_node.SetAttribute(session.SESSION_ATTRIBUTE, str(live.recorder.folder))
            else:
                self._record_hand_edits(live, segmentation_node, volume_node)
        except FmscopeError as error:
            self.session_note = f"Session not recorded: {error}"
            return None
        return live

    def _record_hand_edits(self, live: _Live, segmentation_node, volume_node) -> None:
        """Record what Segment Editor changed in the session's segments since the last action, as one ``paint``
        action (replayed from its voxels)."""
        now = session.project(live.labels, segmentation_node, volume_node)
        changed = np.unique(np.concatenate([live.labels[now != live.labels], now[now != live.labels]]))
        changed = changed[changed > 0]
        if changed.size:
            edit = Action(PAINT, int(changed[0]) if changed.size == 1 else 0, params={"by": "Segment Editor"})
            self._commit(live, segmentation_node, edit, now)

    @staticmethod
    def _new_object(segmentation_node, live: _Live | None) -> int:
        used = set(session.tagged_segments(segmentation_node))
        if live is not None:
            used |= {int(v) for v in np.unique(live.labels)}
        return max(used, default=0) + 1

    def _session_record(
        self, live: _Live, segmentation_node, segment_id: str, action: Action, mask_kji: np.ndarray, params: dict
    ) -> None:
        """Record ``action`` that wrote ``mask_kji`` into ``segment_id`` (tagged with a new object id if needed)."""
        object_id = session.object_of(segmentation_node, segment_id)
        if object_id is None:
            object_id = self._new_object(segmentation_node, live)
            session.tag(segmentation_node, segment_id, object_id)
        labels = live.labels.copy()
        paint_mask(labels, object_id, mask_kji)
        params = {key: value for key, value in {**action.params, **params}.items() if key != "from_box"}
        self._commit(live, segmentation_node, replace(action, object_id=object_id, params=params), labels)

    def _commit(self, live: _Live, segmentation_node, action: Action, labels: np.ndarray) -> None:
        """Record ``action`` after which the session's labels are ``labels``, with the session's segments as they
        now are (params ``segments``: {object id: [segment id, name, colour]}: what resuming re-creates)."""
        action.params["segments"] = session.describe_segments(segmentation_node)
        try:
            live.recorder.record(action, labels)
        except FmscopeError as error:
            self.session_note = f"Session not recorded: {error}"
            return
        live.labels = labels

    def autosave(self) -> int:
        """Snapshot the labels of every live session that changed (off the GUI thread: a background job);
        returns how many were saved."""
        return sum(bool(live.recorder.autosave()) for live in list(self._sessions.values()))

    def find_session(self, volume_node, segmentation_node, options: SegmentOptions) -> session.Offer:
        """The unfinished session to offer for ``volume_node`` and ``segmentation_node`` with ``options.model``
        (see :func:`FMScopeLib.session.offer`); reads only. Hashes the voxels and loads the model: run it off the
        GUI thread."""
        image = self._image_identity(volume_node)
        model = self._model_identity(options)
        base = session.default_base(volume_node, image, self.session_folder)
        return session.offer(segmentation_node, base, image, model)

    def _image_identity(self, volume_node) -> ImageIdentity:
        """The volume's identity (:func:`FMScopeLib.session.image_identity`), hashed once per version of its voxels:
        ``find_session`` hashes off the GUI thread, the first recorded action then finds it done."""
        image_data = volume_node.GetImageData()
        version = (image_data.GetMTime() if image_data is not None else 0, session.volume_file(volume_node))
        cached = self._identities.get(volume_node.GetID())
        if cached is None or cached[0] != version:
            cached = (version, session.image_identity(volume_node))
            self._identities[volume_node.GetID()] = cached
        return cached[1]

    def _model_identity(self, options: SegmentOptions) -> ModelIdentity:
        if options.model in SAM2_MODELS:
            require_checkpoint(options.model, options.checkpoint)
            return engine_identity(self.sam2(options.model, options.checkpoint))
        return ModelIdentity.of(self.segmenter(options.model, options.checkpoint))

    def resume_session(self, volume_node, segmentation_node, options: SegmentOptions, folder: str | None = None):
        """Reopen the session in ``folder`` (None: the one :meth:`find_session` offers) and restore the segments of
        ``segmentation_node`` as after its last completed action: its segments (ids, names, colours) re-created,
        the voxels of each written, segments it had removed removed; other segments untouched. Recording goes on
        in that folder; the undo stack starts empty. Returns the session folder. Raises :class:`FmscopeError` for
        no session, or one made on another volume or with other weights (naming which); the scene is unchanged."""
        _require_segmentation(segmentation_node)
        key = (segmentation_node.GetID(), volume_node.GetID())
        if key in self._sessions:
            raise FmscopeError(
                f"A session is already recorded for '{segmentation_node.GetName()}' in "
                f"{self._sessions[key].recorder.folder}.",
                "Resume into a new segmentation, or go on with this session.",
            )
        image = self._image_identity(volume_node)
        model = self._model_identity(options)
        if folder is None:
            base = session.default_base(volume_node, image, self.session_folder)
            found = session.offer(segmentation_node, base, image, model)
            if found.resumable is None:
                raise FmscopeError(
                    f"No unfinished session of this volume and model. {found.message()}",
                    "Choose the session folder in the module, or start segmenting.",
                )
            folder = found.resumable.folder
        resumed = resume(folder, image, model)
        last = resumed.actions[-1].params.get("segments", {}) if resumed.actions else {}
        try:
            session.restore_segments(segmentation_node, volume_node, resumed.labels, last)
        except BaseException:
            resumed.recorder.close()
            raise
        self._sessions[key] = _Live(resumed.recorder, resumed.labels)
        self._undo = [step for step in self._undo if step.segmentation_id != segmentation_node.GetID()]
        segmentation_node.SetAttribute(session.SESSION_ATTRIBUTE, str(resumed.recorder.folder))
        return str(resumed.recorder.folder)

    def close_sessions(self) -> None:
        """A last snapshot and close of every live session (the module closes, or the scene is cleared)."""
        for live in self._sessions.values():
            live.recorder.autosave()
            live.recorder.close()
        self._sessions.clear()
        self._identities.clear()
