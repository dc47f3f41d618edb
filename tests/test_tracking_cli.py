"""`fmscope track` end to end with the embedded LiteMedSAM tracker, and its bad-input exits."""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest
import tifffile
import torch

from fmscope.cli import main
from fmscope.imaging.model_file import TunedModel, trained_state, write_model_file
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.prompts import box_from_mask
from fmscope.metrics import dice
from fmscope.samples import sample_data_dir
from fmscope.training.segmenter import TRAINED_PARTS


@pytest.fixture(scope="module")
def hela_crop(tmp_path_factory):
    """4 frames of the HeLa sample, 128 x 128, with its linked track labels."""
    folder = sample_data_dir() / "hela_timelapse"
    images = tifffile.imread(folder / "images.tif")[:4, 64:192, 96:224]
    tracks = tifffile.imread(folder / "tracks.tif")[:4, 64:192, 96:224]
    path = tmp_path_factory.mktemp("hela") / "hela.tif"
    tifffile.imwrite(path, images, metadata={"axes": "TYX"})
    return path, images, tracks


def largest_tracks(tracks: np.ndarray, count: int) -> list[int]:
    ids, areas = np.unique(tracks[0][tracks[0] > 0], return_counts=True)
    whole = [k for k in ids[np.argsort(-areas)] if (tracks == k).any(axis=(1, 2)).all()]
    return whole[:count]


@pytest.mark.slow
def test_track_writes_labels_table_and_overlay(hela_crop, tmp_path, capsys):
    path, images, tracks = hela_crop
    chosen = largest_tracks(tracks, 2)
    boxes = [box_from_mask(tracks[0] == k) for k in chosen]
    out, table, overlay = tmp_path / "labels.tif", tmp_path / "cells.csv", tmp_path / "overlay.mp4"
    argv = [
        "track",
        str(path),
        "--frame",
        "0",
        "-o",
        str(out),
        "--table",
        str(table),
        "--overlay",
        str(overlay),
        "--direction",
        "forward",
        "--device",
        "cpu",
    ]
    for box in boxes:
        argv += ["--box", *map(str, box)]
    assert main(argv) == 0
    labels = tifffile.imread(out)
    assert labels.shape == images.shape and labels.dtype == np.uint16
    for obj, k in enumerate(chosen, start=1):
        # measured 2026-11-29: object 2 0.61 before the ROI-zoom lattice change, 0.48 after; the default
        # tracker's accuracy is issue 11's open work (benchmarks/tracking.py); this guards against worse
        assert dice(labels == obj, tracks == k) > 0.4
    rows = list(csv.DictReader(open(table)))
    assert {(int(r["object"]), int(r["frame"])) for r in rows} == {(o, t) for o in (1, 2) for t in range(4)}
    first = next(r for r in rows if r["object"] == "1" and r["frame"] == "0")
    assert int(first["area_px"]) == int((labels[0] == 1).sum())
    assert float(first["mean_intensity"]) == pytest.approx(images[0][labels[0] == 1].mean(), rel=1e-4)
    with av.open(str(overlay)) as video:
        assert video.streams.video[0].frames == 4
    assert "2 object(s) through 4 frames" in capsys.readouterr().out


def test_overlay_of_odd_sized_frames_keeps_every_pixel(hela_crop, tmp_path):
    """H.264 needs even sizes: 75 x 97 frames give a 76 x 98 video whose first 75 x 97 pixels are the frame's
    (was 74 x 96: the last row and column cut off)."""
    path, images, tracks = hela_crop
    odd = tmp_path / "odd.tif"
    tifffile.imwrite(odd, images[:2, :75, :97], metadata={"axes": "TYX"})
    box = box_from_mask(tracks[0, :75, :97] == largest_tracks(tracks[:2, :75, :97], 1)[0])
    overlay = tmp_path / "odd.mp4"
    argv = ["track", str(odd), "--frame", "0", "--box", *map(str, box), "-o", str(tmp_path / "odd_labels.tif")]
    assert main([*argv, "--overlay", str(overlay), "--direction", "forward", "--device", "cpu"]) == 0
    with av.open(str(overlay)) as video:
        first = next(video.decode(video=0)).to_ndarray(format="rgb24")
    assert first.shape == (76, 98, 3)
    grey = first.mean(axis=-1)
    unlabelled = tifffile.imread(tmp_path / "odd_labels.tif")[0] == 0
    scale = images[0, :75, :97].astype(float)
    # the video's grey where no label is drawn follows the frame's, to its last row and column (lossy codec)
    assert np.corrcoef(grey[:75, :97][unlabelled], scale[unlabelled])[0, 1] > 0.9
    assert np.corrcoef(grey[74, :97], scale[74])[0, 1] > 0.8 and np.corrcoef(grey[:75, 96], scale[:, 96])[0, 1] > 0.8


def test_bad_input_exits_1_and_writes_nothing(hela_crop, tmp_path, capsys):
    path, _, _ = hela_crop
    out = tmp_path / "labels.tif"
    box = ["--box", "10", "10", "40", "40"]
    cases = {
        "frame outside": (["track", str(path), "--frame", "9", *box], "Frame 9 is outside"),
        "corrupt video": (["track", str(tmp_path / "bad.mp4"), "--frame", "0", *box], "as a video"),
        "4D stack": (["track", str(tmp_path / "4d.tif"), "--frame", "0", *box], "without a named time axis"),
        "other architecture": (
            ["track", str(path), "--frame", "0", *box, "--model", "medsam2", "--checkpoint", str(tmp_path / "lite.pt")],
            "looks like LiteMedSAM",
        ),
        "non-weights pickle": (
            [
                "track",
                str(path),
                "--frame",
                "0",
                *box,
                "--model",
                "medsam2",
                "--checkpoint",
                str(tmp_path / "pickle.pt"),
            ],
            "weights_only",
        ),
        "bad output": (
            ["track", str(path), "--frame", "0", *box, "-o", str(tmp_path / "labels.png")],
            "cannot write a '.png' file",
        ),
        "output over the input": (["track", str(path), "--frame", "0", *box, "-o", str(path)], "is the input"),
        "missing model file": (
            ["track", str(path), "--frame", "0", *box, "--model", str(tmp_path / "none.pt")],
            "No model file at",
        ),
        "bfloat16 for sam2 on torch": (
            ["track", str(path), "--frame", "0", *box, "--model", "medsam2", "--fast", "--backend", "torch"],
            "the torch backend runs fp32",
        ),
    }
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    tifffile.imwrite(tmp_path / "4d.tif", np.zeros((2, 3, 16, 16), np.uint16))
    torch.save({"image_encoder.layers.0.conv.weight": torch.zeros(1)}, tmp_path / "lite.pt")
    torch.save({"model": object()}, tmp_path / "pickle.pt")
    for name, (argv, message) in cases.items():
        if "-o" not in argv:
            argv = argv + ["-o", str(out)]
        assert main(argv) == 1, name
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error, name
        assert not out.exists() and not (tmp_path / "labels.png").exists(), name


def test_usage_mistakes_exit_2(hela_crop, tmp_path, capsys):
    path, _, _ = hela_crop
    with pytest.raises(SystemExit) as exit_info:
        main(["track", str(path), "--box", "1", "2", "3", "4", "-o", str(tmp_path / "x.tif")])  # no --frame
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["track", str(path), "--frame", "0", "--box", "1", "2", "3", "-o", str(tmp_path / "x.tif")])
    assert exit_info.value.code == 2
    backward = ["--divisions", "--direction", "backward", "-o", str(tmp_path / "x.tif")]
    assert main(["track", str(path), "--frame", "4", "--box", "10", "10", "40", "40", *backward]) == 2
    assert "work forward in time" in capsys.readouterr().err and not (tmp_path / "x.tif").exists()


def test_an_object_found_on_no_frame_is_warned_about(hela_crop, tmp_path, capsys):
    path, _, tracks = hela_crop
    box = [str(v) for v in box_from_mask(tracks[0] == largest_tracks(tracks, 1)[0])]
    argv = [
        "track",
        str(path),
        "--frame",
        "0",
        "--range",
        "0",
        "0",
        "--box",
        *box,
        "--box",
        *box,
        "-o",
        str(tmp_path / "labels.tif"),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0  # the same box twice: the first object takes the pixels
    captured = capsys.readouterr()
    assert "1: 1 frames, 2: 0 frames" in captured.out
    assert "warning: object 2 was found on no frame" in captured.err and "object 1 was" not in captured.err


@pytest.mark.slow
def test_a_fine_tuned_model_file_tracks_like_its_weights(hela_crop, tmp_path, capsys):
    """`--model tuned.pt` (a file from train-segmenter) tracks with the tuned segmenter; a file
    holding the base weights gives the embedded model's labels, one of another base is refused."""
    path, images, tracks = hela_crop
    segmenter = Segmenter("litemedsam", device="cpu")
    tuned = TunedModel(
        "litemedsam",
        "litemedsam",
        segmenter.model.weights_sha256,
        TRAINED_PARTS,
        trained_state(segmenter.model.net, TRAINED_PARTS),
    )
    write_model_file(tmp_path / "tuned.pt", tuned)
    box = box_from_mask(tracks[0] == largest_tracks(tracks, 1)[0])
    labels = []
    for model in ("litemedsam", str(tmp_path / "tuned.pt")):
        out = tmp_path / f"labels_{len(labels)}.tif"
        assert (
            main(
                [
                    "track",
                    str(path),
                    "--frame",
                    "0",
                    "--box",
                    *map(str, box),
                    "--model",
                    model,
                    "-o",
                    str(out),
                    "--direction",
                    "forward",
                    "--range",
                    "0",
                    "2",
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
        labels.append(tifffile.imread(out))
    assert labels[0][1:3].any() and np.array_equal(labels[0], labels[1])
    tuned.base_sha256 = "0" * 64
    write_model_file(tmp_path / "other.pt", tuned)
    capsys.readouterr()
    out = tmp_path / "other.tif"
    assert (
        main(
            [
                "track",
                str(path),
                "--frame",
                "0",
                "--box",
                *map(str, box),
                "--model",
                str(tmp_path / "other.pt"),
                "-o",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 1
    )
    assert "other.pt" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_fast_tracks_close_to_exact(hela_crop, tmp_path):
    """`--fast` (bfloat16 encoder) follows the same nucleus: Dice >= 0.9 against the fp32 run."""
    path, images, tracks = hela_crop
    box = box_from_mask(tracks[0] == largest_tracks(tracks, 1)[0])
    labels = []
    for extra in ([], ["--fast"]):
        out = tmp_path / f"labels_{len(labels)}.tif"
        assert (
            main(
                [
                    "track",
                    str(path),
                    "--frame",
                    "0",
                    "--box",
                    *map(str, box),
                    "-o",
                    str(out),
                    "--direction",
                    "forward",
                    "--range",
                    "0",
                    "2",
                    "--device",
                    "cpu",
                    *extra,
                ]
            )
            == 0
        )
        labels.append(tifffile.imread(out))
    for frame in range(3):
        assert dice(labels[0][frame] == 1, labels[1][frame] == 1) >= 0.9, frame
