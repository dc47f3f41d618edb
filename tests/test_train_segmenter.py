"""Fine-tuning LiteMedSAM on the HeLa time-lapse (real weights, real frames): the model file,
its loading everywhere through load_model, exact resume, checkpoints that survive a kill,
and bad inputs refused without writing anything.

These tests check plumbing (files, resume, refusals), not how much training helps (that is
benchmarks/finetune.py): they train on 128 px crops with few views and prompts, and the CLI runs
on label images of two nuclei each (:func:`two_objects`), since each object adds a zoom view to
embed and prompts to train on. The CLI runs in this process (``run_cli``) except where a real
process is the point: one refusal's exit code, and the SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import torch
from cli_runner import run_cli, run_process

from fmscope import checkpoints, samples
from fmscope.checkpoint_files import read_checkpoint
from fmscope.errors import Cancelled, FmscopeError
from fmscope.imaging.model_file import TunedModel, read_model_file, trained_state, write_model_file
from fmscope.imaging.predictor import Segmenter
from fmscope.metrics import dice
from fmscope.progress import Progress
from fmscope.session_record.identity import file_sha256
from fmscope.training.segmenter import (
    TRAINED_PARTS,
    LabelledImage,
    checkpoint_path,
    labelled_images,
    train_segmenter,
)
from fmscope.training.settings import TrainSettings

pytestmark = pytest.mark.slow  # each test loads LiteMedSAM and embeds real frames (seconds to a minute idle)
CROP = (slice(0, 128), slice(0, 128))  # a few whole nuclei per frame: enough for identity tests, fast
# one zoom view per image and one optimiser step per view: every code path (whole-image and zoom views,
# held-out scoring, checkpoints) at the least cost
TINY = TrainSettings(epochs=2, max_crops=1, max_prompts=2, patience=10)


def two_objects(labels: np.ndarray) -> np.ndarray:
    """The label image with only its two largest objects (the CLI trains with its default crops and prompts,
    which grow with the number of objects)."""
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    kept = ids[np.argsort(areas, kind="stable")[-2:]]
    return np.where(np.isin(labels, kept), labels, 0).astype(labels.dtype)


def write_pairs(crops, folder) -> None:
    """image<i>.tif and labels<i>.tif (two objects each) for the CLI."""
    for i, item in enumerate(crops):
        tifffile.imwrite(folder / f"image{i}.tif", item.image)
        tifffile.imwrite(folder / f"labels{i}.tif", two_objects(item.labels))


@pytest.fixture(scope="module")
def hela():
    folder = samples.sample_data_dir() / "hela_timelapse"
    return tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "masks.tif")


@pytest.fixture(scope="module")
def crops(hela):
    images, masks = hela
    return [LabelledImage(images[t][CROP], masks[t][CROP], f"frame {t}") for t in (0, 1, 10)]


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory, segmenter):
    """A model file whose trained parts are the base weights themselves."""
    path = tmp_path_factory.mktemp("identity") / "identity.pt"
    net = segmenter.model.net
    write_model_file(
        path,
        TunedModel(
            "litemedsam", "litemedsam", segmenter.model.weights_sha256, TRAINED_PARTS, trained_state(net, TRAINED_PARTS)
        ),
    )
    return path


def test_model_file_loads_like_its_weights_with_its_own_cache_key(identity_model, segmenter, crops):
    image, masks = crops[0].image, crops[0].labels
    boxes = list(samples.boxes_from_labels(masks).values())[:4]
    tuned = Segmenter(str(identity_model), device="cpu")
    assert tuned.model.tuned is not None and tuned.model.weights_sha256 != segmenter.model.weights_sha256
    segmenter.set_image(image)
    tuned.set_image(image)
    for ours, theirs in zip(tuned.predict_many(boxes), segmenter.predict_many(boxes)):
        assert np.array_equal(ours.mask, theirs.mask)


def test_model_file_of_another_base_is_refused(tmp_path, identity_model):
    other = read_model_file(identity_model)
    other.base_sha256 = "0" * 64
    write_model_file(tmp_path / "other.pt", other)
    with pytest.raises(FmscopeError, match="was tuned from litemedsam .*000000000000"):
        Segmenter(str(tmp_path / "other.pt"), device="cpu")
    with pytest.raises(FmscopeError, match="not a readable fmscope model file"):
        Segmenter(str(samples.get_case("nuclei").image_path), device="cpu")
    with pytest.raises(FmscopeError, match="(?s)not an fmscope model file.*--checkpoint"):
        Segmenter(str(checkpoints.resolve("litemedsam")), device="cpu")  # official weights are not a model file


@pytest.mark.parametrize("train_encoder", ["none", "lora"])
def test_resume_gives_the_weights_of_an_uninterrupted_run(crops, tmp_path, train_encoder):
    settings = TrainSettings(**{**TINY.__dict__, "train_encoder": train_encoder})
    train = crops[:1]  # one image (its whole view and one zoom view, shuffled together): 4 views to embed per run
    straight = train_segmenter(train, tmp_path / "straight.pt", val_items=crops[2:], settings=settings, device="cpu")

    def stop_after_epoch_1(done, total, message):
        if message.startswith("Training: epoch 1/"):
            stop.cancel()

    stop = Progress(stop_after_epoch_1)

    with pytest.raises(Cancelled):
        train_segmenter(
            train,
            tmp_path / "resumed.pt",
            val_items=crops[2:],
            settings=settings,
            device="cpu",
            progress=stop,
        )
    assert not (tmp_path / "resumed.pt").exists()
    assert read_checkpoint(checkpoint_path(tmp_path / "resumed.pt"), "checkpoint", "test")["epoch"] == 1
    with pytest.raises(FmscopeError, match="--train-encoder"):  # another mode does not resume this run
        other = "last-stage" if train_encoder == "none" else "none"
        train_segmenter(
            train,
            tmp_path / "resumed.pt",
            val_items=crops[2:],
            device="cpu",
            resume=True,
            settings=TrainSettings(**{**settings.__dict__, "train_encoder": other}),
        )
    resumed = train_segmenter(
        train, tmp_path / "resumed.pt", val_items=crops[2:], settings=settings, device="cpu", resume=True
    )
    a, b = read_model_file(straight.output), read_model_file(resumed.output)
    assert a.state_dict.keys() == b.state_dict.keys()
    assert not [k for k in a.state_dict if "parametrizations" in k]  # adapters merged: plain weights
    assert ("image_encoder.layers.3.blocks.0.attn.qkv.weight" in a.state_dict) == (train_encoder == "lora")
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert (a.val_dice_before, a.val_dice_after) == (b.val_dice_before, b.val_dice_after)
    assert len(resumed.epoch_seconds) == 1  # only the second epoch ran again
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left

    # The trainer's held-out figure is what the Segmenter gives with the file, box for box. On the torch
    # backend: the default (OpenVINO) converts each new tuned file's encoder first (20-60 s), which
    # test_model_file_loads_like_its_weights_with_its_own_cache_key and the CLI test check.
    held = crops[2]
    tuned = Segmenter(str(straight.output), device="cpu", roi_zoom=False, backend="torch")
    tuned.set_image(held.image)
    boxes = samples.boxes_from_labels(held.labels)
    masks = tuned.predict_many(list(boxes.values()))
    assert np.mean([dice(r.mask, held.labels == i) for r, i in zip(masks, boxes)]) == pytest.approx(
        straight.after.whole, abs=1e-3
    )
    assert a.data["train_images"] == 1 and a.data["val_objects"] == len(boxes)


def test_bad_inputs_are_refused_before_anything_is_written(crops, tmp_path, identity_model):
    image, labels = crops[0].image, crops[0].labels
    with pytest.raises(FmscopeError, match="shape"):
        labelled_images(image, labels[:-1], "a")
    with pytest.raises(FmscopeError, match="hold no objects"):
        labelled_images(image, np.zeros_like(labels), "a")
    with pytest.raises(FmscopeError, match="hold no objects"):
        labelled_images(np.stack([image, image]), np.zeros((2, *labels.shape), labels.dtype), "stack")

    # A checkpoint left by training another base model is not resumed from, and not overwritten.
    output = tmp_path / "model.pt"
    train_segmenter(
        crops[:2],
        output,
        val_items=crops[2:],
        settings=TrainSettings(epochs=1, max_crops=1, max_prompts=2),
        device="cpu",
    )
    payload = read_checkpoint(checkpoint_path(output), "checkpoint", "test")
    payload["base_sha256"] = "f" * 64
    torch.save(payload, checkpoint_path(output))
    before = checkpoint_path(output).read_bytes(), output.read_bytes()
    with pytest.raises(FmscopeError, match="was training litemedsam .*ffffffffffff"):
        train_segmenter(
            crops[:2], output, val_items=crops[2:], settings=TrainSettings(epochs=2), resume=True, device="cpu"
        )
    assert (checkpoint_path(output).read_bytes(), output.read_bytes()) == before


def test_cli_trains_refuses_bad_input_and_segments_with_the_file(crops, tmp_path, identity_model, segmenter):
    write_pairs(crops, tmp_path)
    tifffile.imwrite(tmp_path / "wrong.tif", crops[0].labels[:64])
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros_like(crops[0].labels))
    output, users = tmp_path / "model.pt", tmp_path / "users.pt"
    users.write_bytes(b"the user's file")
    runs = (("wrong.tif", "shape", run_process, output), ("empty.tif", "hold no objects", run_cli, output))
    runs += (("labels0.tif", "that fmscope did not write", run_cli, users),)  # a file fmscope did not write
    for labels, message, run, path in runs:
        result = run("train-segmenter", tmp_path / "image0.tif", "--labels", tmp_path / labels, "-o", path)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert users.read_bytes() == b"the user's file" and not output.exists()
    journaled = tmp_path / "model.pt.fmscope-session"  # the run's journal, beside the model file (issue 29)
    assert not journaled.exists()

    result = run_cli(
        "train-segmenter",
        *(tmp_path / f"image{i}.tif" for i in range(3)),
        "--labels",
        *(tmp_path / f"labels{i}.tif" for i in range(3)),
        "-o",
        output,
        "--epochs",
        1,
        "--holdout",
        0.34,
        "--train-encoder",
        "last-stage",
    )
    assert result.returncode == 0, result.stderr
    assert "held-out Dice" in result.stdout and "base" in result.stdout and "tuned" in result.stdout
    assert f"journaled the training run in {journaled}" in result.stdout
    info = run_cli("session", "info", journaled)
    assert info.returncode == 0 and "training run: litemedsam" in info.stdout, info.stderr
    assert f"wrote {output} (file sha256 {file_sha256(output)})" in info.stdout and "image0.tif" in info.stdout
    refused = run_cli("replay", journaled, "-o", tmp_path / "nothing.tif")
    assert refused.returncode == 1 and "does not re-train" in refused.stderr and "Traceback" not in refused.stderr
    tuned = read_model_file(output)
    assert tuned.trained_parts == [*TRAINED_PARTS, "image_encoder.layers.3", "image_encoder.neck"]
    # The encoder's last stage was trained: the checkpoint holds the epoch's weights. The file holds the best
    # epoch's: those, or the base's when the held-out Dice did not improve (as it may not on two objects).
    trained = read_checkpoint(checkpoint_path(output), "checkpoint", "test")["state"]
    key, base = "image_encoder.neck.0.weight", segmenter.model.net.state_dict()
    assert not torch.equal(trained[key], base[key])
    improved = tuned.val_dice_after != tuned.val_dice_before
    assert torch.equal(tuned.state_dict[key], trained[key] if improved else base[key])

    x0, y0, x1, y1 = samples.boxes_from_labels(crops[2].labels)[int(np.unique(crops[2].labels)[1])]
    result = run_cli(
        "segment", tmp_path / "image2.tif", "--box", x0, y0, x1, y1, "--model", output, "-o", tmp_path / "out.tif"
    )
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    ct = samples.get_case("ct_lung_slice")  # another kind of image: segmented, with a warning
    result = run_cli(
        "segment",
        ct.image_path,
        "--box",
        200,
        200,
        260,
        260,
        "--window",
        "lung",
        "--model",
        output,
        "-o",
        tmp_path / "ct.tif",
    )
    assert result.returncode == 0 and "A tuned model is for its own kind of image" in result.stderr
    other = read_model_file(identity_model)
    other.base_sha256 = "0" * 64
    write_model_file(tmp_path / "other.pt", other)
    result = run_cli(
        "segment",
        tmp_path / "image2.tif",
        "--box",
        x0,
        y0,
        x1,
        y1,
        "--model",
        tmp_path / "other.pt",
        "-o",
        tmp_path / "other.tif",
    )
    assert result.returncode == 1 and "was tuned from litemedsam" in result.stderr
    assert not (tmp_path / "other.tif").exists()


def test_kill_while_writing_leaves_the_previous_checkpoint(crops, tmp_path):
    """SIGKILL the trainer (a real process) while it writes an epoch checkpoint: the previous one still loads and
    resumes."""
    write_pairs(crops, tmp_path)
    output = tmp_path / "model.pt"
    checkpoint = checkpoint_path(output)
    args = [
        "train-segmenter",
        *(tmp_path / f"image{i}.tif" for i in range(3)),
        "--labels",
        *(tmp_path / f"labels{i}.tif" for i in range(3)),
        "-o",
        output,
        "--holdout",
        0.34,
        "--patience",
        100,
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "fmscope.cli", *map(str, args), "--epochs", "200"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    caught = False
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if checkpoint.exists() and any(p.name.startswith(f".{checkpoint.name}") for p in tmp_path.iterdir()):
                os.kill(process.pid, signal.SIGKILL)  # a temporary beside a checkpoint: the next one is being written
                caught = True
                break
            time.sleep(0.002)
    finally:
        process.kill()
        process.wait()
    assert caught, "the trainer was never seen writing a second checkpoint"
    epoch = read_checkpoint(checkpoint, "checkpoint", "test")["epoch"]
    assert epoch >= 1 and not output.exists()
    result = run_cli(*args, "--epochs", epoch + 1, "--resume")
    assert result.returncode == 0, result.stderr
    assert read_checkpoint(checkpoint, "checkpoint", "test")["epoch"] == epoch + 1
