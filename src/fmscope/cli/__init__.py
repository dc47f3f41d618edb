"""The ``fmscope`` command line: imaging (segment, volume, eval, demo) and spatial omics
(embed, domains, impute, deconvolve, finetune, classify).

Exit codes: 0 success, 1 a problem with the input or set-up (message on stderr, no
traceback), 2 wrong usage (argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fmscope.errors import FmscopeError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``fmscope``."""
    from fmscope import __version__
    from fmscope.cli import imaging, omics, tracking

    parser = argparse.ArgumentParser(prog="fmscope", description="Biomedical foundation models from the shell.")
    parser.add_argument("--version", action="version", version=f"fmscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    imaging.add_commands(commands)
    omics.add_commands(commands)
    tracking.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except FmscopeError as error:
        print(f"fmscope: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fmscope: interrupted", file=sys.stderr)
        return 130
