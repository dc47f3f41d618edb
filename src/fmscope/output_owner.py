"""Which existing files and folders fmscope may replace: those it wrote itself, unchanged since.

A path given as an output may already hold the user's work: a label image corrected by hand, a CTC
folder of ground truth (``man_track.txt``), another tool's GEFF, a table, a picture, a model file.
fmscope replaces an existing output only when it wrote that path itself and nothing changed it since;
anything else is refused with a message naming the path and the fix (a new name, or moving the file
away first). SpatialData stores and ``.h5ad`` files carry fmscope's stamp inside instead
(:mod:`fmscope.omics.output_stamp`), so they are judged by it.

After every write (:func:`fmscope.atomic.atomic_write`) fmscope records what it left at the path: a
file's size and modification time (ns), or a folder's files with theirs. The record is one small JSON
file per output under ``<fmscope cache>/written/`` (named by a hash of the resolved path), so
concurrent writers (batch workers) never share a file. A path is replaceable when its current state
equals the record: a file the user edited, re-saved or replaced has another modification time, a
folder the user added to, removed from or edited lists other files. Losing the records (the cache
deleted) only makes fmscope refuse to replace its own earlier outputs, never replace the user's.

Design: fmscope's own; the same idea as ``make``'s and rsync's size + modification-time check.
"""

from __future__ import annotations

import hashlib
import json
import os
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


def require_replaceable(path: str | os.PathLike, option: str = "The output") -> None:
    """Raise :class:`FmscopeError` when ``path`` exists and fmscope did not write it (or it changed since)."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()) or wrote(path):
        return
    kind = "folder" if path.is_dir() else "file"
    raise FmscopeError(
        f"{option} {path} is an existing {kind} that fmscope did not write (or that changed since fmscope "
        "wrote it); fmscope never replaces the user's files.",
        f"Give {option} a new name, or move {path} away first if it may go.",
    )
