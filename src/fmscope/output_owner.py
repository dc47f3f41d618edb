"""Which existing files and folders fmscope may replace: those it wrote itself, unchanged since.

A path given as an output may already hold the user's work: a label image corrected by hand, a CTC
folder of ground truth (``man_track.txt``), another tool's GEFF, a table, a picture, a model file, a
SpatialData store whose table the user annotated (``delete_element_from_disk`` + ``write_element``), an
``.h5ad`` corrected in place with h5py. fmscope replaces an existing output only when it wrote that path
itself and nothing changed it since; anything else is refused with a message naming the path, what
changed, and the fix (a new name, or moving the file away first). This is the one rule for every output,
stores and ``.h5ad`` files included: their stamp (:mod:`fmscope.omics.output_stamp`) says who wrote them
but never makes them replaceable, as an in-place edit keeps it.

After every write (:func:`fmscope.atomic.atomic_write`) fmscope records what it left at the path: a
file's size and modification time (ns), or a folder's files with theirs. The record is one small JSON
file per output under ``<fmscope cache>/written/`` (named by a hash of the resolved path), so
concurrent writers (batch workers) never share a file. A path is replaceable when its current state
equals the record: a file the user edited, re-saved or replaced has another modification time, a
folder the user added to, removed from or edited lists other files. Without a record (the cache
cleared, the output copied from another computer) fmscope refuses: it cannot tell its own untouched
output from one the user changed, and a wrong replace loses the user's work, a refusal only asks for a
new name.

A write-protected output (no write permission bit: ``chmod a-w``, the file itself or anything in a folder
output) is never replaced, even by fmscope's own unchanged output and even for root, as ``rm`` asks
before removing one: the user marked it "keep".

Design: fmscope's own; the same idea as ``make``'s and rsync's size + modification-time check.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from pathlib import Path

from fmscope.errors import FmscopeError
from fmscope.user_cache import cache_root

RECORDS = "written"  # folder of the records under fmscope's cache


def _record_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.expanduser().resolve()).encode()).hexdigest()[:40]
    return cache_root() / RECORDS / f"{key}.json"


def state(path: Path) -> dict:
    """What is at ``path`` now: ``{"kind": "file", "size": bytes, "mtime_ns": int}``, or for a folder
    ``{"kind": "folder", "files": [[relative path, size, mtime_ns], ...]}`` (every file inside, sorted)."""
    if path.is_dir():
        files = sorted(
            [str(file.relative_to(path)), file.stat().st_size, file.stat().st_mtime_ns]
            for file in path.rglob("*")
            if file.is_file()
        )
        return {"kind": "folder", "files": files}
    info = path.stat()
    return {"kind": "file", "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def record(path: str | os.PathLike) -> None:
    """Note that fmscope has just written ``path`` (a file or a folder). A record that cannot be written
    (a read-only cache) is skipped: fmscope then refuses to replace this output later, which is safe."""
    path = Path(path)
    target = _record_path(path)
    entry = {"path": str(path.expanduser().resolve()), **state(path)}
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(entry))
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)


def wrote(path: str | os.PathLike) -> bool:
    """Whether fmscope wrote what is at ``path`` now (its record matches the path's current state)."""
    path = Path(path)
    try:
        entry = json.loads(_record_path(path).read_text())
        current = state(path)
    except (OSError, ValueError):
        return False
    entry.pop("path", None)
    return entry == json.loads(json.dumps(current))  # the record went through JSON (tuples -> lists)


def write_protected(path: Path, inside: bool = True) -> Path | None:
    """The first write-protected path at ``path`` (itself, or with ``inside`` for a folder anything in it), or None.

    Write-protected: no write permission bit set (``chmod a-w``), or not writable by this user. The mode
    bits are checked as well as :func:`os.access`, since root may write anything."""
    within = inside and path.is_dir() and not path.is_symlink()
    for item in [path, *(sorted(path.rglob("*")) if within else [])]:
        try:
            if not stat.S_IMODE(item.lstat().st_mode) & 0o222 and not item.is_symlink():
                return item
        except OSError:
            continue
        if not item.is_symlink() and not os.access(item, os.W_OK):
            return item
    return None


def _changes(entry: dict, current: dict) -> str:
    """What differs between a record and the current state, in words (at most 5 files named)."""
    if entry.get("kind") != current["kind"]:
        return f"a {current['kind']} now, fmscope wrote a {entry.get('kind')}"
    if current["kind"] == "file":
        return "modified since: another size or modification time"
    then = {name: (size, mtime) for name, size, mtime in entry.get("files", [])}
    now = {name: (size, mtime) for name, size, mtime in current["files"]}
    parts = [
        f"{label} {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for label, names in (
            ("added", sorted(set(now) - set(then))),
            ("removed", sorted(set(then) - set(now))),
            ("modified", sorted(name for name in set(now) & set(then) if now[name] != then[name])),
        )
        if names
    ]
    return "; ".join(parts)


def require_replaceable(path: str | os.PathLike, option: str = "the output") -> None:
    """Raise :class:`FmscopeError` when ``path`` exists and fmscope may not replace it: it is write-protected, or
    fmscope did not write it (no record), or it changed since fmscope wrote it. The message names the path, why,
    and the fix. ``option``: what names the path in the message (``-o``, ``--table``; default "the output")."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    kind = "folder" if path.is_dir() else "file"
    named = option[:1].upper() + option[1:]  # the sentence's first word
    protected = write_protected(path)
    if protected is not None:
        inside = "" if protected == path else f" ({protected.relative_to(path)} in it is read-only)"
        raise FmscopeError(
            f"{named} {path} is a write-protected {kind}{inside}; fmscope never replaces what the user protected.",
            f"Give {option} a new name, or make it writable yourself (chmod -R u+w {path}) if it may go.",
        )
    if wrote(path):
        return
    try:
        entry = json.loads(_record_path(path).read_text())
    except (OSError, ValueError):
        entry = None
    if entry is None:
        why = (
            f"an existing {kind} that fmscope did not write (it holds no record of writing it: the user's or another "
            "program's, or fmscope's from another computer or before its cache was cleared)"
        )
    else:
        changes = _changes(entry, state(path))
        why = f"an existing {kind} that fmscope did not write: it changed since fmscope wrote it ({changes})"
    raise FmscopeError(
        f"{named} {path} is {why}; fmscope never replaces the user's files.",
        f"Give {option} a new name, or move {path} away (or delete it) yourself first if it may go.",
    )
