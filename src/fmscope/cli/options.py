"""argparse options shared by the commands (a window, the inference backend)."""

from __future__ import annotations

import argparse

from fmscope.backends import BACKENDS
from fmscope.errors import FmscopeError
from fmscope.imaging.intensity import parse_window


def window_option(text: str) -> str | tuple[float, float] | None:
    """argparse type for --window: 'auto', a preset name, or LEVEL,WIDTH (a bad value exits 2)."""
    try:
        return parse_window(text)
    except FmscopeError as error:
        raise argparse.ArgumentTypeError(f"{error.problem} {error.fix}") from None


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend`` (default None: ``$FMSCOPE_BACKEND``, else auto; see fmscope.backends)."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="image encoder runtime: openvino (CPU), torch, or auto (default: $FMSCOPE_BACKEND, "
        "else OpenVINO on CPU and torch on GPU)",
    )
