"""The ``fmscope`` command line: imaging (segment, volume, eval, demo), spatial omics
(embed, domains, impute, deconvolve, annotate, finetune, classify) and train-segmenter.

Exit codes: 0 success, 1 a problem with the input or set-up (message on stderr, no
traceback), 2 wrong usage (argparse, or options that do not fit together: UsageError),
130 interrupted. An unexpected error is reported in one message too (exit 1);
FMSCOPE_DEBUG=1 shows its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fmscope.errors import FmscopeError, UsageError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``fmscope``."""
    from fmscope import __version__
    from fmscope.cli import batch, image_expression, imaging, omics, session, tracking, train

    parser = argparse.ArgumentParser(prog="fmscope", description="Biomedical foundation models from the shell.")
    parser.add_argument("--version", action="version", version=f"fmscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    imaging.add_commands(commands)
    omics.add_commands(commands)
    batch.add_commands(commands)
    image_expression.add_commands(commands)
    train.add_commands(commands)
    tracking.add_commands(commands)
    session.add_commands(commands)
    return parser


def _tolerate_ascii_terminals() -> None:
    """Under an ASCII locale (LANG=C), print µm, progress bars and arrows as escapes instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and "utf" not in (stream.encoding or "").lower():
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    from fmscope.backends.telemetry import disable_openvino_telemetry

    disable_openvino_telemetry()  # before anything can import OpenVINO (the backends do it again themselves)
    _tolerate_ascii_terminals()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"fmscope {args.command}: error: {error}\n(see 'fmscope {args.command} --help')", file=sys.stderr)
        return 2
    except FmscopeError as error:
        print(f"fmscope: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fmscope: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug in fmscope: still one message, not a traceback
        if os.environ.get("FMSCOPE_DEBUG"):
            raise
        print(
            f"fmscope: error: unexpected {type(error).__name__}: {str(error)[:300]}\n"
            "This is a bug in fmscope; rerun with FMSCOPE_DEBUG=1 for the traceback and report it.",
            file=sys.stderr,
        )
        return 1
