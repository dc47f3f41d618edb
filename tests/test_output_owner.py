"""fmscope replaces an existing output only when it wrote it and nothing changed it since (fmscope.output_owner)."""

import os

import pytest
import tifffile

from fmscope.atomic import INTERNAL, atomic_write
from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.outputs import FOLDER, Output, check_outputs


def _write(path, data: bytes = b"fmscope") -> None:
    atomic_write(path, lambda temporary: temporary.write_bytes(data))


def _write_folder(path, names=("a.tif", "b.tif")) -> None:
    def build(temporary):
        temporary.mkdir()
        for name in names:
            (temporary / name).write_bytes(name.encode())

    atomic_write(path, build)


def test_a_users_file_is_refused_and_kept(tmp_path):
    users = tmp_path / "labels.tif"
    users.write_bytes(b"corrected by hand")
    with pytest.raises(FmscopeError, match=r"did not write.*\n.*new name, or move"):
        _write(users)
    with pytest.raises(FmscopeError, match="-o .*labels.tif is an existing file that fmscope did not write"):
        check_outputs([Output("-o", users, (".tif",))])
    assert users.read_bytes() == b"corrected by hand" and [p.name for p in tmp_path.iterdir()] == ["labels.tif"]


def test_fmscopes_own_output_is_replaced_until_someone_changes_it(tmp_path):
    ours = tmp_path / "labels.tif"
    _write(ours, b"first")
    check_outputs([Output("-o", ours, (".tif",))])
    _write(ours, b"second")  # a re-run replaces its own output
    assert ours.read_bytes() == b"second"
    ours.write_bytes(b"edited by the user")  # same size or not: the modification time moved
    os.utime(ours, ns=(ours.stat().st_atime_ns, ours.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(FmscopeError, match="changed since fmscope wrote it"):
        _write(ours, b"third")
    assert ours.read_bytes() == b"edited by the user"


def test_a_folder_is_replaced_only_as_fmscope_left_it(tmp_path):
    ctc = tmp_path / "01_RES"
    _write_folder(ctc)
    _write_folder(ctc, ("c.tif",))  # its own folder: replaced whole
    assert sorted(p.name for p in ctc.iterdir()) == ["c.tif"]
    (ctc / "man_track.txt").write_text("1 0 4 0\n")  # the user adds a file
    with pytest.raises(FmscopeError, match="existing folder that fmscope did not write"):
        check_outputs([Output("--ctc", ctc, FOLDER)])
    with pytest.raises(FmscopeError, match="did not write"):
        _write_folder(ctc)
    assert sorted(p.name for p in ctc.iterdir()) == ["c.tif", "man_track.txt"]


def test_a_folder_fmscope_fills_and_its_internal_files_are_not_judged(tmp_path):
    """batch -o / demo -o / --cache-dir take an existing folder of other files; a session's snapshots are
    fmscope's own folder (no check, no record)."""
    outdir = tmp_path / "results"
    outdir.mkdir()
    (outdir / "notes.txt").write_text("mine")
    check_outputs([Output("-o", outdir, FOLDER, fills=True)])
    snapshot = tmp_path / "snapshot.npy"
    snapshot.write_bytes(b"old")
    atomic_write(snapshot, lambda temporary: temporary.write_bytes(b"new"), owner=INTERNAL)
    assert snapshot.read_bytes() == b"new"


def test_segment_refuses_a_users_label_image_before_any_work_and_replaces_its_own(tmp_path, capsys):
    from fmscope import samples

    case = samples.get_case("nuclei")
    users = tmp_path / "labels.tif"
    users.write_bytes(b"a user's label image")
    box = [str(v) for v in samples.boxes_from_labels(tifffile.imread(case.labels_path))[1]]
    assert main(["segment", str(case.image_path), "--box", *box, "-o", str(users)]) == 1
    assert "did not write" in capsys.readouterr().err and users.read_bytes() == b"a user's label image"
    ours = tmp_path / "ours.tif"
    for _ in range(2):  # the second run replaces the first one's output
        assert main(["segment", str(case.image_path), "--box", *box, "-o", str(ours)]) == 0
