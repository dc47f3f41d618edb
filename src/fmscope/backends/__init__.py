"""Inference backends for the models' heavy static parts: ``torch`` (the reference) and ``openvino``.

The backend is chosen by name: ``torch``, ``openvino`` or ``auto`` (default: OpenVINO on CPU, torch on
a GPU or where OpenVINO is not installed), from the caller (``--backend``, the napari / Slicer setting)
or else ``$FMSCOPE_BACKEND``. Precision is separate: ``fp32`` (exact: fp32 everywhere, masks identical
to torch's) or ``fast`` (the CPU's native reduced precision: bfloat16 where the CPU has it).
Only :mod:`fmscope.backends.openvino_model` imports OpenVINO, after switching its telemetry off
(:mod:`fmscope.backends.telemetry`).
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from fmscope.errors import FmscopeError

if TYPE_CHECKING:  # the package stays light: the CLI's option and the widgets' choices import BACKENDS
    import torch

BACKENDS = ("auto", "torch", "openvino")
ENVIRONMENT_VARIABLE = "FMSCOPE_BACKEND"


def requested_backend(explicit: str | None = None) -> str:
    """The backend asked for: ``explicit`` (e.g. ``--backend``), else ``$FMSCOPE_BACKEND``, else ``auto``.

    Raises FmscopeError for a name that is not one of :data:`BACKENDS`.
    """
    if explicit is not None:
        value, source = explicit, "backend"
    elif os.environ.get(ENVIRONMENT_VARIABLE, "").strip():
        value, source = os.environ[ENVIRONMENT_VARIABLE].strip(), ENVIRONMENT_VARIABLE
    else:
        return "auto"
    value = value.lower()
    if value not in BACKENDS:
        raise FmscopeError(f"Unknown {source} '{value}'.", f"Use one of: {', '.join(BACKENDS)}.")
    return value


def openvino_installed() -> bool:
    """Whether the ``openvino`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(explicit: str | None, device: torch.device) -> str:
    """``torch`` or ``openvino`` for a model on ``device``, from :func:`requested_backend`.

    ``auto``: OpenVINO on CPU when installed, else torch. Raises FmscopeError when ``openvino`` is
    asked for on a non-CPU device or is not installed.
    """
    wanted = requested_backend(explicit)
    if wanted == "torch":
        return "torch"
    if wanted == "auto":
        return "openvino" if device.type == "cpu" and openvino_installed() else "torch"
    if device.type != "cpu":
        raise FmscopeError(
            f"The openvino backend runs on the CPU; the model is on {device}.",
            "Use --backend torch (or auto) on a GPU, or --device cpu.",
        )
    if not openvino_installed():
        raise FmscopeError(
            "The openvino backend needs the 'openvino' package, which is not installed.",
            "Install it (pip install openvino) or use --backend torch.",
        )
    return "openvino"
