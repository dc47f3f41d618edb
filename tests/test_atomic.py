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
    atomic_write(target, lambda temporary: temporary.write_bytes(b"old"))  # fmscope's own earlier output

    def broken(temporary):
        temporary.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(FmscopeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_a_writer_bug_propagates_unchanged_and_leaves_nothing(tmp_path):
    """Only OS errors are 'cannot write'; a TypeError / ValueError of a builder reads as itself."""
    target = tmp_path / "out.tif"
    atomic_write(target, lambda temporary: temporary.write_bytes(b"old"))
    for error in (TypeError("unsupported operand"), ValueError("bad label dtype"), KeyError("gene")):

        def broken(temporary, error=error):
            temporary.write_bytes(b"half")
            raise error

        with pytest.raises(type(error)) as caught:
            atomic_write(target, broken)
        assert caught.value is error and "Cannot write" not in str(caught.value)
        assert target.read_bytes() == b"old"
        assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_a_folder_writer_bug_keeps_the_earlier_folder(tmp_path):
    store = tmp_path / "result.zarr"

    def earlier(temporary):
        temporary.mkdir()
        (temporary / "zarr.json").write_text("{}")

    atomic_write(store, earlier)

    def broken(temporary):
        temporary.mkdir()
        (temporary / "zarr.json").write_text("new")
        raise ValueError("a bug in the builder")

    with pytest.raises(ValueError, match="a bug in the builder"):
        atomic_write(store, broken)
    assert (store / "zarr.json").read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["result.zarr"]


def test_a_missing_folder_is_named_not_created(tmp_path):
    target = tmp_path / "missing" / "deeper" / "out.tif"
    with pytest.raises(FmscopeError, match=r"the folder .*missing/deeper does not exist.*\n.*Create it first"):
        atomic_write(target, lambda temporary: temporary.write_bytes(b"data"))
    assert list(tmp_path.iterdir()) == []


def test_library_file_errors_are_cannot_write(tmp_path):
    """SimpleITK and torch report file errors as RuntimeError: still 'Cannot write', naming the path
    (/proc/self exists but takes no new files, even for root)."""
    import numpy as np

    from fmscope.checkpoint_files import write_checkpoint
    from fmscope.imaging.io import write_image

    for write, path in (
        (lambda p: write_image(np.zeros((4, 4), np.uint8), p), "/proc/self/mask.nii.gz"),
        (lambda p: write_checkpoint(p, {"a": 1}), "/proc/self/head.pt"),
    ):
        with pytest.raises(FmscopeError, match=f"Cannot write {path} \\(OSError: .*could not write"):
            write(path)
