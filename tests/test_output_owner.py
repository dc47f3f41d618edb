"""fmscope replaces an existing output only when it wrote it and nothing changed it since (fmscope.output_owner)."""

import os
import stat
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from fmscope import output_owner, user_cache
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


def _contents(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file at ``path`` (a file or a folder) with its bytes and permission bits."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in files}


def _later(path: Path) -> None:
    """Move the modification time on by 1 ms (an edit within the clock's resolution is still an edit)."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))


FILE_EDITS = ("rewritten in place, same size", "appended to", "re-saved (touched)", "cache cleared", "untouched")
FOLDER_EDITS = ("a file added", "a file removed", "a file rewritten in place, same size", "cache cleared", "untouched")


@settings(max_examples=25, deadline=None)
@given(folder=st.booleans(), edit=st.integers(0, 4), data=st.binary(min_size=1, max_size=16))
def test_own_output_edited_in_place_or_without_a_record_is_refused_and_kept(folder, edit, data):
    """NUB1 / NUB2's kind: an edit that keeps the structure (h5py in place, write_element under the same name)
    still moves a size or a modification time, so it is refused; so is fmscope's own output once its record is
    gone (another computer, a cleared cache): fmscope cannot tell it from an edited one. Untouched: replaced."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ):  # its own cache, restored after
        tmp = Path(tmp)
        os.environ[user_cache.ENVIRONMENT_VARIABLE] = str(tmp / "cache")
        out = tmp / ("01_RES" if folder else "labels.tif")
        _write_folder(out) if folder else _write(out, data)
        target = out / "a.tif" if folder else out
        what = (FOLDER_EDITS if folder else FILE_EDITS)[edit]
        if what == "cache cleared":
            os.environ[user_cache.ENVIRONMENT_VARIABLE] = str(tmp / "another cache")
        elif what == "a file added":
            (out / "man_track.txt").write_text("1 0 4 0\n")
        elif what == "a file removed":
            (out / "b.tif").unlink()
        elif what != "untouched":
            with open(target, "r+b" if "place" in what else "ab") as handle:
                if what != "re-saved (touched)":
                    handle.write(bytes(255 - b for b in target.read_bytes()[:1]) if "place" in what else b"!")
            _later(target)
        before = _contents(out)
        if what == "untouched":
            _write_folder(out, ("c.tif",)) if folder else _write(out, data + b"again")
            assert _contents(out) != before
            return
        expected = "holds no record of writing it" if what == "cache cleared" else "changed since fmscope wrote it"
        with pytest.raises(FmscopeError, match=expected) as refused:
            check_outputs([Output("-o", out, FOLDER if folder else (".tif",))])
        assert str(out) in str(refused.value) and "new name" in str(refused.value)
        with pytest.raises(FmscopeError, match=expected):
            _write_folder(out, ("c.tif",)) if folder else _write(out, b"new")
        assert _contents(out) == before


@settings(max_examples=20, deadline=None)
@given(
    where=st.sampled_from(["the file", "the folder", "a file in the folder"]),
    mode=st.sampled_from([0o444, 0o440, 0o400, 0o555, 0o500, 0o000]),
)
def test_a_write_protected_output_is_never_replaced_even_when_fmscope_wrote_it(where, mode):
    """NUB8: ``chmod a-w`` on fmscope's own unchanged output (a file, a folder, or a file in it) means "keep": refused
    naming it, before any work and by the writer, left as it was and still protected (checked on the mode bits,
    so also for root, as ``rm`` asks first). A folder fmscope writes into, or the one holding an output, that is
    write-protected is refused too; the same outputs writable are replaced."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ):  # its own cache, restored after
        tmp = Path(tmp)
        os.environ[user_cache.ENVIRONMENT_VARIABLE] = str(tmp / "cache")
        out = tmp / ("labels.tif" if where == "the file" else "01_RES")
        suffixes = (".tif",) if where == "the file" else FOLDER
        protected = out / "a.tif" if where == "a file in the folder" else out
        try:
            _write(out) if where == "the file" else _write_folder(out)
            os.chmod(protected, mode)
            before = _contents(out) if mode & 0o100 or where == "the file" else None
            with pytest.raises(FmscopeError, match="write-protected") as refused:
                check_outputs([Output("-o", out, suffixes)])
            assert str(out) in str(refused.value) and "chmod" in str(refused.value)
            with pytest.raises(FmscopeError, match="write-protected"):
                _write(out, b"new") if where == "the file" else _write_folder(out, ("c.tif",))
            assert stat.S_IMODE(protected.stat().st_mode) == mode
            assert before is None or _contents(out) == before
            if where == "the folder":
                with pytest.raises(FmscopeError, match="write-protected folder"):  # batch -o into a frozen folder
                    check_outputs([Output("-o", out, FOLDER, fills=True)])
                with pytest.raises(FmscopeError, match="cannot write in"):  # an output inside a frozen folder
                    check_outputs([Output("-o", out / "new.tif", (".tif",))])
            os.chmod(protected, 0o755 if protected.is_dir() else 0o644)  # writable again: fmscope's own, replaced
            check_outputs([Output("-o", out, suffixes)])
            _write(out, b"new") if where == "the file" else _write_folder(out, ("c.tif",))
        finally:
            for path in [out, *out.rglob("*")] if out.is_dir() else [out]:
                os.chmod(path, 0o755)


def test_write_protected_names_the_protected_path(tmp_path):
    folder = tmp_path / "01_RES"
    _write_folder(folder)
    assert output_owner.write_protected(folder) is None
    os.chmod(folder / "b.tif", 0o444)
    assert output_owner.write_protected(folder) == folder / "b.tif"
    with pytest.raises(FmscopeError, match=r"b.tif in it is read-only"):
        output_owner.require_replaceable(folder, "--ctc")


def test_a_file_the_user_saves_while_fmscope_writes_is_kept(tmp_path):
    """The check is made again just before the rename: a user who saves over fmscope's output (or at a new output
    path) while the writer runs keeps their file; fmscope's result is dropped with the usual refusal."""
    for existing in (True, False):
        out = tmp_path / f"labels_{existing}.tif"
        if existing:
            _write(out, b"fmscope's first run")

        def slow_writer(temporary, out=out):
            temporary.write_bytes(b"fmscope's second run")
            out.write_bytes(b"saved by the user meanwhile")  # e.g. napari's Save while fmscope was writing
            _later(out)

        with pytest.raises(FmscopeError, match="did not write"):
            atomic_write(out, slow_writer)
        assert out.read_bytes() == b"saved by the user meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels_False.tif", "labels_True.tif"]  # no temporary
