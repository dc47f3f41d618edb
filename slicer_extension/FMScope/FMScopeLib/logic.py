"""FMScopeLogic: segment a Slicer volume from a box with the fmscope engine.

All behaviour lives here; the widget only binds controls to it. ``compute`` needs no MRML
writes and can run off the GUI thread; ``write`` changes the scene and runs on the GUI
thread; ``process`` does both. Design after SlicerTotalSegmentator's
``TotalSegmentatorLogic.process`` (Logic usable without its widget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.volume import segment_volume

from FMScopeLib import geometry, mrml_arrays


@dataclass
class SegmentOptions:
    """What to run and where to put the result."""

    model: str = "litemedsam"  # a registry name, or the path of an fmscope model file (fmscope train-segmenter)
    checkpoint: str | None = None  # MedSAM / SAM weights (for a model file: the base weights it was tuned from)
    window: str | tuple[float, float] | None = None
    direction: str = "both"
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


def _require_segmentation(segmentation_node) -> None:
    if segmentation_node is None:
        raise FmscopeError("No segmentation is selected.", "Choose or create an output segmentation.")


@dataclass
class _UndoStep:
    segmentation_id: str
    segment_id: str
    previous: np.ndarray | None  # None: the segment was created by the step


@dataclass
class FMScopeLogic:
    """Runs fmscope on MRML volumes; keeps one Segmenter per (model, checkpoint) and an undo stack."""

    device: str | None = None
    _segmenters: dict = field(default_factory=dict)
    _undo: list = field(default_factory=list)

    def segmenter(self, model: str, checkpoint: str | None) -> Segmenter:
        """The (cached) engine for a model; loading errors surface as FmscopeError."""
        key = (model, checkpoint)
        if key not in self._segmenters:
            self._segmenters[key] = Segmenter(model, checkpoint=checkpoint, device=self.device)
        return self._segmenters[key]

    def describe_model(self, model: str, checkpoint: str | None) -> str:
        """One line about a model choice for the UI: its name, or what a model file was tuned from and on."""
        loaded = self.segmenter(model, checkpoint).model
        return loaded.name if loaded.tuned is None else loaded.tuned.describe()

    def compute(self, volume_node, slice_box: geometry.SliceBox, options: SegmentOptions,
                on_slice: Callable[[int, int], None] | None = None) -> ComputedMask:
        """Segment through the volume from ``slice_box``; touches nothing in the scene."""
        voxels = mrml_arrays.volume_array(volume_node)
        along_axis = geometry.permute_to_axis(voxels, slice_box.axis)
        labels = segment_volume(
            along_axis, slice_box.index, {1: list(slice_box.box)},
            segmenter=self.segmenter(options.model, options.checkpoint), window=options.window,
            direction=options.direction, slice_range=options.slice_range or slice_box.slice_range,
            on_slice=on_slice,
        )
        return ComputedMask(geometry.permute_back(labels > 0, slice_box.axis), slice_box, volume_node.GetID())

    def write(self, segmentation_node, volume_node, computed: ComputedMask, options: SegmentOptions) -> str:
        """Put the mask into ``segmentation_node`` (new segment, or ``options.segment_id``); returns its id."""
        _require_segmentation(segmentation_node)
        if computed.volume_id != volume_node.GetID():
            raise FmscopeError("The result belongs to another volume.", "Run again on the selected volume.")
        mrml_arrays.ensure_segmentation_converters()
        segmentation = segmentation_node.GetSegmentation()
        if segmentation.GetNumberOfSegments() == 0:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        if options.segment_id is not None:
            if segmentation.GetSegment(options.segment_id) is None:
                raise FmscopeError(f"Segment '{options.segment_id}' does not exist.", "Pick an existing segment.")
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
        return segment_id

    def process(self, volume_node, segmentation_node, slice_box: geometry.SliceBox,
                options: SegmentOptions | None = None,
                on_slice: Callable[[int, int], None] | None = None) -> str:
        """compute + write: segment ``volume_node`` from ``slice_box`` into ``segmentation_node``."""
        options = options or SegmentOptions()
        _require_segmentation(segmentation_node)  # before the model runs, not after
        return self.write(segmentation_node, volume_node, self.compute(volume_node, slice_box, options, on_slice),
                          options)

    def undo(self, scene, volume_node) -> bool:
        """Revert the last write (remove the new segment or restore the overwritten one)."""
        if not self._undo:
            return False
        step = self._undo.pop()
        segmentation_node = scene.GetNodeByID(step.segmentation_id)
        if segmentation_node is None:
            return False
        if step.previous is None:
            segmentation_node.GetSegmentation().RemoveSegment(step.segment_id)
        else:
            mrml_arrays.write_segment(segmentation_node, step.segment_id, step.previous, volume_node)
        return True
