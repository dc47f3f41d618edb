"""An output in a folder that does not exist is refused before any work, naming the folder and the
fix (create it first); fmscope never creates the user's folders, so a typo cannot start a new tree."""

from __future__ import annotations

import pytest

from fmscope.batch import write_template
from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.outputs import FOLDER, SLIDE_SUFFIXES, Output, check_outputs
from fmscope.samples import sample_data_dir

SAMPLES = sample_data_dir()
BOX = ("--box", 1, 1, 20, 20)


def files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "args, option",
    [
        (("segment", SAMPLES / "nuclei_image.tif", *BOX, "-o", "{missing}/mask.tif"), "-o"),
        (
            ("segment", SAMPLES / "nuclei_image.tif", *BOX, "-o", "{tmp}/mask.tif", "--overlay", "{missing}/o.png"),
            "--overlay",
        ),
        (
            ("segment", SAMPLES / "nuclei_image.tif", *BOX, "-o", "{tmp}/mask.tif", "--cache-dir", "{missing}/cache"),
            "--cache-dir",
        ),
        (("volume", SAMPLES / "ct_lung_volume.nrrd", "--slice", 3, *BOX, "-o", "{missing}/v.nii.gz"), "-o"),
        (("track", SAMPLES / "hela_timelapse", "--frame", 0, *BOX, "-o", "{missing}/t.tif"), "-o"),
        (
            (
                "track",
                SAMPLES / "hela_timelapse",
                "--frame",
                0,
                *BOX,
                "-o",
                "{tmp}/t.tif",
                "--table",
                "{missing}/t.csv",
            ),
            "--table",
        ),
        (("domains", SAMPLES / "pbmc68k_reduced.h5ad", "-o", "{missing}/d.zarr"), "-o"),
        (("domains", SAMPLES / "pbmc68k_reduced.h5ad", "-o", "{tmp}/d.zarr", "--png", "{missing}/d.png"), "--png"),
        (("image-expression", "train", SAMPLES / "visium_mouse_brain", "-o", "{missing}/model.pt"), "-o"),
        (
            (
                "image-expression",
                "predict",
                SAMPLES / "visium_mouse_brain",
                "--model",
                "{tmp}/model.pt",
                "-o",
                "{missing}/p.zarr",
            ),
            "-o",
        ),
        (("demo", "-o", "{missing}/demo"), "-o"),
    ],
)
def test_a_missing_output_folder_is_refused_and_not_created(tmp_path, capsys, args, option):
    missing = tmp_path / "typo" / "deeper"
    args = [str(a).format(missing=missing, tmp=tmp_path) for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{option} {missing}/" in err and f"the folder {missing} does not exist" in err, err
    assert f"Fix: Create it first (mkdir -p {missing})" in err and "Traceback" not in err
    assert files(tmp_path) == []  # nothing read, nothing written, no folder made


def test_batch_refuses_a_results_folder_in_a_missing_folder(tmp_path, capsys):
    manifest = tmp_path / "manifest.csv"
    write_template(manifest)
    missing = tmp_path / "typo"
    assert main(["batch", str(manifest), "-o", str(missing / "results")]) == 1
    err = capsys.readouterr().err
    assert f"the folder {missing} does not exist" in err and "Create it first" in err
    assert files(tmp_path) == ["manifest.csv"]


def test_a_new_result_folder_in_an_existing_folder_is_allowed(tmp_path):
    check_outputs([Output("-o", tmp_path / "out.zarr", SLIDE_SUFFIXES), Output("-o", tmp_path / "demo", FOLDER)])
    with pytest.raises(FmscopeError, match=r"(?s)-o .*new/out.zarr: the folder .*new does not exist.*mkdir -p"):
        check_outputs([Output("-o", tmp_path / "new" / "out.zarr", SLIDE_SUFFIXES)])
    assert files(tmp_path) == []
