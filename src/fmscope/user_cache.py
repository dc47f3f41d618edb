"""fmscope's per-user cache folder (compiled models; never user data).

``$FMSCOPE_CACHE_DIR`` when set, else the platform's cache location: ``%LOCALAPPDATA%\\fmscope\\Cache``
on Windows, ``~/Library/Caches/fmscope`` on macOS, ``$XDG_CACHE_HOME/fmscope`` (default
``~/.cache/fmscope``) elsewhere. Everything in it can be deleted at any time: it is rebuilt on demand.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
