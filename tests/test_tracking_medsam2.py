"""MedSAM2 tracking equals the official procedure: sam2's own video predictor, fed the official way.

The checkpoint is MedSAM2's layout (``{"model": state_dict}`` of SAM2.1 Hiera-T at 512 px) with
random weights built by the sam2 package here; its mask decoder and prompt encoder are re-drawn
with a fixed seed so that the masks follow the image (neither empty nor the whole box).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from fmscope.errors import FmscopeError
from fmscope.imaging.io import Volume
from fmscope.imaging.tracking import TrackingSession, paint_labels, volume_frames
from fmscope.imaging.tracking.medsam2 import largest_component, new_inference_state
from fmscope.imaging.tracking.results import ObjectMask
from fmscope.imaging.tracking.sam2_model import fill_holes, sam2_overrides
from fmscope.metrics import dice

sam2 = pytest.importorskip("sam2", reason="sam2 is installed by make test (Makefile step)")

from sam2_checkpoint import CONFIG, write_random_medsam2_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return write_random_medsam2_checkpoint(tmp_path_factory.mktemp("medsam2") / "MedSAM2_latest.pt")


def cpu_connected_components(mask: torch.Tensor):
    """sam2's CUDA kernel get_connected_components, on the CPU (8-connectivity): labels and areas."""
    labels, counts = np.zeros(mask.shape, np.int32), np.zeros(mask.shape, np.int32)
    for index in np.ndindex(mask.shape[:2]):
        comp, _ = ndimage.label(mask[index].numpy(), structure=np.ones((3, 3)))
        labels[index] = comp
        counts[index] = np.where(comp > 0, np.bincount(comp.ravel())[comp], 0)
    return torch.from_numpy(labels), torch.from_numpy(counts)


@pytest.fixture
def official(checkpoint, monkeypatch):
    """sam2's video predictor as its build function makes it, with its hole filling available on CPU."""
    from sam2.build_sam import build_sam2_video_predictor

    monkeypatch.setattr("sam2.utils.misc.get_connected_components", cpu_connected_components)
    return build_sam2_video_predictor(
        CONFIG,
        checkpoint,
        device="cpu",
        hydra_overrides_extra=sam2_overrides(512)
        + [
            # corrections become conditioning frames (fmscope's setting; see sam2_model._build)
            "++model.add_all_frames_to_correct_as_cond=true"
        ],
    )


def moving_discs(n_frames: int, centres, shape=(72, 96), step=4, rgb=True) -> np.ndarray:
    """uint8 frames of bright discs drifting right on a noisy background."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    frames = np.zeros((n_frames, *shape), np.float64) + 40
    for t in range(n_frames):
        for cy, cx, r in centres:
            frames[t][(yy - cy) ** 2 + (xx - cx - step * t) ** 2 < r * r] = 190
    frames = np.clip(frames + rng.integers(0, 25, frames.shape), 0, 255).astype(np.uint8)
    return np.repeat(frames[..., None], 3, axis=-1) if rgb else frames


def write_jpeg_folder(frames: np.ndarray, folder) -> str:
    """The official input: a folder of <index>.jpg frames."""
    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return str(folder)


def collect(predictor, state, labels, **kwargs) -> None:
    """Paint what propagate_in_video yields into {frame: {obj: ObjectMask}} (last result per frame wins)."""
    for frame, ids, masks in predictor.propagate_in_video(state, **kwargs):
        labels[frame] = {
            obj: ObjectMask((masks[i, 0] > 0).numpy(), _score(state, i, frame)) for i, obj in enumerate(ids)
        }


def _score(state, index, frame) -> float:
    out = state["output_dict_per_obj"][index]
    out = out["cond_frame_outputs"].get(frame) or out["non_cond_frame_outputs"][frame]
    return float(torch.sigmoid(out["object_score_logits"]).max())


def assert_same(session: TrackingSession, reference: dict, objects) -> None:
    ours = session.labels()
    shape = ours.shape[1:]
    assert sorted(reference) == list(range(len(ours)))
    for obj in objects:
        masks = np.stack([reference[t][obj].mask for t in range(len(ours))])
        assert 0.05 < masks[0].mean() < 0.5, "the test's masks must be neither empty nor everything"
        assert masks.any(axis=(1, 2)).all(), "the object must be found on every frame"
        truth = np.stack([paint_labels(reference[t], shape) == obj for t in range(len(ours))])
        assert dice(ours == obj, truth) >= 0.999, obj


@pytest.mark.slow
def test_video_box_on_frame_zero_equals_official(checkpoint, official, tmp_path):
    frames = moving_discs(3, [(34, 30, 14)])
    folder = write_jpeg_folder(frames, tmp_path / "jpg")
    state = official.init_state(folder)
    official.add_new_points_or_box(state, 0, 1, box=[12, 16, 48, 52])
    reference = {}
    collect(official, state, reference)

    session = TrackingSession(folder, model="medsam2", checkpoint=checkpoint, device="cpu")
    session.add_box(0, 1, [12, 16, 48, 52])
    results = list(session.propagate("both"))
    assert [r.frame for r in results] == [0, 1, 2] and results[-1].done == results[-1].total == 3
    assert_same(session, reference, [1])


@pytest.mark.slow
def test_two_objects_and_a_correction_click_equal_official(checkpoint, official, tmp_path):
    frames = moving_discs(4, [(22, 22, 11), (50, 50, 12)], step=3)
    folder = write_jpeg_folder(frames, tmp_path / "jpg")
    boxes = {1: [8, 8, 36, 36], 2: [35, 35, 66, 66]}
    state = official.init_state(folder)
    for obj, box in boxes.items():
        official.add_new_points_or_box(state, 0, obj, box=box)
    reference = {}
    collect(official, state, reference)
    official.add_new_points_or_box(state, 2, 2, points=[[55, 50]], labels=[1])
    collect(official, state, reference, start_frame_idx=2)

    session = TrackingSession(folder, model="medsam2", checkpoint=checkpoint, device="cpu")
    for obj, box in boxes.items():
        session.add_box(0, obj, box)
    list(session.propagate("both"))
    session.add_points(2, 2, [[55, 50]], [1])
    corrected = list(session.propagate())
    assert [r.frame for r in corrected] == [2, 3]  # from the correction to the end, nothing before
    assert_same(session, reference, [1, 2])


def medsam2_reference_volume(official, volume: np.ndarray, window: tuple[float, float], key: int, box) -> np.ndarray:
    """MedSAM2's medsam2_infer_3D_CT.py flow on sam2's predictor (its frames handed over in memory)."""
    from unittest import mock

    clipped = np.clip(volume, *window)
    mapped = np.uint8((clipped - clipped.min()) / (clipped.max() - clipped.min()) * 255.0)
    resized = np.zeros((len(mapped), 3, 512, 512))
    for z in range(len(mapped)):
        resized[z] = np.array(Image.fromarray(mapped[z]).convert("RGB").resize((512, 512))).transpose(2, 0, 1)
    images = torch.from_numpy(resized / 255.0)
    images -= torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
    images /= torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]
    segs = np.zeros(volume.shape, np.uint8)
    with mock.patch("sam2.sam2_video_predictor.load_video_frames", lambda **_: (images, *volume.shape[1:])):
        state = official.init_state(None)
    for reverse in (False, True):
        official.add_new_points_or_box(state, key, 1, box=box)
        for frame, _, masks in official.propagate_in_video(state, reverse=reverse):
            segs[frame, (masks[0] > 0).numpy()[0]] = 1
        official.reset_state(state)
    return largest_component(segs)


@pytest.mark.slow
def test_ct_volume_box_on_key_slice_follows_medsam2_3d_flow(checkpoint, official):
    rng = np.random.default_rng(5)
    zz, yy, xx = np.mgrid[:4, :64, :80]
    hu = np.where((yy - 30) ** 2 + (xx - 36) ** 2 + 40 * (zz - 1.5) ** 2 < 200, 60, -700) + rng.normal(0, 30, zz.shape)
    hu = hu.astype(np.int16)
    box, key = [18, 12, 56, 48], 1
    reference = medsam2_reference_volume(official, hu, (-1000, 400), key, box)

    frames = volume_frames(Volume(hu, (0.7, 0.7, 2.5), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    session = TrackingSession(frames, model="medsam2", checkpoint=checkpoint, window=(-300, 1400), device="cpu")
    session.add_box(key, 1, box)
    list(session.propagate("both"))
    ours = session.labels() == 1
    assert 0.05 < reference[key].mean() < 0.5 and reference.any(axis=(1, 2)).sum() >= 3
    assert dice(ours, reference) >= 0.999


def test_inference_state_has_sam2s_keys(checkpoint, official, tmp_path):
    folder = write_jpeg_folder(moving_discs(1, [(30, 30, 10)]), tmp_path / "jpg")
    assert set(new_inference_state(official, [], 72, 96)) == set(official.init_state(folder))


def test_fill_holes_matches_sam2_rule():
    logits = torch.full((1, 1, 12, 12), 3.0)
    logits[0, 0, 2:4, 2:4] = -1  # 4-pixel hole: filled
    logits[0, 0, 6:9, 6:9] = -1  # 9-pixel hole: kept
    logits[0, 0, 0, 11] = -2  # corner pixel: 1-pixel hole
    filled = fill_holes(logits)
    assert (filled[0, 0, 2:4, 2:4] == 0.1).all() and (filled[0, 0, 6:9, 6:9] == -1).all()
    assert filled[0, 0, 0, 11] == 0.1 and (filled[logits > 0] == 3).all()


def test_other_architectures_and_pickles_are_refused(tmp_path):
    lite = tmp_path / "lite.pt"
    torch.save({"image_encoder.layers.0.conv.weight": torch.zeros(1)}, lite)
    with pytest.raises(FmscopeError, match="looks like LiteMedSAM"):
        TrackingSession(moving_discs(2, [(30, 30, 10)]), model="medsam2", checkpoint=lite)
    sam1 = tmp_path / "sam.pth"
    torch.save({f"image_encoder.blocks.{i}.attn.qkv.weight": torch.zeros(1) for i in range(12)}, sam1)
    with pytest.raises(FmscopeError, match=r"SAM / MedSAM \(ViT-B"):
        TrackingSession(moving_discs(2, [(30, 30, 10)]), model="medsam2", checkpoint=sam1)
    pickle = tmp_path / "object.pt"
    torch.save({"model": object()}, pickle)
    with pytest.raises(FmscopeError, match="weights_only"):
        TrackingSession(moving_discs(2, [(30, 30, 10)]), model="medsam2", checkpoint=pickle)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(lite.read_bytes()[:100])
    with pytest.raises(FmscopeError, match="not a PyTorch weights file"):
        TrackingSession(moving_discs(2, [(30, 30, 10)]), model="medsam2", checkpoint=truncated)


@pytest.mark.slow
def test_bounded_memory_gives_the_unbounded_official_masks_on_40_frames(checkpoint, official, tmp_path):
    """The memory window is 16 frames (sam2's 16 object pointers): frames 1-16 stay (near the prompt) and, from
    frame 33 on, the frame 16 behind is dropped; 40 frames drop 7 and track 6 more frames after the first drop,
    each compared with the official unbounded run (60 frames before: each frame costs two model steps)."""
    frames = moving_discs(40, [(34, 20, 12)], step=1)
    folder = write_jpeg_folder(frames, tmp_path / "jpg")
    state = official.init_state(folder)
    official.add_new_points_or_box(state, 0, 1, box=[4, 18, 36, 50])
    reference = {}
    collect(official, state, reference)
    assert len(state["output_dict_per_obj"][0]["non_cond_frame_outputs"]) == 39  # sam2 keeps every frame

    session = TrackingSession(folder, model="medsam2", checkpoint=checkpoint, device="cpu")
    session.add_box(0, 1, [4, 18, 36, 50])
    list(session.propagate("forward"))
    kept = session.backend.states[0]["output_dict_per_obj"][0]["non_cond_frame_outputs"]
    window = session.backend.memory_window
    assert window == 16 and len(kept) <= 2 * window < 39 and max(kept) == 39  # only what the model can still use
    assert_same(session, reference, [1])


@pytest.mark.slow
def test_removed_object_is_gone_from_the_sam2_state(checkpoint):
    frames = moving_discs(3, [(22, 22, 11), (50, 50, 12)], step=3)
    boxes = {1: [8, 8, 36, 36], 2: [35, 35, 66, 66]}
    session = TrackingSession(frames, model="medsam2", checkpoint=checkpoint, device="cpu")
    for obj, box in boxes.items():
        session.add_box(0, obj, box)
    session.remove_object(2)
    alone = TrackingSession(frames, model="medsam2", checkpoint=checkpoint, device="cpu")
    alone.add_box(0, 1, boxes[1])
    list(session.propagate("forward"))
    list(alone.propagate("forward"))
    assert (alone.labels() == 1).any() and np.array_equal(session.labels(), alone.labels())
