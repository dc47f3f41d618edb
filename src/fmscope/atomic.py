"""Atomic file writes: write beside the target, then rename, so a failure never leaves a partial file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from fmscope.errors import FmscopeError


def file_suffix(path: Path) -> str:
    """Lower-case extension, with .nii.gz kept whole."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)`` (same folder and extension as ``path``), then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name the writer creates itself, so the file gets the user's usual permissions.
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}{file_suffix(path)}"
    try:
        write(temporary)
        os.replace(temporary, path)
    except Exception as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, FmscopeError):
            raise
        raise FmscopeError(f"Cannot write {path} ({type(error).__name__}: {str(error)[:200]}).",
                           "Check the folder exists and is writable, and the file extension.") from None
