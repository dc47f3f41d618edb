"""The fmscope command line run in this process: the same ``fmscope.cli.main`` the console script calls, with
its stdout and stderr captured, so a test pays for no new Python and no second torch import.

A few tests per command still start a real process (``run_process``): exit codes seen by a shell, the locale,
and the no-traceback rule; everything else uses :func:`run_cli`.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class CliResult:
    """What a shell user would see: the exit code, stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _environment(env: dict[str, str] | None):
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cli(*args, env: dict[str, str] | None = None) -> CliResult:
    """Run ``fmscope ARGS...`` in this process; argparse's exits (usage errors: 2) become the return code."""
    from fmscope.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return CliResult(code, out.getvalue(), err.getvalue())


def run_process(*args, env: dict[str, str] | None = None, timeout: float = 900) -> CliResult:
    """Run ``python -m fmscope.cli ARGS...`` as a new process (what the shell sees, locale included)."""
    result = subprocess.run(
        [sys.executable, "-m", "fmscope.cli", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    return CliResult(result.returncode, result.stdout, result.stderr)
