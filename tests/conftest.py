"""Shared fixtures: the real LiteMedSAM weights and the real sample data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # reference_litemedsam.py

from fmscope import samples  # noqa: E402
from fmscope.imaging import io  # noqa: E402
from fmscope.imaging.predictor import Segmenter  # noqa: E402

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # `make test` runs two pytest workers on the 2 cores: one compute thread each (torch, OpenVINO through the
    # thread policy, and the processes tests start), as two threads each would oversubscribe the cores.
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def segmenter() -> Segmenter:
    """One LiteMedSAM segmenter (fp32, CPU, the default backend: OpenVINO) for the session; tests set their own
    image."""
    return Segmenter("litemedsam", device="cpu")


@pytest.fixture(scope="session")
def torch_segmenter() -> Segmenter:
    """LiteMedSAM (fp32, CPU) on the torch backend: the reference, for comparisons with the official code."""
    return Segmenter("litemedsam", device="cpu", backend="torch")


@pytest.fixture(scope="session")
def nuclei() -> tuple[np.ndarray, np.ndarray]:
    case = samples.get_case("nuclei")
    return io.read_image(case.image_path), io.read_image(case.labels_path)


@pytest.fixture(scope="session")
def nuclei_boxes(nuclei) -> dict[int, np.ndarray]:
    return samples.boxes_from_labels(nuclei[1])


@pytest.fixture(scope="session")
def ct_slice() -> tuple[np.ndarray, np.ndarray]:
    case = samples.get_case("ct_lung_slice")
    return io.read_image(case.image_path), io.read_image(case.labels_path)


@pytest.fixture(scope="session")
def ct_volume() -> tuple[io.Volume, np.ndarray]:
    case = samples.get_case("ct_lung_volume")
    return io.read_volume(case.image_path), io.read_volume(case.labels_path).array
