"""sha256 of a file's bytes, streamed and memoised: the one file hash of fmscope.

Torch-free on purpose: the session journal (imported when the napari plugin starts) and the checkpoint
loader both use it, and napari's start must not import torch (``tests/test_startup.py``).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

CHUNK = 1 << 20  # bytes read at a time: a file is never held in memory whole


@lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    """``size`` and ``mtime_ns`` are part of the memo key only: a rewritten file is hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file at ``path``, memoised on (resolved path, size, modification time in ns), so
    hashing the same unchanged weights or video again is free. Raises OSError when it cannot be read."""
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
