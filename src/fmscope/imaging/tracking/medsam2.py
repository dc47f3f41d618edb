"""MedSAM2 / SAM2.1 tracking through sam2's own video predictor, fed from memory, with bounded state.

* Frames reach the predictor through :class:`~fmscope.imaging.tracking.preprocess.ModelFrames`
  (MedSAM2's preprocessing, made on demand; no JPEG folder, no whole-video tensor).
* Volumes follow MedSAM2's 3D flow: the prompts on the key slice, propagate forward in one
  state, the same prompts in a fresh state, propagate backward, union (the key slice is the
  same in both), and each object's largest 3D connected component. fmscope holds the two
  states side by side instead of resetting one, so a correction re-runs only its direction.
  Videos follow sam2's flow: one state, forward then backward from the first prompted frame.
* Memory is bounded: after each frame, the outputs the model can no longer attend to (more
  than ``max(num_maskmem, max_obj_ptrs_in_encoder)`` frames behind, and not near a prompted
  frame) are dropped; masks stay identical to the unbounded predictor. A correction on a
  frame whose memory was dropped replays the propagation from the object's previous prompted
  frame to it first (exact as long as no prompt was added in between on another frame).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch
from skimage import measure

from fmscope.imaging.image_input import is_blank
from fmscope.imaging.tracking.frames import FrameSource
from fmscope.imaging.tracking.preprocess import MinMaxTo8Bit, ModelFrames, intensity_for
from fmscope.imaging.tracking.prompt import Prompt
from fmscope.imaging.tracking.results import LabelStore, ObjectMask
from fmscope.imaging.tracking.sam2_model import LoadedSam2, load_sam2
from fmscope.models import DEFAULT_VOLUME_TRACKER


def new_inference_state(predictor, images, height: int, width: int) -> dict:
    """An empty sam2 inference state over ``images`` (any sequence of (3, S, S) tensors).

    The same keys as ``SAM2VideoPredictor.init_state`` of sam2 1.1.0 (checked in the tests),
    without reading a video path and without encoding frame 0 in advance.
    """
    device = predictor.device
    return {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": height,
        "video_width": width,
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a binary volume (full connectivity), as MedSAM2's getLargestCC."""
    components = measure.label(mask)
    if components.max() == 0:
        return mask
    return components == np.argmax(np.bincount(components.ravel())[1:]) + 1


class Sam2Tracker:
    """Tracking backend for ``medsam2`` and ``sam2.1_hiera_*`` (see module docstring)."""

    def __init__(
        self,
        frames: FrameSource,
        model: str = DEFAULT_VOLUME_TRACKER,
        checkpoint: str | os.PathLike | None = None,
        window: str | tuple[float, float] | None = None,
        device: str | torch.device | None = None,
        bounded: bool = True,
        loaded: LoadedSam2 | None = None,
        backend: str | None = None,
        precision: str = "fp32",
        intensity: MinMaxTo8Bit | None = None,
    ) -> None:
        """``backend`` / ``precision``: the image encoder's runtime and precision (:func:`load_sam2`).
        ``intensity``: the exact mapping to uint8 (a replayed session's), instead of the one ``window`` gives."""
        self.loaded = loaded if loaded is not None else load_sam2(model, checkpoint, device, backend, precision)
        self.predictor = self.loaded.predictor
        self.frames, self.bounded = frames, bounded
        self.volume_flow = frames.kind == "volume"
        self.intensity = intensity if intensity is not None else intensity_for(frames, window)
        images = ModelFrames(frames, self.intensity, self.loaded.image_size, float64=self.volume_flow)
        count = 2 if self.volume_flow else 1
        self.states = [new_inference_state(self.predictor, images, frames.height, frames.width) for _ in range(count)]
        p = self.predictor
        self.memory_window = max(p.num_maskmem, p.max_obj_ptrs_in_encoder) * p.memory_temporal_stride_for_eval

    def _state(self, reverse: bool) -> dict:
        return self.states[1] if self.volume_flow and reverse else self.states[0]

    def add_prompt(
        self, frame: int, obj: int, prompt: Prompt, reverse: bool | None, append: bool
    ) -> dict[int, ObjectMask]:
        """Give ``obj`` a prompt on ``frame``; ``reverse`` is the direction the frame was tracked
        (None: not tracked yet, the prompt goes to every state). Returns the object's mask there."""
        states = self.states if reverse is None else [self._state(reverse)]
        result = {}
        with torch.inference_mode():
            for state in states:
                if reverse is not None:
                    self._ensure_memory(state, frame, obj, reverse)
                if prompt.mask is not None:
                    _, ids, masks = self.predictor.add_new_mask(state, frame, obj, prompt.mask)
                else:
                    _, ids, masks = self.predictor.add_new_points_or_box(
                        state,
                        frame,
                        obj,
                        points=prompt.points,
                        labels=prompt.labels,
                        clear_old_points=not append,
                        box=prompt.box,
                    )
                index = list(ids).index(obj)
                result = {obj: ObjectMask((masks[index, 0] > 0).cpu().numpy(), self._score(state, index, frame))}
        return result

    def propagate(self, start: int, stop: int, reverse: bool) -> Iterator[tuple[int, dict[int, ObjectMask]]]:
        """Frames ``start`` .. ``stop`` (inclusive, ``stop`` before ``start`` when ``reverse``)."""
        state = self._state(reverse)
        with torch.inference_mode():
            for frame, ids, masks in self.predictor.propagate_in_video(
                state, start_frame_idx=start, max_frame_num_to_track=abs(stop - start), reverse=reverse
            ):
                objects = {
                    obj: ObjectMask((masks[i, 0] > 0).cpu().numpy(), self._score(state, i, frame))
                    for i, obj in enumerate(ids)
                }
                if self.bounded:
                    self._forget(state, frame, reverse)
                yield frame, ({} if is_blank(self.frames[frame]) else objects)  # nothing labelled on a blank frame

    def finish(self, store: LabelStore) -> None:
        """Volumes: keep each object's largest 3D connected component (MedSAM2's last step)."""
        if not self.volume_flow:
            return
        labels = store.stack()
        for obj in sorted(set(np.unique(labels).tolist()) - {0}):
            inside = labels == obj
            labels[inside & ~largest_component(inside)] = 0
        for index in range(store.n_frames):
            store.set_frame(index, labels[index], store.scores.get(index, {}))

    def remove_object(self, obj: int) -> None:
        """Forget ``obj`` in every state (sam2's own ``remove_object``)."""
        with torch.inference_mode():
            for state in self.states:
                self.predictor.remove_object(state, obj, need_output=False)

    @staticmethod
    def _score(state: dict, index: int, frame: int) -> float:
        outputs = state["output_dict_per_obj"][index]
        out = (
            state["temp_output_dict_per_obj"][index]["cond_frame_outputs"].get(frame)
            or state["temp_output_dict_per_obj"][index]["non_cond_frame_outputs"].get(frame)
            or outputs["cond_frame_outputs"].get(frame)
            or outputs["non_cond_frame_outputs"].get(frame)
        )
        return float(torch.sigmoid(out["object_score_logits"].float()).max())

    def _forget(self, state: dict, frame: int, reverse: bool) -> None:
        """Drop outputs the model can no longer attend to (see module docstring)."""
        window = self.memory_window
        for outputs in state["output_dict_per_obj"].values():
            prompted = list(outputs["cond_frame_outputs"])
            stored = outputs["non_cond_frame_outputs"]
            for t in list(stored):
                behind = t - frame if reverse else frame - t
                if behind >= window and all(abs(t - c) > window for c in prompted):
                    del stored[t]

    def _ensure_memory(self, state: dict, frame: int, obj: int, reverse: bool) -> None:
        """Rebuild dropped memory before a correction on ``frame`` by replaying from the previous prompt."""
        index = state["obj_id_to_idx"].get(obj)
        if index is None or frame not in state["frames_tracked_per_obj"][index]:
            return
        outputs = state["output_dict_per_obj"][index]
        window = (
            range(frame - self.memory_window, frame)
            if not reverse
            else range(frame + 1, frame + 1 + self.memory_window)
        )
        needed = [t for t in window if t in state["frames_tracked_per_obj"][index]] + [frame]
        if all(t in outputs["non_cond_frame_outputs"] or t in outputs["cond_frame_outputs"] for t in needed):
            return
        before = [c for c in outputs["cond_frame_outputs"] if (c >= frame if reverse else c <= frame)]
        if not before:
            return
        start = min(before) if reverse else max(before)
        for replayed, _, _ in self.predictor.propagate_in_video(
            state, start_frame_idx=start, max_frame_num_to_track=abs(frame - start), reverse=reverse
        ):
            self._forget(state, replayed, reverse)
