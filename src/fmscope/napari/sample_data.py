"""napari sample data: every sample case as an image layer plus its ground-truth labels."""

from __future__ import annotations

import numpy as np

from fmscope import samples
from fmscope.imaging import io
from fmscope.imaging.intensity import WINDOW_PRESETS
from fmscope.imaging.labels import read_label_image
from fmscope.imaging.tracking.frames import open_frames
from fmscope.napari.reader import volume_placement


def _ids(path) -> np.ndarray:
    """A sample's ground-truth label ids as stored (the label-image reader)."""
    return read_label_image(path, instances=False).array


def _case(name: str) -> list[tuple]:
    case = samples.get_case(name)
    axis = {"volume": "z", "timelapse": "time"}.get(case.kind)  # what axis 0 is, for the Track panel
    meta = {"metadata": {"fmscope_window": case.window, **({"fmscope_axis": axis} if axis else {})}}
    if case.kind == "timelapse":
        image, labels = np.stack(list(open_frames(case.image_path))), _ids(case.labels_path)
        scale = {}
    elif case.kind == "volume":
        volume, truth = io.read_volume(case.image_path), io.read_volume(case.labels_path)
        scale = volume_placement(volume)  # as the volume reader places the file (File > Open)
        image, labels = volume.array, truth.array
        meta["metadata"]["fmscope_volume"] = volume  # geometry, for the Track panel's NIfTI export
    else:
        image, labels = io.read_image(case.image_path), _ids(case.labels_path)
        scale = {}
    contrast = {}
    if case.window is not None:
        level, width = WINDOW_PRESETS[case.window]
        contrast = {"contrast_limits": (level - width / 2, level + width / 2)}
    return [
        (image, {"name": case.name, **scale, **meta, **contrast}, "image"),
        (labels, {"name": f"{case.name} ground truth", "opacity": 0.4, "visible": False, **scale}, "labels"),
    ]


def nuclei() -> list[tuple]:
    return _case("nuclei")


def ct_lung_slice() -> list[tuple]:
    return _case("ct_lung_slice")


def ct_lung_volume() -> list[tuple]:
    return _case("ct_lung_volume")


def hela_timelapse() -> list[tuple]:
    """HeLa nuclei time-lapse (T, Y, X) with its ground-truth tracks (one id per track)."""
    return _case("hela_timelapse")


def echo_cine() -> list[tuple]:
    """The echocardiogram cine clip (30, 240, 320, 3) uint8, opened lazily by the video reader
    (frames decoded as they are shown); axis 0 is time for the Track panel."""
    from fmscope.napari.video_reader import video_layer_data

    return video_layer_data(samples.sample_data_dir() / "echo_a4c_cine.dcm", name="echo_a4c_cine")


def visium_mouse_brain() -> list[tuple]:
    """The Visium mouse-brain slide: H&E and spots, in microns."""
    from fmscope.napari.slide_layers import slide_layers
    from fmscope.omics.io import read_slide

    return slide_layers(read_slide(samples.sample_data_dir() / "visium_mouse_brain"))


def xenium_breast() -> list[tuple]:
    """The Xenium breast crop (Xenium output folder): cell outlines, cells, transcripts, in microns."""
    from fmscope.napari.slide_layers import slide_layers
    from fmscope.omics.io import read_slide

    return slide_layers(read_slide(samples.sample_data_dir() / "xenium_breast_outs"))


def semi_synthetic_tissue() -> list[tuple]:
    """Real PBMC profiles in four known domains (truth in the cells' table, obs['true_domain'])."""
    from fmscope.napari.slide_layers import slide_layers
    from fmscope.omics.io import Slide
    from fmscope.omics.synthetic import semi_synthetic_tissue as tissue

    return slide_layers(Slide(tissue(purity=0.6), source="semi_synthetic_tissue"))
