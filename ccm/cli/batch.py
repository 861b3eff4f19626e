"""``ccm batch``: render a template for every row of a file, resumably, with progress.

Mounted into the main CLI as ``ccm batch``. It parses options, builds the
executor (process pool, or Dask with ``--scheduler``), shows progress and
prints the summary; the work is :func:`ccm.batch.run.run_batch`.

Exit status: 0 every row succeeded (quiet-hours deferrals included), 1 some rows
failed (see ``errors.jsonl``), the setup is wrong or the input has no requests,
2 usage error, 130 interrupted (Ctrl-C, SIGINT), 143 stopped (SIGTERM): what was made
is kept, resume with the same run id.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import itertools
import logging
import os
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import click

from ccm.cli._common import (
    NOT_GZIP,
    ExitCode,
    Fail,
    _os_error,
    as_of_option,
    aware,
    echo,
    exit_code_for,
    json_text,
    lock_timeout,
    need_folder,
    printable,
    shown,
)
from ccm.errors import CCMError

__all__ = ["batch"]

CLUSTER_EXTRA = "pip install 'ccm-engine[cluster]'"
#: Seconds between plain progress lines when stderr is not a terminal.
PLAIN_EVERY = 5.0
#: Errors printed on stderr before the rest are only counted (all are in errors.jsonl).
MAX_ERRORS_SHOWN = 20




@contextlib.contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """SIGINT and SIGTERM stop the command alike, with ``KeyboardInterrupt``; yields the
    signals received, for the exit status (128 + the first one's number: 130, 143).

    Only the first raises: later ones (a second Ctrl-C) are noted while the run stops its
    workers, which takes a few seconds at most. A signal ignored (``nohup``) stays ignored.
    """
    received: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    previous: dict[signal.Signals, Any] = {}
    try:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) != signal.SIG_IGN:
                    previous[sig] = signal.signal(sig, stop)
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _stoppable(command: Callable[..., None]) -> Callable[..., None]:
    """Ctrl-C (SIGINT) or SIGTERM at any moment of ``ccm batch``, before the run starts too:
    ``ccm: interrupted; resume with --run-id RUN`` once, exit 130 or 143, no traceback.

    The run id is chosen here when none is given, so that the hint can name it.
    """

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        with _stop_signals() as received:
            try:
                if not kwargs.get("run_id"):
                    from ccm.batch.run import new_run_id

                    kwargs["run_id"] = new_run_id()
                command(*args, **kwargs)
            except KeyboardInterrupt:  # at any moment (a running pool stops its workers first)
                if kwargs.get("run_id"):
                    click.echo(f"ccm: interrupted; resume with --run-id {kwargs['run_id']}",
                               err=True)
                else:
                    click.echo("ccm: interrupted before the run started; nothing was made",
                               err=True)
                raise SystemExit(128 + (received[0] if received else signal.SIGINT)) from None

    return run


@click.command("batch")
@click.argument("template")
@click.option("--pack", "pack_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Brand pack folder.")
@click.option("--templates", "templates_dir", default="templates", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Templates folder.")
@click.option("--data", "data", required=True, metavar="FILE",
              help="Requests: .jsonl, .csv (dotted columns, e.g. customer.id) or .json, optionally "
                   ".gz; a path or an fsspec URL. Read streaming.")
@click.option("--out", "out", required=True, metavar="DIR",
              help="Output folder or fsspec URL (s3://..., file://...).")
@click.option("--record", "record_url", default=None, metavar="URL",
              help="Record URL [default: $CCM_RECORD_URL or sqlite:///ccm-record.db].")
@click.option("--run-id", default=None, metavar="ID", callback=lambda _c, _p, v: _run_id(v),
              help="Run id; give the same one to resume a run [default: a new one, printed].")
@click.option("--channel", "channels", multiple=True, type=click.Choice(["pdf", "email", "sms"]),
              help="Render only this channel (repeatable) [default: every channel].")
@click.option("--locale", default=None, help="Force a locale of the pack.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes (0: in this process) [default: CPU count; with "
                   "--scheduler local: 2 Dask workers].")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on Dask: tcp://HOST:PORT of a scheduler, or 'local' for a LocalCluster.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON event per line (start, progress, error, done) on stdout.")
@click.option("--print-file", is_flag=True,
              help="Also write one combined, UNENCRYPTED PDF for a print house, with an index CSV.")
@click.option("--memory-limit", type=click.IntRange(min=64), default=1024, show_default=True,
              metavar="MB", help="Address space a worker may add per document (process pool).")
@click.option("--cpu-limit", type=click.FloatRange(min=0, min_open=True), default=120.0,
              show_default=True, metavar="SECONDS",
              help="CPU seconds per document before its worker is killed and replaced.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None, metavar="N",
              help="Rows per worker task [default: sized to ~0.2 s of work, at most 256].")
@as_of_option
@click.option("--no-fsync", is_flag=True,
              help="Do not fsync files before the record commit (faster; after a power cut "
                   "files are restored from the archive or rendered again).")
@click.option("--output-format", type=click.Choice(["files", "jsonl", "zip"]), default=None,
              help="SMS and email as one file each, or one JSONL file / zip archive per "
                   "record commit (out/messages-RUN-SEQ.jsonl|.zip; PDFs stay files) "
                   "[default: a resumed run's own format; a new run: jsonl above 10,000 "
                   "input rows, else files]. A run resumes with the format it began with.")
@_stoppable
def batch(
    template: str,
    pack_dir: Path,
    templates_dir: Path,
    data: str,
    out: str,
    record_url: str | None,
    run_id: str | None,
    channels: tuple[str, ...],
    locale: str | None,
    workers: int | None,
    scheduler: str | None,
    as_json: bool,
    print_file: bool,
    memory_limit: int,
    cpu_limit: float,
    chunk_size: int | None,
    as_of: datetime | None,
    no_fsync: bool,
    output_format: str | None,
) -> None:
    """Render TEMPLATE for every request in --data into --out, resumably.

    Every message goes into the record with an idempotency key made of the
    run id, template, customer and channel: run again with the same --run-id
    after a crash and only what is missing is made. Rows that fail go to
    OUT/errors.jsonl; the run goes on and exits with status 1.
    """
    from ccm.batch.inputs import count_rows, read_requests
    from ccm.batch.run import WorkerLimits, new_run_id, request_schema, run_batch
    from ccm.render.template import load_template

    if "://" in out and not out.startswith("file://"):
        _need("fsspec", f"--out {out}")
    run_id = run_id or new_run_id()
    need_folder(pack_dir, "--pack", "the brand pack's folder")
    try:
        tpl = load_template(_template_dir(templates_dir, template))
    except CCMError as exc:
        raise Fail(str(exc), exit_code_for(exc)) from exc
    _local_paths(data, out)
    total = count_rows(data)
    try:
        rows = _guard(read_requests(data, schema=request_schema(tpl), raw=True), data)
    except ValueError as exc:
        raise Fail(str(exc)) from exc
    first = next(rows, None)
    if first is None:  # before anything is made: no folder, no record, no run
        raise Fail(f"{data}: the file has no requests (it is empty, or holds only blank "
                    "lines or a CSV header); nothing was rendered or written")
    rows = itertools.chain([first], rows)

    display = _Display(as_json=as_json, total=total, source=str(data))
    wait = lock_timeout()
    shown = _show_warnings()
    with _executor(scheduler, workers) as (executor, default_workers):
        try:
            summary = run_batch(
                template,
                rows,
                pack=pack_dir,
                templates=templates_dir,
                out=out,
                record_url=record_url,
                run_id=run_id,
                channels=channels or None,
                locale=locale,
                executor=executor,
                workers=default_workers if workers is None else workers,
                on_event=display.event,
                print_file=print_file,
                limits=WorkerLimits(memory_mb=memory_limit, cpu_seconds=cpu_limit),
                chunk_size=chunk_size,
                durable=not no_fsync,
                output_format=output_format,
                now=aware(as_of),
                total=total,
                lock_timeout=wait,
            )
        except KeyboardInterrupt:  # the hint and the exit status: _stoppable
            display.close()
            raise
        except (CCMError, ValueError, OSError, ImportError) as exc:
            display.close()
            if isinstance(exc, OSError):
                message, code = _os_error(exc)
                if message.startswith("cannot use: "):  # no file named: say where it writes
                    message = (f"cannot write the run's files (under {out}, its staging "
                               f"folder or the record): {message.removeprefix('cannot use: ')}")
            else:
                message, code = str(exc), (exit_code_for(exc) if isinstance(exc, CCMError)
                                           else ExitCode.BAD_INPUT)
            echo(f"ccm: error: {message}", err=True)
            if display.started:  # a run that never started has nothing to resume
                echo(f"ccm: resume with --run-id {run_id} once fixed", err=True)
            raise SystemExit(int(code)) from None
        finally:
            logging.getLogger("ccm.batch").removeHandler(shown)
    display.close()
    if not as_json:
        display.print_summary(summary.to_dict())
    raise SystemExit(summary.exit_status)


def _guard(rows: Iterator[Any], source: str) -> Iterator[Any]:
    """Turn read errors of the input (missing file, bad CSV header, a URL whose file system
    is not installed, any other refusal) into a one-line failure with its exit code."""
    try:
        yield from rows
    except FileNotFoundError as exc:
        raise Fail(f"--data {source}: no such file; check the path",
                   ExitCode.NOT_FOUND) from exc
    except ImportError as exc:  # fsspec names what its file system needs
        raise Fail(f"--data {source}: reading this URL needs more packages: {exc}; install "
                   "them (pip install ...) or copy the file here first") from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # before OSError: BadGzipFile is one
        raise Fail(f"{source}: {NOT_GZIP}") from exc
    except OSError as exc:
        message, code = _os_error(exc)
        raise Fail(f"--data {source}: {message}", code) from exc
    except ValueError as exc:
        text = str(exc)
        raise Fail(text if text.startswith(f"{source}:") else f"{source}: {text}") from exc


def _local_paths(data: str, out: str) -> None:
    """Fail before anything is made when ``--data`` is a folder or ``--out`` a file."""
    if "://" not in data or data.startswith("file://"):
        source = Path(data.removeprefix("file://"))
        if source.is_dir():
            raise Fail(f"--data {data}: that is a folder; give a .jsonl, .csv or .json file")
    if "://" not in out or out.startswith("file://"):
        target = Path(out.removeprefix("file://"))
        if target.exists() and not target.is_dir():
            raise Fail(f"--out {out}: a file of that name is in the way; give a folder")
        # The folder is made by the run, after the record is opened: find now what would
        # stop it (a file on the path, no permission), so no record is made for nothing.
        parent = target.absolute()
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise Fail(f"--out {out}: {parent} is a file, not a folder; check the path",
                       ExitCode.IO_ERROR)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise Fail(f"--out {out}: cannot create or write into it: permission denied on "
                       f"{parent}; check the folder's permissions or write somewhere else",
                       ExitCode.IO_ERROR)


def _run_id(value: str | None) -> str | None:
    """``--run-id``: None (a new run), or a run id that is not empty."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty (an unset shell variable?); give a run id, or "
                                 "leave the option out for a new run")
    return value


def _template_dir(templates_dir: Path, template: str) -> Path:
    """The template's folder, or a NOT_FOUND failure listing the templates there are."""
    folder = templates_dir / template
    if (folder / "template.yaml").is_file():
        return folder
    need_folder(templates_dir, "--templates", "the templates folder")
    there = sorted(p.parent.name for p in templates_dir.glob("*/template.yaml"))
    raise Fail(f"no template {template!r} in {templates_dir}; it has: "
               f"{', '.join(there) or 'none'}", ExitCode.NOT_FOUND)


class _Warnings(logging.Handler):
    """Warnings a run logs for its operator (a repaired file, a worker replaced) on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "operator", False):
            echo(f"ccm: warning: {record.getMessage()}", err=True)


def _show_warnings() -> logging.Handler:
    handler = _Warnings(logging.WARNING)
    logging.getLogger("ccm.batch").addHandler(handler)
    return handler


def _need(module: str, what: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise Fail(f"{what} needs the cluster extra: {CLUSTER_EXTRA}") from None


#: Seconds to reach a ``--scheduler tcp://...`` before giving up (exit 5).
SCHEDULER_TIMEOUT = 30


@contextlib.contextmanager
def _executor(scheduler: str | None, workers: int | None) -> Iterator[tuple[Any, int]]:
    """``(executor or None, default workers)`` for the run; Dask when ``scheduler`` is set."""
    if scheduler is None:
        yield None, os.cpu_count() or 1
        return
    _need("distributed", "--scheduler")
    import distributed

    dask: Any = distributed  # untyped library
    logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster: Any = None
    try:
        if scheduler == "local":
            cluster = dask.LocalCluster(n_workers=workers or 2, threads_per_worker=1,
                                        processes=True, dashboard_address=":0")
            client = dask.Client(cluster)
        else:
            client = dask.Client(scheduler, timeout=SCHEDULER_TIMEOUT)
    except OSError as exc:
        raise Fail(f"cannot reach the Dask scheduler {scheduler}: {exc}; check the address "
                   "and that the scheduler runs", ExitCode.IO_ERROR) from exc
    try:
        yield client.get_executor(), len(client.nthreads()) or 1
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class _Display:
    """Progress for people (rich bar on a terminal, plain lines otherwise) or JSON for machines."""

    def __init__(self, *, as_json: bool, total: int | None,
                 stream: TextIO | None = None, source: str = "") -> None:
        self.as_json = as_json
        self.source = source
        self.total = total
        self.stream = stream or sys.stderr
        self.errors = 0
        self._last_plain = 0.0
        self._progress: Any = None
        self._task: Any = None
        self.run_id = ""
        #: The run started (its ``start`` event came): a failure after it can be resumed.
        self.started = False
        if not as_json and self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>8.1f} rows/s"),
                TextColumn("failed {task.fields[failed]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )
            self._progress.start()

    def event(self, event: Any) -> None:
        handler: Callable[[dict[str, Any]], None] = getattr(self, f"_on_{event.kind}")
        if event.kind == "start":
            self.started = True
        if self.as_json:
            click.echo(json_text(event.to_json()))
            sys.stdout.flush()
            if event.kind != "error":
                return
        handler(event.data)

    def _on_waiting(self, data: dict[str, Any]) -> None:
        self._echo(f"ccm batch: another batch run is writing into {data['out']}; waiting for "
                   f"it to finish (at most {data['seconds']:.0f} s; Ctrl-C stops this run)")

    def _on_start(self, data: dict[str, Any]) -> None:
        self.run_id = str(data["run_id"])
        if self._progress is not None:
            self._task = self._progress.add_task(data["template"], total=data.get("total"),
                                                 rate=0.0, failed=0)
        self._echo(f"ccm batch: run {self.run_id}: {data['template']} "
                   f"({', '.join(data['channels'])}) -> {data['out']}")
        if data.get("record_created"):
            self._echo(f"ccm batch: new record at {data['record']} (there was none): if you "
                       "meant an existing record, stop this run and check --record or "
                       "CCM_RECORD_URL")
        if data.get("archived") is False:
            self._echo("ccm: warning: no master key (CCM_MASTER_KEY or CCM_MASTER_KEY_FILE): "
                       "the record keeps the entries but not the content, so files lost from "
                       "the output are rendered again instead of restored (docs/privacy.md)")

    def _on_progress(self, data: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=data["done"], rate=data["rate"],
                                  failed=data["failed"])
            return
        now = time.monotonic()
        if now - self._last_plain < PLAIN_EVERY:
            return
        self._last_plain = now
        total = data.get("total")
        share = f"/{total} ({100 * data['done'] / total:.0f}%)" if total else ""
        eta = f", ETA {_duration(data['eta'])}" if data.get("eta") is not None else ""
        self._echo(f"ccm batch: {data['done']}{share} rows, {data['rate']:.1f} rows/s{eta}, "
                   f"failed {data['failed']}")

    def _on_error(self, data: dict[str, Any]) -> None:
        self.errors += 1
        if self.as_json:
            return
        if self.errors <= MAX_ERRORS_SHOWN:
            who = f" (customer {shown(data['customer_id'])})" if data.get("customer_id") else ""
            where = f"{self.source}:" if self.source else "line "
            self._echo(f"ccm: {where}{data.get('line')}{who}: {data.get('error')}: "
                       f"{data.get('message')}")
        elif self.errors == MAX_ERRORS_SHOWN + 1:
            self._echo("ccm: more rows failed; every one is in errors.jsonl")

    def _on_done(self, data: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=data["rows"], rate=data["rate"],
                                  failed=data["failed"])

    def _echo(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(printable(text), markup=False, highlight=False)
        else:
            click.echo(printable(text), file=self.stream)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def print_summary(self, s: dict[str, Any]) -> None:
        suppressed = s["suppressed"]
        detail = ", ".join(f"{rule} {n}" for rule, n in sorted(suppressed.items()))
        lines = [
            f"run {s['run_id']}: {s['rows']} rows in {_duration(s['elapsed'])} "
            f"({s['rate']:.1f} rows/s)",
            f"  generated   {s['generated']}",
            f"  suppressed  {s['suppressed_total']}" + (f" ({detail})" if detail else ""),
            *_deferred_line(s),
            f"  duplicate   {s['duplicate']}" + (f" (already done: {s['skipped']} rows)"
                                                  if s["skipped"] else ""),
            f"  failed      {s['failed']}" + (f" -> {s['errors_file']}" if s["failed"] else ""),
        ]
        if s["restored"] or s["rerendered"]:
            lines.append(f"  restored    {s['restored']} file(s) missing or damaged in the "
                         "output (from staged copies or the record's archive)"
                         + (f", {s['rerendered']} re-rendered" if s["rerendered"] else ""))
        if s["workers_replaced"]:
            lines.append(f"  workers replaced {s['workers_replaced']}")
        if s.get("print_file"):
            lines.append(f"  print file  {s['print_file']} (index {s['print_index']})")
        if s["failed"]:
            lines.append(f"fix the rows and run again with --run-id {s['run_id']}")
        if s.get("deferred") and s.get("deferred_until"):
            until = s["deferred_until"]
            lines.append(f"quiet hours deferred {s['deferred']} message(s), not suppressed: "
                         f"run the same command again with --run-id {s['run_id']} after "
                         f"{_at(until['latest'], until['latest_zone'])} to send them")
        echo("\n".join(lines))


def _deferred_line(s: dict[str, Any]) -> list[str]:
    """The summary's ``deferred`` line: messages quiet hours hold, and until when."""
    if not s.get("deferred"):
        return []
    until = s.get("deferred_until")
    if not until:
        return [f"  deferred    {s['deferred']} (quiet hours)"]
    first = _at(until["earliest"], until["earliest_zone"])
    if datetime.fromisoformat(until["earliest"]) == datetime.fromisoformat(until["latest"]):
        when = first
    else:
        when = (f"each customer's own end of them, from {first} to "
                f"{_at(until['latest'], until['latest_zone'])}")
    return [f"  deferred    {s['deferred']} (quiet hours, until {when})"]


def _at(iso: str, zone: str) -> str:
    """``2026-06-02 08:00 Europe/London``: a deferral's end, in the customer's time."""
    return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M} {zone}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
