"""A size bound on fmscope's OpenVINO cache folder (``<fmscope cache>/openvino``): least recently used first.

Every distinct set of weights gets its own converted network (a fine-tuned model file, each training run's
output, MedSAM ViT-B, MedSAM2), ~0.2-0.7 GB each with its compiled blobs. Without a bound the folder only grows:
a user who fine-tunes daily, or a test suite run many times, fills the disk (seen: 133 entries, 11 GB, and a
later install failed with "No space left on device"). So after each network is compiled in a process, entries
are removed, least recently used first, until the folder is within :func:`limit_bytes` (``$FMSCOPE_OPENVINO_CACHE_GB``,
default 4 GB). Never removed: the entry being used, any entry used in the last :data:`RECENT_SECONDS` (another
process may be compiling from it), and the last entries standing when they alone exceed the bound. A removed entry
is rebuilt on demand (20-60 s once). Leftover ``.tmp-*`` folders of killed writers older than an hour go too.

An entry's last use is the modification time of its ``last-used`` file (:func:`mark_used`), else of the folder.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from fmscope.errors import FmscopeError

LIMIT_ENVIRONMENT_VARIABLE = "FMSCOPE_OPENVINO_CACHE_GB"
DEFAULT_LIMIT_GB = 4.0
RECENT_SECONDS = 600.0
STALE_TEMPORARY_SECONDS = 3600.0
_MARKER = "last-used"


def limit_bytes() -> int:
    """The bound in bytes: ``$FMSCOPE_OPENVINO_CACHE_GB`` (a positive number of GB, 1e9 bytes) or 4 GB.

    Raises FmscopeError naming the variable when it is set to something that is not a positive number."""
    text = os.environ.get(LIMIT_ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return int(DEFAULT_LIMIT_GB * 1e9)
    try:
        gigabytes = float(text)
    except ValueError:
        gigabytes = -1.0
    if not gigabytes > 0:
        raise FmscopeError(
            f"{LIMIT_ENVIRONMENT_VARIABLE}={text!r} is not a positive number of gigabytes",
            f"set it to e.g. 4, or unset it for the default {DEFAULT_LIMIT_GB:g}",
        )
    return int(gigabytes * 1e9)


def mark_used(entry: Path) -> None:
    """Record that ``entry`` (one ``openvino/<key>`` folder) was used now."""
    marker = entry / _MARKER
    try:
        marker.touch()
    except OSError:  # a read-only or vanished cache: the bound then just counts the folder's own time
        pass


def last_used(entry: Path) -> float:
    """Seconds since the epoch when ``entry`` was last used (its marker, else the folder's modification time)."""
    marker = entry / _MARKER
    try:
        return marker.stat().st_mtime
    except OSError:
        return entry.stat().st_mtime


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under ``folder`` (0 for files that vanish while counted)."""
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def prune(root: Path, keep: Path, limit: int | None = None, now: float | None = None) -> list[Path]:
    """Remove least recently used entries of ``root`` (the ``openvino`` folder) until it holds at most ``limit``
    bytes (default :func:`limit_bytes`); ``keep`` and entries used within :data:`RECENT_SECONDS` of ``now``
    stay. Returns the entries removed, oldest first. A missing ``root`` is an empty cache."""
    limit = limit_bytes() if limit is None else limit
    now = time.time() if now is None else now
    if not root.is_dir():
        return []
    entries: list[tuple[float, int, Path]] = []
    for child in root.iterdir():
        if not child.is_dir():
            continue
        if child.name.startswith(".tmp-"):
            if now - child.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                shutil.rmtree(child, ignore_errors=True)
            continue
        entries.append((last_used(child), folder_bytes(child), child))
    total = sum(size for _, size, _ in entries)
    removed = []
    for used, size, entry in sorted(entries, key=lambda item: item[0]):
        if total <= limit:
            break
        if entry.resolve() == keep.resolve() or now - used < RECENT_SECONDS:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        total -= size
        removed.append(entry)
    return removed
