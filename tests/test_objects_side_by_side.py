"""A frame's objects tracked side by side (one core each) give sam2's own loop's masks, frame for frame."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from sam2.sam2_video_predictor import SAM2VideoPredictor  # installed by `make install` (sam2==1.1.0)
from sam2_checkpoint import write_random_medsam2_checkpoint

from fmscope.imaging.tracking.objects_side_by_side import frames_in_order, propagate_side_by_side
from fmscope.imaging.tracking.sam2_model import load_sam2

BOXES = {1: [6, 6, 30, 30], 2: [36, 8, 62, 34], 3: [20, 40, 50, 70]}  # 3 objects on 2 threads: 2 + 1


def disc_frames(folder, n_frames: int = 3) -> str:
    """JPEG frames 72 x 96 of three bright discs drifting right by 3 px a frame (sam2's folder input)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:72, :96]
    folder.mkdir()
    for t in range(n_frames):
        frame = np.full((72, 96), 40.0)
        for cy, cx, r in ((18, 18, 10), (22, 49, 11), (55, 35, 12)):
            frame[(yy - cy) ** 2 + (xx - cx - 3 * t) ** 2 < r * r] = 190
        frame = np.clip(frame + rng.integers(0, 25, frame.shape), 0, 255).astype(np.uint8)
        Image.fromarray(np.repeat(frame[..., None], 3, axis=-1)).save(folder / f"{t:05d}.jpg", quality=95)
    return str(folder)


def propagations(predictor, folder: str, side_by_side: bool) -> list[tuple[int, list, torch.Tensor]]:
    """What propagation yields from three boxes on frame 0: forwards through the video, then backwards from
    frame 2 for one frame."""
    predictor.objects_side_by_side = side_by_side
    state = predictor.init_state(folder)
    for obj, box in BOXES.items():
        predictor.add_new_points_or_box(state, 0, obj, box=box)
    out = [(frame, list(ids), masks.clone()) for frame, ids, masks in predictor.propagate_in_video(state)]
    backwards = predictor.propagate_in_video(state, start_frame_idx=2, max_frame_num_to_track=1, reverse=True)
    return out + [(frame, list(ids), masks.clone()) for frame, ids, masks in backwards]


@pytest.mark.slow
def test_objects_side_by_side_give_sam2s_loop_masks(tmp_path):
    checkpoint = write_random_medsam2_checkpoint(tmp_path / "MedSAM2_latest.pt")
    predictor = load_sam2("medsam2", checkpoint, "cpu", "torch").predictor
    folder = disc_frames(tmp_path / "jpg")
    threads_seen: set[str] = set()
    original = predictor._run_single_frame_inference

    def recording(*args, **kwargs):
        threads_seen.add(threading.current_thread().name)
        return original(*args, **kwargs)

    predictor._run_single_frame_inference = recording
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # side by side needs two threads (the CI machine has two cores)
    try:
        expected = propagations(predictor, folder, side_by_side=False)
        assert threads_seen == {threading.current_thread().name}
        threads_seen.clear()
        ours = propagations(predictor, folder, side_by_side=True)
        assert torch.get_num_threads() == 2  # restored after each frame
    finally:
        torch.set_num_threads(before)
    assert len({name for name in threads_seen if name.startswith("fmscope-sam2-object")}) == 2  # two at once
    assert threading.current_thread().name in threads_seen  # and the third after them, on all threads

    assert [(frame, ids) for frame, ids, _ in ours] == [(frame, ids) for frame, ids, _ in expected]
    assert [frame for frame, _, _ in ours] == [0, 1, 2, 2, 1]
    for (_, _, mine), (_, _, theirs) in zip(ours, expected, strict=True):
        assert mine.shape == theirs.shape == (3, 1, 72, 96)
        assert 0.01 < float((theirs > 0).float().mean()) < 0.9  # neither empty nor everything
        assert torch.equal(mine > 0, theirs > 0)
        assert float((mine - theirs).abs().max()) <= 1e-3 * float(theirs.abs().max())


@pytest.mark.parametrize(
    ("start", "count", "reverse", "frames"),
    [(None, None, False, [1, 2, 3, 4, 5]), (2, 2, False, [2, 3, 4]), (4, None, True, [4, 3, 2, 1, 0]),
     (3, 1, True, [3, 2]), (0, None, True, []), (5, 9, False, [5])],
)  # fmt: skip
def test_frames_in_order_are_sam2s(start, count, reverse, frames):
    prompted = {0: {"cond_frame_outputs": {3: {}}}, 1: {"cond_frame_outputs": {1: {}}}}  # objects' prompted frames
    state = {"num_frames": 6, "output_dict_per_obj": prompted}
    assert list(frames_in_order(state, start, count, reverse)) == frames


def test_side_by_side_is_sam2s_signature():
    """fmscope's loop answers sam2's ``propagate_in_video`` arguments (the names sam2 1.1.0 uses)."""
    import inspect

    sam2s = list(inspect.signature(SAM2VideoPredictor.propagate_in_video).parameters)
    assert sam2s == ["self", "inference_state", "start_frame_idx", "max_frame_num_to_track", "reverse"]
    assert list(inspect.signature(propagate_side_by_side).parameters)[2:5] == sam2s[2:5]
