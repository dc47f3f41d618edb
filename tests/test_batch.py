"""fmscope batch: manifests, dry runs, and a real local Dask cluster of 2 worker processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from fmscope import samples
from fmscope.batch import read_manifest, run_batch, validate_items, write_template
from fmscope.batch.models import ModelPool
from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging import io

CT_SLICE_BOX = "204 345 231 370"
CT_VOLUME_BOX = "82 81 109 106"


def write_manifest(path: Path, rows: list[dict]) -> Path:
    columns = sorted({k for row in rows for k in row})
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_template_lists_the_sample_cases_and_validates(tmp_path, capsys, monkeypatch):
    """Written in a project folder of the user's (not the source tree), as docs/batch.md's first line runs it, the
    template's rows are ready as written: the sample files by their absolute paths."""
    from fmscope.batch.manifest import JOBS, item_prompts

    template = tmp_path / "manifest.csv"
    monkeypatch.chdir(tmp_path)
    assert main(["batch", "manifest.csv", "--template"]) == 0
    with pytest.raises(FmscopeError, match="never replaces"):
        write_template(template)
    assert f",{samples.sample_data_dir().absolute().as_posix()}/nuclei_image.tif," in template.read_text()
    items = read_manifest(template)
    assert [i.job for i in items] == ["segment", "segment", "volume", "track", "domains", "embed"]
    assert set(JOBS) == {i.job for i in items}  # every job kind has an example row
    assert [problem for _, problem in validate_items(items)] == [None] * 6
    capsys.readouterr()
    assert main(["batch", str(template), "-o", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "6 of 6 rows ready; nothing was run" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    _, boxes = item_prompts(items[0])
    assert len(boxes) == 125  # one box per nucleus of the prompt mask
    track = items[3]
    assert track.input.name == "images.tif" and track.input.parent.name == "hela_timelapse"
    frame, boxes = item_prompts(track)
    assert frame == 0 and [list(b) for b in boxes.values()] == [[263, 309, 295, 338]]
    truth = tifffile.imread(samples.get_case("hela_timelapse").labels_path)
    assert set(np.unique(truth[0, 309:338, 263:295])) == {0, 40}  # the box holds one nucleus (track 40)
    assert (truth == 40).any(axis=(1, 2)).all()  # which is on all 20 frames


def test_a_template_beside_the_sample_data_names_it_relative_to_its_folder(tmp_path, monkeypatch):
    """At a checkout's root (the sample data in the manifest's folder) the rows stay relative: `sample_data/...`,
    read from the manifest's folder as docs/batch.md says, so the folder can be moved whole."""
    (tmp_path / "sample_data").symlink_to(samples.sample_data_dir(), target_is_directory=True)
    monkeypatch.setenv("FMSCOPE_SAMPLE_DATA", str(tmp_path / "sample_data"))
    write_template(tmp_path / "manifest.csv")
    assert ",sample_data/ct_lung_volume.nrrd," in (tmp_path / "manifest.csv").read_text()
    assert [problem for _, problem in validate_items(read_manifest(tmp_path / "manifest.csv"))] == [None] * 6


def test_dry_run_names_each_bad_row_and_runs_nothing(tmp_path, capsys):
    image = samples.get_case("ct_lung_slice").image_path
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {"id": "good", "job": "segment", "input": image, "box": CT_SLICE_BOX},
            {"id": "missing", "job": "segment", "input": tmp_path / "nope.tif", "box": CT_SLICE_BOX},
            {"id": "outside", "job": "segment", "input": image, "box": "600 600 700 700"},
            {
                "id": "noslice",
                "job": "volume",
                "input": samples.get_case("ct_lung_volume").image_path,
                "box": CT_VOLUME_BOX,
            },
            {
                "id": "noframe",
                "job": "track",
                "input": samples.get_case("hela_timelapse").image_path,
                "box": "10 10 40 40",
            },
        ],
    )
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--dry-run"]) == 1
    printed = capsys.readouterr().out
    assert "Row 2 (missing): no such input" in printed and "Row 2 (missing): Row" not in printed
    assert "Row 3 (outside): The box" in printed and "lies outside the 512x512 image" in printed
    assert "Row 4 (noslice): a volume item needs its key 'slice'" in printed
    assert "Row 5 (noframe): a track item needs its key 'slice'" in printed and "frame (t, 0-based)" in printed
    assert "1 of 5 rows ready" in printed
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()  # an existing OUTDIR holding the user's own results table: refused before any work
    (tmp_path / "out" / "results.csv").write_text("the user's table")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--dry-run"]) == 1
    assert "results.csv is an existing file that fmscope did not write" in capsys.readouterr().err
    assert (tmp_path / "out" / "results.csv").read_text() == "the user's table"


@pytest.mark.parametrize(
    "text, message",
    [
        ("job,input\nsegmentation,a.tif\n", "unknown job 'segmentation'"),
        ("job,input,box\nsegment,a.tif,1 2 3\n", "cannot read box '1 2 3'"),
        ("job,input,colour\nsegment,a.tif,red\n", "unknown column"),
        ("id,job,input\na,segment,a.tif\na,segment,b.tif\n", "same id 'a'"),
        ("job\nsegment\n", "no column input"),
    ],
)
def test_manifest_errors_name_the_row_and_the_fix(tmp_path, text, message):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(FmscopeError, match=message):
        read_manifest(path)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def pool_counts(client) -> tuple[int, int]:
    """(models loaded, encoder calls) summed over the workers."""

    def counts(dask_worker):
        pool = dask_worker.plugins.get(ModelPool.name)
        return (pool.loads, pool.encoder_calls) if pool else (0, 0)

    values = client.run(counts).values()
    return sum(v[0] for v in values), sum(v[1] for v in values)


@pytest.mark.slow
def test_cohort_equals_single_commands_skips_finished_and_redoes_edited(tmp_path, client):
    slice_copy = tmp_path / "ct_slice.tif"
    shutil.copy(samples.get_case("ct_lung_slice").image_path, slice_copy)
    volume = samples.get_case("ct_lung_volume")
    hela = samples.get_case("hela_timelapse")  # 4 frames, two nuclei that stay inside the crop
    tifffile.imwrite(tmp_path / "hela.tif", tifffile.imread(hela.image_path)[:4, 32:128, 256:352])
    tifffile.imwrite(tmp_path / "hela_tracks.tif", tifffile.imread(hela.labels_path)[:4, 32:128, 256:352])
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {
                "id": "slice",
                "job": "segment",
                "input": slice_copy,
                "box": CT_SLICE_BOX,
                "window": "lung",
                "truth": samples.get_case("ct_lung_slice").labels_path,
            },
            {
                "id": "volume",
                "job": "volume",
                "input": volume.image_path,
                "box": CT_VOLUME_BOX,
                "slice": 9,
                "window": "lung",
                "truth": volume.labels_path,
            },
            {
                "id": "track",
                "job": "track",
                "input": tmp_path / "hela.tif",
                "prompt_file": tmp_path / "hela_tracks.tif",
                "truth": tmp_path / "hela_tracks.tif",
            },
            {
                "id": "slide",
                "job": "domains",
                "input": samples.sample_data_dir() / "visium_mouse_brain",
                "resolution": "0.4",
            },
            {"id": "missing", "job": "segment", "input": tmp_path / "nope.tif", "box": CT_SLICE_BOX},
            {"id": "outside", "job": "segment", "input": slice_copy, "box": "600 600 700 700"},
        ],
    )
    out = tmp_path / "out"
    report = run_batch(read_manifest(manifest), out, client=client)
    table = report.table.set_index("id")
    assert list(table["status"]) == ["done", "done", "done", "done", "failed", "failed"]
    assert "no such file" in table.loc["missing", "message"].lower()
    assert table.loc["missing", "message"].startswith("Row 5 (missing): ")
    assert "lies outside the 512x512 image" in table.loc["outside", "message"]
    assert table.loc["slice", "dice"] > 0.85 and table.loc["volume", "dice"] > 0.75
    assert table.loc["volume", "volume_ml"] > 0 and table.loc["track", "objects"] == 2
    assert table.loc["track", "dice"] > 0.7
    assert (out / "results.csv").is_file() and (out / "results.parquet").is_file()
    loads, calls = pool_counts(client)
    assert 1 <= loads <= 2  # LiteMedSAM once per worker, not once per item

    # the single commands give the same files
    assert (
        main(
            [
                "segment",
                str(slice_copy),
                "--box",
                *CT_SLICE_BOX.split(),
                "--window",
                "lung",
                "-o",
                str(tmp_path / "single.tif"),
            ]
        )
        == 0
    )
    batch_labels = tifffile.imread(out / "items/slice/labels.tif")
    single_labels = tifffile.imread(tmp_path / "single.tif")
    assert batch_labels.dtype == single_labels.dtype and np.array_equal(batch_labels, single_labels)
    assert (
        main(
            [
                "volume",
                str(volume.image_path),
                "--slice",
                "9",
                "--box",
                *CT_VOLUME_BOX.split(),
                "--window",
                "lung",
                "-o",
                str(tmp_path / "single.nii.gz"),
            ]
        )
        == 0
    )
    batch_volume, single_volume = (
        io.read_volume(out / "items/volume/labels.nii.gz"),
        io.read_volume(tmp_path / "single.nii.gz"),
    )
    assert np.array_equal(batch_volume.array, single_volume.array)
    assert np.allclose(batch_volume.spacing, single_volume.spacing)
    boxes = samples.boxes_from_labels(tifffile.imread(tmp_path / "hela_tracks.tif")[0])
    assert (
        main(
            [
                "track",
                str(tmp_path / "hela.tif"),
                "--frame",
                "0",
                *(v for box in boxes.values() for v in ("--box", *map(str, box))),
                "-o",
                str(tmp_path / "single_track.tif"),
                "--table",
                str(tmp_path / "single_track.csv"),
            ]
        )
        == 0
    )
    assert np.array_equal(
        tifffile.imread(out / "items/track/labels.tif"), tifffile.imread(tmp_path / "single_track.tif")
    )
    assert (out / "items/track/tracks.csv").read_text() == (tmp_path / "single_track.csv").read_text()
    assert (
        main(
            [
                "domains",
                str(samples.sample_data_dir() / "visium_mouse_brain"),
                "--resolution",
                "0.4",
                "-o",
                str(tmp_path / "single.zarr"),
            ]
        )
        == 0
    )
    import spatialdata

    domains = [
        spatialdata.read_zarr(p).tables["fmscope_table"].obs["fmscope_domain"].to_numpy()
        for p in (out / "items/slide/result.zarr", tmp_path / "single.zarr")
    ]
    assert np.array_equal(*domains)

    # again: nothing finished is run, no model call
    again = run_batch(read_manifest(manifest), out, client=client)
    assert again.submitted == 2  # only the two failed rows are tried again
    assert list(again.table["status"]) == ["skipped", "skipped", "skipped", "skipped", "failed", "failed"]
    assert pool_counts(client)[1] == calls

    # an edited input redoes that item only
    edited = tifffile.imread(slice_copy)
    edited[:10, :10] += 1
    tifffile.imwrite(slice_copy, edited)
    third = run_batch(read_manifest(manifest), out, client=client)
    assert list(third.table["status"]) == ["done", "skipped", "skipped", "skipped", "failed", "failed"]
    assert json.loads((out / "items/slice/record.json").read_text())["row"]["status"] == "done"


@pytest.mark.slow
def test_every_model_kind_runs_in_batch_as_in_its_single_command(tmp_path, client):
    """A track row with a `train-segmenter` file and a volume row with MedSAM2 (random weights in the official
    layout) run as `fmscope track --model tuned.pt` and `fmscope volume --model medsam2` do: identical outputs."""
    from sam2_checkpoint import write_random_medsam2_checkpoint

    from fmscope.imaging.model_file import TunedModel, trained_state, write_model_file
    from fmscope.imaging.predictor import Segmenter
    from fmscope.training.segmenter import TRAINED_PARTS

    base = Segmenter("litemedsam", device="cpu")
    tuned = tmp_path / "tuned.pt"
    write_model_file(
        tuned,
        TunedModel(
            "litemedsam",
            "litemedsam",
            base.model.weights_sha256,
            TRAINED_PARTS,
            trained_state(base.model.net, TRAINED_PARTS),
        ),
    )
    checkpoint = write_random_medsam2_checkpoint(tmp_path / "MedSAM2_latest.pt")
    hela = samples.get_case("hela_timelapse")
    tifffile.imwrite(tmp_path / "hela.tif", tifffile.imread(hela.image_path)[:3, 32:128, 256:352])
    box = "20 10 50 40"
    import SimpleITK as sitk

    volume = tmp_path / "ct_slab.nrrd"  # 5 slices around the tumour's key slice (MedSAM2 runs at 512 px per slice)
    sitk.WriteImage(sitk.ReadImage(str(samples.get_case("ct_lung_volume").image_path))[:, :, 7:12], str(volume))
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {
                "id": "tuned_track",
                "job": "track",
                "input": tmp_path / "hela.tif",
                "box": box,
                "slice": 0,
                "model": tuned,
            },
            {
                "id": "medsam2_volume",
                "job": "volume",
                "input": volume,
                "box": CT_VOLUME_BOX,
                "slice": 2,
                "window": "lung",
                "model": "medsam2",
                "checkpoint": checkpoint,
            },
        ],
    )
    items = read_manifest(manifest)
    assert [problem for _, problem in validate_items(items)] == [None, None]
    report = run_batch(items, tmp_path / "out", client=client)
    assert list(report.table["status"]) == ["done", "done"], report.table["message"].tolist()

    assert (
        main(
            [
                "track",
                str(tmp_path / "hela.tif"),
                "--frame",
                "0",
                "--box",
                *box.split(),
                "--model",
                str(tuned),
                "-o",
                str(tmp_path / "track.tif"),
            ]
        )
        == 0
    )
    batch_track = tifffile.imread(tmp_path / "out/items/tuned_track/labels.tif")
    assert batch_track.any() and np.array_equal(batch_track, tifffile.imread(tmp_path / "track.tif"))
    assert (
        main(
            [
                "volume",
                str(volume),
                "--slice",
                "2",
                "--box",
                *CT_VOLUME_BOX.split(),
                "--window",
                "lung",
                "--model",
                "medsam2",
                "--checkpoint",
                checkpoint,
                "-o",
                str(tmp_path / "volume.nii.gz"),
            ]
        )
        == 0
    )
    batch_volume = io.read_volume(tmp_path / "out/items/medsam2_volume/labels.nii.gz").array
    assert batch_volume.any() and np.array_equal(batch_volume, io.read_volume(tmp_path / "volume.nii.gz").array)


def test_a_row_whose_model_cannot_do_its_job_is_refused_by_name(tmp_path):
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {
                "job": "segment",
                "input": samples.get_case("ct_lung_slice").image_path,
                "box": CT_SLICE_BOX,
                "model": "medsam2",
            }
        ],
    )
    with pytest.raises(FmscopeError, match="medsam2.*cannot segment"):
        read_manifest(manifest)


@pytest.mark.slow
def test_a_killed_worker_loses_no_item_and_leaves_no_half_output(tmp_path, client):
    import threading

    case = samples.get_case("ct_lung_slice")
    image = tifffile.imread(case.image_path)
    rows = []
    for k in range(6):  # six different images, so every item runs the encoder
        copy = image.copy()
        copy[0, k] += 1
        tifffile.imwrite(tmp_path / f"slice{k}.tif", copy)
        rows.append(
            {
                "id": f"item{k}",
                "job": "segment",
                "input": tmp_path / f"slice{k}.tif",
                "box": CT_SLICE_BOX,
                "window": "lung",
                "truth": case.labels_path,
            }
        )
    items = read_manifest(write_manifest(tmp_path / "m.csv", rows))
    out = tmp_path / "out"
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker_after_the_first_item() -> None:
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            finished = (out / "items").is_dir() and any(not p.name.startswith(".") for p in (out / "items").iterdir())
            busy = [address for address, keys in client.processing().items() if keys and address in pids]
            if finished and busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_busy_worker_after_the_first_item)
    killer.start()
    report = run_batch(items, out, client=client)
    killer.join()
    assert killed, "no worker was busy after the first item"
    assert list(report.table["status"]) == ["done"] * 6, report.table["message"].tolist()
    assert sorted(p.name for p in (out / "items").iterdir()) == [f"item{k}" for k in range(6)]  # none hidden/twice
    assert (report.table["dice"] > 0.85).all()
    for k in range(6):
        labels = tifffile.imread(out / f"items/item{k}/labels.tif")
        assert labels.shape == (512, 512) and labels.any()
    assert killed[0] not in client.run(os.getpid)  # the killed worker was replaced


def test_a_run_refuses_what_the_dry_run_refuses_with_its_message(tmp_path):
    from fmscope.batch.records import signature
    from fmscope.batch.runner import run_item

    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {
                "id": "noframe",
                "job": "track",
                "input": samples.get_case("hela_timelapse").image_path,
                "box": "10 10 40 40",
            }
        ],
    )
    item = read_manifest(manifest)[0]
    row = run_item(item, signature(item), str(tmp_path / "out"), pool=ModelPool())
    assert row["status"] == "failed" and row["message"].startswith("Row 1 (noframe): a track item needs its key")
    assert not (tmp_path / "out" / "items" / "noframe").exists()


def test_local_workers_keep_this_process_malloc_settings_and_one_torch_thread():
    """Dask's MALLOC_TRIM_THRESHOLD_=65536 made each volume item ~50 % slower in a worker (benchmarks/batch.py)."""
    import torch

    from fmscope.batch.runner import local_client

    client = local_client(1, threads_per_worker=1)
    try:
        settings = list(
            client.run(
                lambda: (
                    os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                    torch.get_num_threads(),
                    os.environ.get("OMP_NUM_THREADS"),
                )
            ).values()
        )
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert settings == [(os.environ.get("MALLOC_TRIM_THRESHOLD_"), 1, "1")]


def test_a_model_file_or_checkpoint_rewritten_in_place_redoes_the_item(tmp_path):
    """NU13: `train-segmenter -o tuned.pt` run again rewrites the file a manifest's `model` names; the item's
    signature holds the contents of its model file and checkpoint (file or folder), not only their paths."""
    from fmscope.batch.records import finished_row, item_folder, signature, write_record

    tifffile.imwrite(tmp_path / "img.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "tuned.pt").write_bytes(b"weights 1")
    (tmp_path / "scgpt").mkdir()
    (tmp_path / "scgpt" / "best_model.pt").write_bytes(b"scgpt 1")
    rows = [
        {"id": "tuned", "job": "segment", "input": "img.tif", "box": "1 1 5 5", "model": "tuned.pt"},
        {"id": "ckpt", "job": "embed", "input": "img.tif", "checkpoint": "scgpt"},
        {"id": "plain", "job": "segment", "input": "img.tif", "box": "1 1 5 5"},
    ]
    items = read_manifest(write_manifest(tmp_path / "m.csv", rows))
    before = {item.id: signature(item) for item in items}
    for item in items:
        item_folder(tmp_path / "out", item).mkdir(parents=True)
        write_record(item_folder(tmp_path / "out", item), before[item.id], {"status": "done"})
    os.utime(tmp_path / "tuned.pt")  # touched, the same bytes: still finished
    assert {item.id: signature(item) for item in items} == before
    (tmp_path / "tuned.pt").write_bytes(b"weights 2")  # re-trained in place
    (tmp_path / "scgpt" / "best_model.pt").write_bytes(b"scgpt 2")
    after = {item.id: signature(item) for item in items}
    assert after["tuned"] != before["tuned"] and after["ckpt"] != before["ckpt"]
    assert after["plain"] == before["plain"]  # a catalogue model: the signature of earlier runs
    redo = {item.id: finished_row(tmp_path / "out", item, after[item.id]) for item in items}
    assert redo == {"tuned": None, "ckpt": None, "plain": {"status": "done"}}


def test_a_model_file_is_found_from_the_manifests_folder_not_the_working_folder(tmp_path, monkeypatch):
    """A relative `model` file resolves as `input` and `checkpoint` do; another tuned.pt in the working folder
    (or none, on a Dask worker) is not the one used."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir(), elsewhere.mkdir()
    (project / "tuned.pt").write_bytes(b"the project's weights")
    (elsewhere / "tuned.pt").write_bytes(b"another model")
    monkeypatch.chdir(elsewhere)
    rows = [
        {"id": "tuned", "job": "segment", "input": "img.tif", "box": "1 1 5 5", "model": "tuned.pt"},
        {"id": "named", "job": "segment", "input": "img.tif", "box": "1 1 5 5", "model": "litemedsam"},
    ]
    tuned, named = read_manifest(write_manifest(project / "m.csv", rows))
    assert Path(tuned.model) == project / "tuned.pt"
    assert named.model == "litemedsam"


def test_only_fmscopes_own_leftovers_are_cleaned_from_the_items_folder(tmp_path):
    """A killed worker's half-built item folder and a folder moved aside are removed; a user's hidden entries in
    OUTDIR/items (a .git, notebook checkpoints, a .DS_Store) stay."""
    from fmscope.batch.records import remove_partial_folders

    items = tmp_path / "items"
    (items / ".0001_img.tif.0123456789ab").mkdir(parents=True)  # atomic_write's temporary of an item folder
    (items / ".0001_img.tif.0123456789ab" / "labels.tif").write_bytes(b"half")
    (items / ".0002_a.fedcba987654.old").mkdir()  # an earlier item folder moved aside
    for user_entry in (".git", ".ipynb_checkpoints"):
        (items / user_entry).mkdir()
        (items / user_entry / "keep").write_text("the user's")
    (items / ".DS_Store").write_bytes(b"finder")
    removed = remove_partial_folders(tmp_path)
    assert sorted(p.name for p in removed) == [".0001_img.tif.0123456789ab", ".0002_a.fedcba987654.old"]
    assert sorted(p.name for p in items.iterdir()) == [".DS_Store", ".git", ".ipynb_checkpoints"]
    assert (items / ".git" / "keep").read_text() == "the user's"


@pytest.mark.slow
def test_a_track_row_on_a_cine_nifti_writes_its_labels_on_the_cines_grid(tmp_path):
    """NUC6's kind in batch: a track row on a 4D image of one oblique slice through time writes `labels.nii.gz`, a
    4D label image carrying the cine's qform and sform, as `fmscope track -o labels.nii.gz` (was: `labels.tif`, the
    slice's position and orientation lost)."""
    import nibabel as nib

    from fmscope.batch.records import signature
    from fmscope.batch.runner import run_item

    ii, jj = np.mgrid[:64, :64]
    cine = np.random.default_rng(0).normal(100, 10, (64, 64, 1, 3))
    for t in range(3):
        cine[(ii - 20 - 4 * t) ** 2 + (jj - 30) ** 2 < 64, 0, t] += 400
    affine = np.array([[1.2, -0.7, 0, -40], [0.7, 1.2, 0, 25], [0, 0, 8, 60], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(cine.astype(np.int16), affine), tmp_path / "cine.nii.gz")
    manifest = write_manifest(
        tmp_path / "m.csv",
        [{"id": "cine", "job": "track", "input": tmp_path / "cine.nii.gz", "slice": 0, "box": "12 22 28 38"}],
    )
    item = read_manifest(manifest)[0]
    row = run_item(item, signature(item), str(tmp_path / "out"), pool=ModelPool())
    assert row["status"] == "done", row
    labels = nib.load(tmp_path / "out/items/cine/labels.nii.gz")
    assert labels.shape == (64, 64, 1, 3) and np.allclose(labels.affine, affine, atol=1e-4)
    assert np.asanyarray(labels.dataobj)[..., 0, 2][(ii - 28) ** 2 + (jj - 30) ** 2 < 30].all()


@pytest.mark.slow
def test_a_truth_in_another_axis_order_is_scored_on_the_inputs_grid_and_one_elsewhere_is_not(tmp_path, capsys):
    """The `truth` column read as `fmscope eval` reads it: a truth NIfTI holding the slice's pixels in another axis
    order (flipped: RAS vs LPS storage) scores as the same mask stored alike, with a note; one moved by a pixel lies
    on another grid and is not scored, said in the row (was: scored pixel by pixel on the wrong pixels); the scores
    are `fmscope eval`'s, NSD in mm (was: in pixels)."""
    import SimpleITK as sitk

    from fmscope.batch.records import signature
    from fmscope.batch.runner import run_item

    yy, xx = np.mgrid[:64, :64]
    disc = (xx - 24) ** 2 + (yy - 30) ** 2 < 100
    image = sitk.GetImageFromArray((np.random.default_rng(0).normal(0, 20, (64, 64)) + 400 * disc).astype(np.int16))
    image.SetSpacing((0.7, 0.7))
    image.SetOrigin((-20.0, 15.0))
    sitk.WriteImage(image, str(tmp_path / "slice.nii.gz"))
    truth = sitk.GetImageFromArray(disc.astype(np.uint8))
    truth.CopyInformation(image)
    sitk.WriteImage(truth, str(tmp_path / "truth.nii.gz"))
    sitk.WriteImage(sitk.Flip(truth, [True, False]), str(tmp_path / "flipped.nii.gz"))
    moved = sitk.Image(truth)
    moved.SetOrigin((-19.3, 15.0))
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    rows = [
        {
            "id": name,
            "job": "segment",
            "input": tmp_path / "slice.nii.gz",
            "box": "12 18 36 42",
            "truth": tmp_path / f"{name}.nii.gz",
        }
        for name in ("truth", "flipped", "moved")
    ]
    pool, done = ModelPool(), {}
    for item in read_manifest(write_manifest(tmp_path / "m.csv", rows)):
        done[item.id] = run_item(item, signature(item), str(tmp_path / "out"), pool=pool)
    assert done["truth"]["dice"] > 0.8 and done["flipped"]["dice"] == done["truth"]["dice"]
    assert "another axis order" in done["flipped"]["message"]
    assert done["moved"].get("dice") is None and "another grid" in done["moved"]["message"]
    out = tmp_path / "out/items/truth/labels.nii.gz"  # the row's scores are `fmscope eval`'s (NSD in mm)
    assert main(["eval", str(out), str(tmp_path / "flipped.nii.gz")]) == 0
    assert f"dice {done['truth']['dice']:.4f}  nsd@1mm {done['truth']['nsd']:.4f}" in capsys.readouterr().out
