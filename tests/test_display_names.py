"""Layer and item names drop only the real format suffix: ``sample.v2.tif`` is ``sample.v2``,
``patient.01.nii.gz`` is ``patient.01`` (not ``sample`` / ``patient``)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from fmscope.batch.manifest import read_manifest
from fmscope.names import display_name
from fmscope.napari.reader import volume_layer_data
from fmscope.napari.slide_layers import slide_layers
from fmscope.napari.video_reader import video_layer_data
from fmscope.omics.io import read_slide
from fmscope.samples import sample_data_dir


@pytest.mark.parametrize(
    "path, name",
    [
        ("sample.v2.tif", "sample.v2"),
        ("patient.01.nii.gz", "patient.01"),
        ("scan.OME.TIF", "scan"),
        ("/data/run.2024/cells.ome.zarr", "cells"),
        ("echo.2.dcm", "echo.2"),
        ("tissue.v3.h5ad", "tissue.v3"),
        ("1.2.840.113619", "1.2.840.113619"),
        ("run.2024", "run.2024"),
        ("clip.final.MP4", "clip.final"),
        (".tif", ".tif"),
    ],
)
def test_display_name_drops_only_the_format_suffix(path, name):
    assert display_name(path) == name


def test_volume_reader_names_the_layer_without_cutting_at_the_first_dot(tmp_path):
    path = tmp_path / "patient.01.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)), str(path))
    [(_, meta, kind)] = volume_layer_data(str(path))
    assert meta["name"] == "patient.01" and kind == "image"


def test_video_reader_names_the_layer_without_cutting_at_the_first_dot(tmp_path):
    path = tmp_path / "echo.v2.dcm"
    shutil.copy(sample_data_dir() / "echo_a4c_cine.dcm", path)
    [(_, meta, _)] = video_layer_data(path)
    assert meta["name"] == "echo.v2"


def test_slide_layers_are_named_without_cutting_at_the_first_dot(tmp_path):
    path = tmp_path / "breast.crop.v2.zarr"
    shutil.copytree(sample_data_dir() / "xenium_breast_crop.zarr", path)
    names = [meta["name"] for _, meta, _ in slide_layers(read_slide(path))]
    assert names and all(name.startswith("breast.crop.v2 ") for name in names), names


def test_batch_item_ids_keep_the_dotted_name(tmp_path):
    (tmp_path / "patient.01.nii.gz").write_bytes(b"")
    (tmp_path / "m.csv").write_text("job,input\nvolume,patient.01.nii.gz\n")
    [item] = read_manifest(tmp_path / "m.csv")
    assert item.id == "0001_patient.01"
