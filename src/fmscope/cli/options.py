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
        help="runtime of the model's heavy networks: openvino (CPU), torch, or auto (default: $FMSCOPE_BACKEND, "
        "else OpenVINO on CPU and torch on GPU)",
    )


def add_prompt_options(parser: argparse.ArgumentParser, where: str) -> None:
    """--box, --point and --label for prompts drawn ``where`` (e.g. "in pixels", "on --frame"), in pixels (x, y)."""
    parser.add_argument(
        "--box",
        nargs=4,
        type=float,
        action="append",
        metavar=("X0", "Y0", "X1", "Y1"),
        help=f"object box {where}; repeat for several objects (object k is the k-th box)",
    )
    parser.add_argument(
        "--point", nargs=2, type=float, action="append", metavar=("X", "Y"), help=f"click {where}; repeat for several"
    )
    parser.add_argument(
        "--label",
        type=int,
        action="append",
        choices=(0, 1),
        help="1 = object, 0 = background; one per --point (default 1)",
    )
