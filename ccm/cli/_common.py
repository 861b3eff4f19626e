"""What every command module shares: the exit codes and the one-line error.

Exit codes (docs/cli.md has the same table; scripts may rely on them):

====  ============  ==========================================================
code  name          meaning
====  ============  ==========================================================
0     OK            done; for streams, every row succeeded
1     BAD_INPUT     the input or setup is wrong (a file, line, field, pack), or
                    some rows of a stream failed while the rest went on
2     USAGE         the command line is wrong (click's own usage errors)
3     NOT_FOUND     a customer, message, template or file that does not exist
4     CONFLICT      it exists already, or something else holds it (already
                    erased, another sender running, the database is locked)
5     IO_ERROR      the system refused: disk full, read-only file system,
                    permission denied, the database cannot be reached
70    INTERNAL      a bug in ccm: one line and where to report it
                    (``--debug`` shows the traceback)
====  ============  ==========================================================
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, TypeVar

import click

__all__ = ["REPORT_BUGS", "ExitCode", "Fail", "as_of_option", "aware", "report_error"]

#: Where a bug in ccm is reported (the one line of an INTERNAL error says it).
REPORT_BUGS = ("please report it to the ccm maintainers with the command you ran and the "
               "output of `ccm --debug ...` and `ccm doctor` (docs/cli.md, \"Reporting a bug\")")


class ExitCode(IntEnum):
    """The documented exit codes of every ``ccm`` command."""

    OK = 0
    BAD_INPUT = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    IO_ERROR = 5
    INTERNAL = 70


class Fail(click.ClickException):
    """A one-line ``ccm: error: ...`` with a documented exit code (default BAD_INPUT)."""

    def __init__(self, message: str, code: ExitCode = ExitCode.BAD_INPUT) -> None:
        super().__init__(message)
        # click declares exit_code a ClassVar; one instance attribute serves every code.
        self.exit_code = int(code)  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"ccm: error: {self.message}", err=True)


F = TypeVar("F", bound=Callable[..., Any])

#: ``--as-of``: the time the contact policy sees (quiet hours, caps); naive means UTC.
as_of_option: Callable[[F], F] = click.option(
    "--as-of", "as_of", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    default=None, metavar="DATETIME",
    help="The time the contact policy sees (quiet hours), ISO 8601; naive means UTC "
         "[default: now].",
)


def aware(moment: datetime | None) -> datetime | None:
    """``moment`` with UTC attached when it is naive (what ``--as-of`` promises)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


#: errno -> what to do, for the system's refusals (exit IO_ERROR).
_IO_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "permission denied: check the file's and the folder's permissions",
    errno.EPERM: "the operation is not permitted: check the file's and the folder's permissions",
    errno.EDQUOT: "the disk quota is exceeded: free some space or write somewhere else",
    errno.EISDIR: "that is a folder, not a file: give a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.ENAMETOOLONG: "the file name is too long: choose a shorter one",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or run fewer at once",
}


def _os_error(exc: OSError) -> tuple[str, ExitCode]:
    """One sentence for an ``OSError`` that reached the CLI boundary, and its exit code."""
    where = exc.filename if exc.filename is not None else None
    named = f" {os.fsdecode(where)}" if where is not None else ""
    if isinstance(exc, FileNotFoundError):
        return (f"cannot find{named}: no such file or folder; check the path",
                ExitCode.NOT_FOUND)
    advice = _IO_ADVICE.get(exc.errno or 0)
    if advice is None:
        advice = f"{exc.strerror or type(exc).__name__}; check the path and try again"
    return f"cannot use{named}: {advice}", ExitCode.IO_ERROR


def report_error(exc: BaseException, *, debug: bool = False) -> ExitCode:
    """Print ``exc`` as one ``ccm: error: ...`` paragraph on stderr; return its exit code.

    The CLI's one boundary (:func:`ccm.cli.main`): click's usage errors and
    :class:`Fail` show themselves; a ccm error is the user's input or setup
    (BAD_INPUT, or NOT_FOUND / CONFLICT by its class); an ``OSError`` is the
    system refusing (IO_ERROR, naming the file and what to do); anything else
    is a bug in ccm: one line and where to report it, exit INTERNAL, and the
    traceback only with ``--debug``.
    """
    from ccm.errors import CCMError, IdempotencyConflict, NotFoundError

    if isinstance(exc, click.exceptions.Exit):
        return ExitCode(exc.exit_code) if exc.exit_code in set(ExitCode) else ExitCode.BAD_INPUT
    if isinstance(exc, click.ClickException):
        exc.show()
        code = exc.exit_code
        return ExitCode(code) if code in set(ExitCode) else ExitCode.BAD_INPUT
    if isinstance(exc, click.Abort | KeyboardInterrupt):
        click.echo("ccm: interrupted", err=True)
        return ExitCode.BAD_INPUT
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, CCMError):
        code = ExitCode.BAD_INPUT
        if isinstance(exc, NotFoundError | LookupError):
            code = ExitCode.NOT_FOUND
        elif isinstance(exc, IdempotencyConflict):
            code = ExitCode.CONFLICT
        click.echo(f"ccm: error: {exc}", err=True)
        return code
    if isinstance(exc, OSError):
        message, code = _os_error(exc)
        click.echo(f"ccm: error: {message}", err=True)
        return code
    if isinstance(exc, MemoryError):
        click.echo("ccm: error: out of memory: the input is too large for this machine; "
                   "split it (ccm batch streams large inputs)", err=True)
        return ExitCode.IO_ERROR
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {os.path.basename(frame[0].filename)}:{frame[0].lineno}" if frame else ""
    click.echo(f"ccm: internal error: {type(exc).__name__}{at}: this is a bug in ccm, not "
               f"in your input; {REPORT_BUGS}"
               + ("" if debug else "; `ccm --debug` shows the traceback"), err=True)
    return ExitCode.INTERNAL
