"""Fixtures for the Slicer Logic tests: real MRML scenes from slicer-core, the real lung CT."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import slicer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "slicer_extension" / "FMScope"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fmscope import samples  # noqa: E402
from fmscope.imaging import io  # noqa: E402


@pytest.fixture(scope="session")
def lung():
    case = samples.get_case("ct_lung_volume")
    volume = io.read_volume(case.image_path)
    truth = io.read_volume(case.labels_path).array > 0
    z = samples.key_slice(truth)
    box = samples.boxes_from_labels(truth[z])[1]  # x0 y0 x1 y1 = i0 j0 i1 j1
    return volume, truth, z, box


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture(autouse=True)
def _sessions_dir(tmp_path, monkeypatch):
    """Sessions of volumes without a file go under $FMSCOPE_SESSIONS_DIR: a test's own, never the home folder."""
    monkeypatch.setenv("FMSCOPE_SESSIONS_DIR", str(tmp_path / "fmscope_sessions"))


@pytest.fixture(scope="session")
def logic():
    """The Logic without session recording (tests/slicer_logic/test_session.py records): a session hashes and
    snapshots the whole volume, time these tests need not spend."""
    from FMScopeLib.logic import FMScopeLogic

    return FMScopeLogic(device="cpu", record_sessions=False)
