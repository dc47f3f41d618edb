"""First-use installation of fmscope into Slicer's own Python (Slicer application only)."""

from __future__ import annotations

import importlib
from pathlib import Path

import slicer

# The fmscope checkout this module was loaded from (module path added in Slicer), if any.
_CHECKOUT = Path(__file__).resolve().parents[3]
# Exact versions; a plain "torch" would pull a multi-GB CUDA build.
PINNED_TORCH = "torch==2.14.1 torchvision==0.29.1"


def _requirement() -> str:
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "constraints.txt").is_file():
        return f'"{_CHECKOUT}" -c "{_CHECKOUT / "constraints.txt"}"'
    return f"fmscope {PINNED_TORCH}"


def ensure_fmscope() -> bool:
    """True when fmscope can be imported, installing it with the user's consent if needed."""
    try:
        importlib.import_module("fmscope")
        return True
    except ImportError:
        pass
    requirement = _requirement()
    if not slicer.util.confirmOkCancelDisplay(
        "FMScope needs the fmscope Python package in Slicer's Python (with PyTorch 2.14.1, several GB, "
        "installed once).\n\nInstall now with:\n  pip install " + requirement,
        windowTitle="Install fmscope",
    ):
        return False
    with slicer.util.tryWithErrorDisplay("Installing fmscope failed; see the Python console.", waitCursor=True):
        slicer.util.pip_install(requirement)
    importlib.invalidate_caches()
    importlib.import_module("fmscope")
    return True
