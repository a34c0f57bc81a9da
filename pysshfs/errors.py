"""The one error type that reaches the user as a single line on stderr."""

from __future__ import annotations

from pysshfs.sanitize import sanitize


class MountError(OSError):
    """A failure the user must fix.

    str(err.strerror) is the line printed after ``pysshfs: ``, in the form
    ``<what went wrong>: <why> (<what to do>)``. Carries an errno like every error here.
    The line is sanitised: parts of it may come from the server or the network.
    """

    def __init__(self, err: int, what: str, why: str, fix: str = "") -> None:
        line = sanitize(f"{what}: {why}" + (f" ({fix})" if fix else ""))
        super().__init__(err, line)
        self.what = what
        self.why = why
        self.fix = fix

    def __str__(self) -> str:
        return str(self.strerror)
