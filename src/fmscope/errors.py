"""The one exception type fmscope raises for problems a user can fix."""

from __future__ import annotations


class FmscopeError(Exception):
    """A problem with the user's input or set-up, with a hint on how to fix it.

    Front ends (CLI, napari, Slicer) show ``str(error)`` to the user as is and never
    a traceback; anything else that escapes is a bug in fmscope.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\nFix: {fix}")


class UsageError(FmscopeError):
    """The command line was used wrongly (options that do not fit together); the CLI exits 2."""


class Cancelled(Exception):
    """Raised from a progress callback to stop long work; nothing is written when it is."""
