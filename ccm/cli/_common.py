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
130   INTERRUPTED   stopped by Ctrl-C (SIGINT) before it finished
====  ============  ==========================================================
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

import click

from ccm._util import json_safe_text as json_text

__all__ = [
    "ENV_LOCK_TIMEOUT",
    "NOT_GZIP",
    "REPORT_BUGS",
    "ExistingFile",
    "ExitCode",
    "Fail",
    "IsoDateTime",
    "as_of_option",
    "aware",
    "echo",
    "exit_code_for",
    "json_text",
    "lock_timeout",
    "needs_extra",
    "out_folder",
    "printable",
    "report_error",
    "shown",
]

#: Where a bug in ccm is reported (the one line of an INTERNAL error says it).
REPORT_BUGS = ("please report it to the ccm maintainers with the command you ran and the "
               "output of `ccm --debug ...` and `ccm doctor` (docs/cli.md, \"Reporting a bug\")")


#: What a terminal acts on instead of showing, in a message: C0 controls but tab and line
#: feed (ESC starts escape sequences that retitle, clear or rewrite the screen; CR rewrites
#: the line), DEL, C1 controls (U+009B is a one-character CSI), bidi embeddings, overrides and
#: isolates (they reorder what is shown), and lone surrogates (they cannot be written).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
                          "\ud800-\udfff]")
#: The same in one value from data, where a line break or tab is not the message's own either.
_UNPRINTABLE_VALUE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
                                "\ud800-\udfff]")
#: Longest value from data a message shows whole (a customer id); longer ones are cut.
MAX_SHOWN = 80


def _escaped(found: re.Match[str]) -> str:
    return repr(found.group())[1:-1]  # \x1b, \x9b, \u202e, \ud800


def printable(message: str) -> str:
    """``message`` with what a terminal would act on written as escapes (``\\x1b``), so that
    text from requests, files or the record cannot move the cursor, retitle the window or
    clear the screen of the operator reading it. Line breaks and tabs stay."""
    return _UNPRINTABLE.sub(_escaped, message)


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """One value from data (a customer id) for a message: escaped as :func:`printable` does,
    line breaks and tabs too, and cut to ``limit`` characters with its length when longer,
    so that a hostile id can neither fake lines nor flood the screen."""
    text = str(value)
    if len(text) > limit:
        text = f"{text[:limit - 20]}\u2026 ({len(text)} characters)"
    return _UNPRINTABLE_VALUE.sub(_escaped, text)


def echo(message: str, *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` of a message made :func:`printable`: how the commands print text."""
    click.echo(printable(message), err=err, nl=nl)


class ExitCode(IntEnum):
    """The documented exit codes of every ``ccm`` command."""

    OK = 0
    BAD_INPUT = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    IO_ERROR = 5
    INTERNAL = 70
    INTERRUPTED = 130


class Fail(click.ClickException):
    """A one-line ``ccm: error: ...`` with a documented exit code.

    Without ``code``, the code is BAD_INPUT, or the code of the ccm error it
    was raised from (``raise Fail(...) from exc``, see :func:`exit_code_for`):
    an unknown template is NOT_FOUND whichever command re-words it.
    """

    def __init__(self, message: str, code: ExitCode | None = None) -> None:
        super().__init__(message)
        #: True when the code was not given: :func:`report_error` takes the cause's.
        self.by_cause = code is None
        # click declares exit_code a ClassVar; one instance attribute serves every code.
        self.exit_code = int(ExitCode.BAD_INPUT if code is None else code)  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        echo(f"ccm: error: {self.message}", err=True)


F = TypeVar("F", bound=Callable[..., Any])


class ExistingFile(click.Path):
    """A file that must exist: a missing one is NOT_FOUND (exit 3) naming the file,
    not a usage error (the command line is right, the file is not there)."""

    def __init__(self) -> None:
        super().__init__(exists=True, dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if not os.path.lexists(os.fsdecode(value)):
            raise Fail(f"{os.fsdecode(value)}: no such file; check the path", ExitCode.NOT_FOUND)
        return super().convert(value, param, ctx)


#: Seconds a writing command waits for another writer (docs/cli.md).
ENV_LOCK_TIMEOUT = "CCM_RECORD_LOCK_TIMEOUT"


def lock_timeout() -> float:
    """Seconds a write waits for another writer: ``$CCM_RECORD_LOCK_TIMEOUT``, else 30.

    Every command that writes the record passes it on, so a locked record
    fails the same way (exit CONFLICT) whichever command met the lock.
    """
    text = os.environ.get(ENV_LOCK_TIMEOUT) or "30"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise Fail(f"{ENV_LOCK_TIMEOUT} must be a number of seconds above 0, not {text!r}")
    return value

class IsoDateTime(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """An ISO 8601 date and time (``datetime.fromisoformat``: ``2026-06-01``,
    ``2026-06-01T12:00Z``, ``2026-06-01 12:00:00.5+02:00``, ...): the one parser of every
    command's ``--as-of`` (``ccm render``, ``ccm batch``, ``ccm send``)."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date and time, e.g. "
                      "2026-06-01T09:00:00+02:00 or 2026-06-01 (midnight)", param, ctx)


#: ``--as-of``: the time the contact policy sees (quiet hours, caps); naive means UTC.
as_of_option: Callable[[F], F] = click.option(
    "--as-of", "as_of", type=IsoDateTime(),
    default=None, metavar="DATETIME",
    help="The time the contact policy sees (quiet hours), ISO 8601; naive means UTC "
         "[default: now].",
)


def aware(moment: datetime | None) -> datetime | None:
    """``moment`` with UTC attached when it is naive (what ``--as-of`` promises)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


#: What a damaged or non-gzip ``.gz`` input is told (``ccm render``, ``ccm batch``).
NOT_GZIP = ("not a valid gzip file (damaged, cut short, or not gzip at all); compress it "
            "again or give the file uncompressed")

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


def _file_in_traceback(exc: BaseException) -> str | None:
    """The file ccm was working on when ``exc`` was raised: the innermost frame's
    ``path``-like local (a ``pathlib.Path``), or None."""
    from pathlib import PurePath

    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in ("path", "target", "data_file", "file", "filename", "out"):
            value = frame.f_locals.get(name)
            if isinstance(value, PurePath):
                return str(value)
    return None


def _os_error(exc: OSError) -> tuple[str, ExitCode]:
    """One sentence for an ``OSError`` that reached the CLI boundary, and its exit code."""
    where = exc.filename if exc.filename is not None else _file_in_traceback(exc)
    named = f" {os.fsdecode(where)}" if where is not None else ""
    if isinstance(exc, FileNotFoundError):
        return (f"cannot find{named}: no such file or folder; check the path",
                ExitCode.NOT_FOUND)
    advice = _IO_ADVICE.get(exc.errno or 0)
    if advice is None:
        advice = f"{exc.strerror or type(exc).__name__}; check the path and try again"
    return f"cannot use{named}: {advice}", ExitCode.IO_ERROR


def exit_code_for(exc: BaseException) -> ExitCode:
    """The documented exit code of a ccm error (the one table, docs/cli.md).

    NOT_FOUND for what does not exist (a pack, template, message, customer or
    record); CONFLICT for what the record's state refuses now (an idempotency
    key recorded for other parameters, a customer already erased or being
    erased, a record locked by another process); IO_ERROR when the record's
    storage fails; else BAD_INPUT.
    """
    from ccm.errors import (
        AlreadyErased,
        ErasurePending,
        IdempotencyConflict,
        NotFoundError,
        RecordIOError,
        RecordLocked,
    )

    if isinstance(exc, NotFoundError | LookupError):
        return ExitCode.NOT_FOUND
    if isinstance(exc, IdempotencyConflict | AlreadyErased | ErasurePending | RecordLocked):
        return ExitCode.CONFLICT
    if isinstance(exc, RecordIOError):
        return ExitCode.IO_ERROR
    return ExitCode.BAD_INPUT


def report_error(exc: BaseException, *, debug: bool = False) -> ExitCode:
    """Print ``exc`` as one ``ccm: error: ...`` paragraph on stderr; return its exit code.

    The CLI's one boundary (:func:`ccm.cli.main`): click's usage errors and
    :class:`Fail` show themselves; a ccm error is the user's input or setup
    (BAD_INPUT, or NOT_FOUND / CONFLICT by its class); an ``OSError`` is the
    system refusing (IO_ERROR, naming the file and what to do); anything else
    is a bug in ccm: one line and where to report it, exit INTERNAL, and the
    traceback only with ``--debug``.
    """
    from ccm.errors import CCMError

    if isinstance(exc, click.exceptions.Exit):
        return ExitCode(exc.exit_code) if exc.exit_code in set(ExitCode) else ExitCode.BAD_INPUT
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        exc.show()  # a bare group (`ccm`, `ccm record`): its help, as click prints it
        return ExitCode.USAGE
    if isinstance(exc, click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else "ccm"
        echo(f"ccm: error: {exc.format_message()} (usage: {where} --help)", err=True)
        return ExitCode.USAGE
    if isinstance(exc, Fail) and exc.by_cause and isinstance(exc.__cause__, CCMError):
        exc.show()
        return exit_code_for(exc.__cause__)
    if isinstance(exc, click.ClickException):
        exc.show()
        code = exc.exit_code
        return ExitCode(code) if code in set(ExitCode) else ExitCode.BAD_INPUT
    if isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, click.Abort) and isinstance(exc.__cause__, KeyboardInterrupt)):
        echo("ccm: interrupted", err=True)
        return ExitCode.INTERRUPTED
    if isinstance(exc, click.Abort):
        echo("ccm: error: stopped before finishing (not confirmed); "
             "run the command again", err=True)
        return ExitCode.BAD_INPUT
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, CCMError):
        echo(f"ccm: error: {exc}", err=True)
        return exit_code_for(exc)
    if isinstance(exc, OSError):
        message, code = _os_error(exc)
        echo(f"ccm: error: {message}", err=True)
        return code
    if isinstance(exc, UnicodeDecodeError):
        source = _file_in_traceback(exc)
        named = f"{source}: " if source else ""
        echo(f"ccm: error: {named}not UTF-8 text (a {exc.encoding} decoding error at "
             f"byte {exc.start}); save the file as UTF-8", err=True)
        return ExitCode.BAD_INPUT
    if isinstance(exc, MemoryError):
        echo("ccm: error: out of memory: the input is too large for this machine; "
             "split it (ccm batch streams large inputs)", err=True)
        return ExitCode.IO_ERROR
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {os.path.basename(frame[0].filename)}:{frame[0].lineno}" if frame else ""
    echo(f"ccm: internal error: {type(exc).__name__}{at}: this is a bug in ccm, not "
         f"in your input; {REPORT_BUGS}"
         + ("" if debug else "; `ccm --debug` shows the traceback"), err=True)
    return ExitCode.INTERNAL


def need_folder(path: Any, option: str, what: str) -> None:
    """Fail (exit 3, one line) unless the folder ``path`` given as ``option`` exists:
    ``--pack X: no such folder; give the brand pack's folder``."""
    if not Path(path).is_dir():
        raise Fail(f"{option} {path}: no such folder; give {what}", ExitCode.NOT_FOUND)


def out_folder(path: Any, option: str = "--out") -> Any:
    """Create the output folder ``path`` (and its parents), or fail with one clear line.

    Done before any work, so a folder that cannot be made stops the command
    before it renders or records anything.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise Fail(f"{option} {path}: a file of that name is in the way; give a folder",
                   ExitCode.BAD_INPUT) from exc
    except OSError as exc:
        advice = _IO_ADVICE.get(exc.errno or 0) or f"{exc.strerror}; check the path"
        raise Fail(f"{option} {path}: cannot create the folder: {advice}",
                   ExitCode.IO_ERROR) from exc
    return path


def needs_extra(command: str, modules: tuple[str, ...], extra: str) -> None:
    """Fail naming ``pip install 'ccm-engine[extra]'`` when one of ``modules`` is missing."""
    import importlib.util

    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise Fail(f"{command} needs {', '.join(missing)}, which the {extra} extra installs; "
                   f"run: pip install 'ccm-engine[{extra}]'")
