"""fmscope's own checkpoint files (tuned models, classifier heads, image-expression models, training state):
atomic writes, safe reads, exact resume. It lies below both ``imaging`` and ``training``, which share it.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts written with
``torch.save`` through :func:`fmscope.atomic.atomic_write` (a kill while writing leaves the
previous file whole) and read back with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from fmscope.atomic import atomic_write
from fmscope.errors import FmscopeError


def write_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """``torch.save(payload)`` to ``path`` atomically."""
    atomic_write(path, lambda temporary: _save(payload, temporary))


def _save(payload: dict, target: Path) -> None:
    """``torch.save``, its file errors (a RuntimeError in torch) raised as :class:`OSError`."""
    try:
        torch.save(payload, target)
    except RuntimeError as error:
        raise OSError(f"torch could not write the file: {str(error)[:200]}") from error


def read_checkpoint(path: str | os.PathLike, what: str, made_by: str) -> dict:
    """The dict saved at ``path`` (``weights_only=True``); ``what`` / ``made_by`` name it in errors."""
    path = Path(path)
    if not path.is_file():
        raise FmscopeError(f"No {what} at {path}.", f"Give the file {made_by} wrote.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or damaged files
        raise FmscopeError(
            f"{path} is not a readable {what} ({type(error).__name__}).", f"Give the file {made_by} wrote."
        ) from None
    if not isinstance(payload, dict):
        raise FmscopeError(f"{path} is not a {what}.", f"Give the file {made_by} wrote.")
    return payload
