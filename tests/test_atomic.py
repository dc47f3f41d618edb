"""Atomic writes: the final file has the usual permissions; a failed write leaves nothing behind."""

import os
import stat

import pytest

from fmscope.atomic import atomic_write
from fmscope.errors import FmscopeError


def test_written_file_gets_usual_permissions(tmp_path):
    target = tmp_path / "labels.nii.gz"
    atomic_write(target, lambda temporary: temporary.write_bytes(b"data"))
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"old")

    def broken(temporary):
        temporary.write_bytes(b"half")
        raise OSError("disk full")
    with pytest.raises(FmscopeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]
