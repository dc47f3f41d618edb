"""sam2's video propagation with a frame's objects tracked side by side, one CPU core each.

sam2 1.1.0 tracks every object on its own (``SAM2VideoPredictor.propagate_in_video``: per frame, one
``_run_single_frame_inference`` per object, one after another, each with a batch of one). On the CPU each of
those calls is a chain of small operations (four memory-attention layers on 1,024 tokens, the memory encoder,
the mask decoder) that two intra-op threads share poorly; two objects on two cores, one thread each, finish
sooner than the same two run one after the other on two threads. Each object's computation is unchanged
(the same sam2 method on the same inputs), so the masks are sam2's: only the order of work across cores
differs. The frame's image features are computed once first (sam2 caches them per frame), so the objects'
threads only read them.

Used by :class:`fmscope.imaging.tracking.sam2_model.Sam2Predictor` on the CPU when a frame has several objects
and torch has several threads (fmscope's thread policy gives one thread on a busy machine: then sam2's own
loop runs). The design is the one sam2's loop already implies (objects independent within a frame), not
taken from another project; ``benchmarks/backends.py --sections medsam2`` measures it against sam2 as shipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch


def side_by_side_workers(state: dict) -> int:
    """How many objects of a frame to track at once for sam2 inference ``state``: 1 (sam2's own loop) off the
    CPU, with one object, or with one torch thread; else min(objects, torch threads)."""
    if torch.device(state["device"]).type != "cpu":
        return 1
    return max(1, min(len(state["obj_ids"]), torch.get_num_threads()))


def frames_in_order(
    state: dict, start_frame_idx: int | None, max_frame_num_to_track: int | None, reverse: bool
) -> range:
    """The frame indices sam2's ``propagate_in_video`` visits for these arguments (same defaults: from the
    earliest prompted frame, through the whole video; backwards stops at frame 0 and skips a start at 0)."""
    if start_frame_idx is None:
        prompted = (t for outputs in state["output_dict_per_obj"].values() for t in outputs["cond_frame_outputs"])
        start_frame_idx = min(prompted)
    count = state["num_frames"] if max_frame_num_to_track is None else max_frame_num_to_track
    if reverse:
        return range(start_frame_idx, max(start_frame_idx - count, 0) - 1, -1) if start_frame_idx > 0 else range(0)
    return range(start_frame_idx, min(start_frame_idx + count, state["num_frames"] - 1) + 1)


def propagate_side_by_side(
    predictor: torch.nn.Module,
    state: dict,
    start_frame_idx: int | None,
    max_frame_num_to_track: int | None,
    reverse: bool,
    workers: int,
) -> Iterator[tuple[int, list, torch.Tensor]]:
    """``predictor.propagate_in_video`` with ``workers`` objects at a time, each on one intra-op thread.

    Yields what sam2 yields: (frame index, object ids, masks (objects, 1, H, W) float logits at the video's
    resolution). Objects run ``workers`` at a time while torch has one thread; objects left over (3 objects on
    2 cores: the third) run after them on this thread with torch's own thread count, as do the image encoder
    and the resizing.
    """
    predictor.propagate_in_video_preflight(state)
    objects = list(range(predictor._get_obj_num(state)))
    side_by_side = len(objects) - len(objects) % workers  # the rest run after them, on all threads
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fmscope-sam2-object") as pool:
        for frame in frames_in_order(state, start_frame_idx, max_frame_num_to_track, reverse):

            def track(obj: int, frame: int = frame) -> torch.Tensor:
                return _track_object(predictor, state, obj, frame, reverse)

            predictor._get_image_feature(state, frame, 1)  # computed and cached once, before the threads read it
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # the pool's threads are made now and keep one intra-op thread each
            try:
                masks = list(pool.map(track, objects[:side_by_side]))
            finally:
                torch.set_num_threads(threads)
            masks += [track(obj) for obj in objects[side_by_side:]]
            for obj in objects:
                state["frames_tracked_per_obj"][obj][frame] = {"reverse": reverse}
            _, video_masks = predictor._get_orig_video_res_output(state, torch.cat(masks, dim=0))
            yield frame, state["obj_ids"], video_masks


def _track_object(predictor: torch.nn.Module, state: dict, obj: int, frame: int, reverse: bool) -> torch.Tensor:
    """One object on one frame, as sam2's loop does it: a prompted frame keeps its output (and clears the
    memory around it where sam2 is set to); any other frame runs sam2's single-frame inference with memory.
    Returns the object's mask logits (1, 1, h, w) at the model's low resolution."""
    with torch.inference_mode():  # thread-local: sam2's loop runs under it
        outputs = state["output_dict_per_obj"][obj]
        if frame in outputs["cond_frame_outputs"]:
            if predictor.clear_non_cond_mem_around_input:
                predictor._clear_obj_non_cond_mem_around_input(state, frame, obj)
            return outputs["cond_frame_outputs"][frame]["pred_masks"].to(state["device"], non_blocking=True)
        current, masks = predictor._run_single_frame_inference(
            inference_state=state,
            output_dict=outputs,
            frame_idx=frame,
            batch_size=1,
            is_init_cond_frame=False,
            point_inputs=None,
            mask_inputs=None,
            reverse=reverse,
            run_mem_encoder=True,
        )
        outputs["non_cond_frame_outputs"][frame] = current
        return masks
