"""Atomic file writes: write beside the target, then rename, so a failure never leaves a partial file."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from fmscope.errors import FmscopeError


def file_suffix(path: Path) -> str:
    """Lower-case extension, with .nii.gz kept whole."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)`` (same folder and extension as ``path``), then rename it to ``path``.

    The writer may create a file or a folder (a zarr store). An existing folder at ``path`` is
    moved aside first and deleted only after the new one is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name the writer creates itself, so the file gets the user's usual permissions.
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}{file_suffix(path)}"
    try:
        write(temporary)
        if temporary.is_dir() and path.exists():
            aside = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.old"
            os.replace(path, aside)
            os.replace(temporary, path)
            _remove(aside)
        else:
            os.replace(temporary, path)
    except Exception as error:
        _remove(temporary)
        if isinstance(error, FmscopeError):
            raise
        raise FmscopeError(f"Cannot write {path} ({type(error).__name__}: {str(error)[:200]}).",
                           "Check the folder exists and is writable, and the file extension.") from None


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
