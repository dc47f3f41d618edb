"""argparse option types shared by the commands (no command imports another command's module)."""

from __future__ import annotations

import argparse

from fmscope.errors import FmscopeError
from fmscope.imaging.intensity import parse_window


def window_option(text: str) -> str | tuple[float, float] | None:
    """argparse type for --window: 'auto', a preset name, or LEVEL,WIDTH (a bad value exits 2)."""
    try:
        return parse_window(text)
    except FmscopeError as error:
        raise argparse.ArgumentTypeError(f"{error.problem} {error.fix}") from None
