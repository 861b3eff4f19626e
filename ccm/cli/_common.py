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

from collections.abc import Callable
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, TypeVar

import click

__all__ = ["ExitCode", "Fail", "as_of_option", "aware"]


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
