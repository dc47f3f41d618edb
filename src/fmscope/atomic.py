"""Atomic file writes: write beside the target, then rename, so a failure never leaves a partial file; an existing
target is replaced only when fmscope wrote it (:mod:`fmscope.output_owner`)."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from fmscope import output_owner
from fmscope.errors import FmscopeError

# ``owner`` of atomic_write: who decides whether an existing target may be replaced
RECORDED = "recorded"  # fmscope's record of what it wrote (output_owner): every output, stores and .h5ad too
INTERNAL = "internal"  # a folder only fmscope writes (a session's snapshots): no check, no record


def file_suffix(path: Path) -> str:
    """Lower-case extension, with .nii.gz kept whole."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


# What atomic_write leaves beside ``path`` while it runs: ``.<name>.<12 hex><suffix>`` (the temporary) and
# ``.<name>.<12 hex>.old`` (a folder moved aside); a killed process leaves them behind.
LEFTOVER = re.compile(r"^\..+\.[0-9a-f]{12}(\..*)?$")


def is_leftover(path: Path) -> bool:
    """Whether ``path`` is named as a temporary or an aside of :func:`atomic_write` (a user's ``.git`` or
    ``.ipynb_checkpoints`` is not)."""
    return bool(LEFTOVER.match(path.name))


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], owner: str = RECORDED) -> None:
    """Call ``write(temporary_path)`` (same folder and extension as ``path``), then rename it to ``path``.

    An existing ``path`` fmscope did not write (or that changed since) is refused before anything is
    written (:func:`fmscope.output_owner.require_replaceable`; ``owner``: :data:`RECORDED` or
    :data:`INTERNAL`), and again just before the rename (a file the user saved there while the writer ran is
    kept, the new one dropped); what was written is recorded as fmscope's.

    The writer may create a file or a folder (a zarr store). An existing folder at ``path`` is
    moved aside first and deleted only after the new one is in place. The folder holding ``path``
    must exist (fmscope never creates the user's folders). An :class:`OSError` (disk, permission,
    missing folder) becomes a :class:`FmscopeError` naming ``path``; any other exception is a
    fault of the writer and propagates unchanged. Either way the temporary is removed and an
    earlier file at ``path`` is left untouched.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FmscopeError(
            f"Cannot write {path}: the folder {path.parent} does not exist.",
            f"Create it first (mkdir -p {path.parent}) or give a path in an existing folder.",
        )
    if owner == RECORDED:
        output_owner.require_replaceable(path)
    # A fresh name the writer creates itself, so the file gets the user's usual permissions.
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}{file_suffix(path)}"
    try:
        write(temporary)
        if owner == RECORDED:  # again: the user may have saved at ``path`` while the writer ran (minutes for a store)
            output_owner.require_replaceable(path)
        if temporary.is_dir() and path.exists():
            aside = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.old"
            os.replace(path, aside)
            try:
                os.replace(temporary, path)
            except OSError:
                os.replace(aside, path)  # the user's folder back in place
                raise
            _remove(aside)
        else:
            os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise FmscopeError(
            f"Cannot write {path} ({type(error).__name__}: {str(error)[:200]}).",
            "Check the folder is writable and has free space.",
        ) from None
    except BaseException:
        _remove(temporary)
        raise
    if owner != INTERNAL:
        output_owner.record(path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
