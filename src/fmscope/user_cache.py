"""fmscope's per-user cache folder (compiled models; never user data).

``$FMSCOPE_CACHE_DIR`` when set, else the platform's cache location: ``%LOCALAPPDATA%\\fmscope\\Cache``
on Windows, ``~/Library/Caches/fmscope`` on macOS, ``$XDG_CACHE_HOME/fmscope`` (default
``~/.cache/fmscope``) elsewhere. Everything in it can be deleted at any time: it is rebuilt on demand.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fmscope.errors import FmscopeError

ENVIRONMENT_VARIABLE = "FMSCOPE_CACHE_DIR"


def cache_root() -> Path:
    """The folder (not created here) under which fmscope keeps rebuildable files."""
    if os.environ.get(ENVIRONMENT_VARIABLE, "").strip():
        return Path(os.environ[ENVIRONMENT_VARIABLE].strip()).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "fmscope" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "fmscope"
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "fmscope"


def unwritable(folder: Path, error: OSError, what: str, fix: str) -> FmscopeError:
    """The error for a cache folder that cannot be written (read-only home in a container, a folder of another
    user, a full disk): names ``folder``, the system's reason and ``fix`` (never "a bug in fmscope")."""
    reason = error.strerror or type(error).__name__
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(folder) else ""
    return FmscopeError(f"fmscope cannot write {what} in {folder}: {reason}{where}.", fix)


def cache_fix() -> str:
    """How to give fmscope a cache it can write (the fix of :func:`unwritable` for :func:`cache_root`)."""
    return (
        f"Set {ENVIRONMENT_VARIABLE} to a writable folder (e.g. export {ENVIRONMENT_VARIABLE}=/tmp/fmscope-cache), "
        "or use --backend torch, which needs no cache."
    )
