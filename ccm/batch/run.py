"""Batch runs: stream requests through an executor, keep the record, write the files.

::

    parent                                        workers (processes, or a Dask cluster)
    ------                                        -------
    read rows (streaming)                         load Engine once per process
      -> skip/restore what the record has         (record=False: no database here)
      -> submit chunks (bounded window)  ------>  validate, contact policy (consent,
                                                  quiet hours), render every channel
    collect results                     <------   summaries + content + entry fields
      -> stage files (temp names)
      -> append to the record in batches (caps re-checked atomically)
      -> publish: rename staged -> final
      -> errors.jsonl, progress events, summary

The order *stage, commit, publish* is what makes a run resumable: a file
appears under its final name only after its message is in the record, so a
sender or print house watching ``out/`` never sees a message the record does
not have; a staged file whose message was committed is published on the next
run; one whose message was not committed is rendered again. See
``docs/batch.md`` for the full argument.

Logging: ``ccm.batch.run`` logs one INFO line per run start and end, WARNING for
rows that fail or worker processes that die, DEBUG per commit.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ccm.batch._chunks import FORMATS, TEXT_CHANNELS, ChunkFiles, message_line
from ccm.batch._commit import _Pending, append_all
from ccm.batch._output import _Output
from ccm.batch._pool import _is_worker_death, _Pool
from ccm.batch._resume import _Resume
from ccm.batch._values import BatchEvent, BatchSummary, EventKind, WorkerLimits
from ccm.batch._worker import _RowResult, _Spec
from ccm.batch.inputs import InputRow
from ccm.errors import DataError
from ccm.message import CHANNELS, SUFFIXES, Request

if TYPE_CHECKING:
    from ccm.record import Record
    from ccm.render.engine import RenderOptions
    from ccm.render.template import Template

__all__ = [
    "BatchEvent",
    "BatchSummary",
    "WorkerLimits",
    "new_run_id",
    "request_schema",
    "run_batch",
]

logger = logging.getLogger("ccm.batch.run")
logger.addHandler(logging.NullHandler())

#: Messages collected before the parent commits them to the record.
COMMIT_MESSAGES = 256
#: Seconds between commits when results arrive slowly.
COMMIT_SECONDS = 1.0
#: Work per task the parent aims for when it sizes chunks of rows.
TASK_SECONDS = 0.05
#: Most rows in one task.
MAX_CHUNK = 256
#: Seconds between progress events.
PROGRESS_SECONDS = 0.5




@dataclass
class _Task:
    rows: list[tuple[int, Any, tuple[str, ...] | None, Any]]
    rewrite: frozenset[tuple[int, str]] = frozenset()
    isolated: bool = False


def run_batch(
    template: str,
    requests: Iterable[Any],
    *,
    pack: str | os.PathLike[str],
    templates: str | os.PathLike[str] = "templates",
    out: str | os.PathLike[str],
    record_url: str | Record | None = None,
    run_id: str | None = None,
    channels: Sequence[str] | None = None,
    locale: str | None = None,
    executor: cf.Executor | None = None,
    workers: int = 1,
    on_event: Callable[[BatchEvent], None] | None = None,
    print_file: bool = False,
    limits: WorkerLimits | None = None,
    options: RenderOptions | None = None,
    chunk_size: int | None = None,
    window: int | None = None,
    durable: bool = True,
    total: int | None = None,
    master_key: Any = None,
    now: datetime | None = None,
    output_format: str = "files",
) -> BatchSummary:
    """Render ``template`` for every request and keep the record; resumable by ``run_id``.

    ``requests`` yields :class:`~ccm.batch.inputs.InputRow`, :class:`~ccm.message.Request`
    or request mappings (line numbers are then positions, from 1). Work goes to
    ``executor`` when given (a ``concurrent.futures.Executor``, e.g.
    ``distributed.Client(...).get_executor()``), else to a process pool of
    ``workers`` processes (``workers=0`` renders in this process, without
    limits). ``record_url`` is a record URL or an open :class:`Record`;
    ``None`` uses ``CCM_RECORD_URL`` or ``sqlite:///ccm-record.db``.

    Rows that fail are written to ``out/errors.jsonl`` and counted; the run
    goes on. A :class:`~ccm.errors.ConfigError` stops it (after committing
    what was made) and is raised. ``now`` fixes the time the contact policy
    sees (quiet hours), e.g. to run "as of" a send time; default: the clock.
    ``output_format`` ``"jsonl"`` writes SMS and email messages into one JSONL
    file per record commit (``out/messages-<run id>-<seq>.jsonl``) instead of one
    file each, ``"zip"`` into one zip archive per commit; resume a run with the
    format it started with.
    """
    return _Batch(
        template=template, pack=pack, templates=templates, out=out, record_url=record_url,
        run_id=run_id, channels=channels, locale=locale, executor=executor, workers=workers,
        on_event=on_event, print_file=print_file, limits=limits, options=options,
        chunk_size=chunk_size, window=window, durable=durable, total=total,
        master_key=master_key, now=now, output_format=output_format,
    ).run(requests)


def request_schema(template: Template) -> dict[str, Any]:
    """The JSON Schema of a whole request for ``template``: types the cells of CSV input."""
    from ccm._schema import load_schema

    base = load_schema("request")
    return {
        "type": "object",
        "properties": {
            "customer": base["properties"]["customer"],
            "data": template.contract,
        },
        "$defs": template.contract.get("$defs", {}),
    }


def new_run_id() -> str:
    """A fresh run id: UTC time plus randomness, e.g. ``20250131T120000-1a2b3c``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class _Batch(_Resume):
    """One run's state; :func:`run_batch` is the public face."""

    _restore_flush = COMMIT_MESSAGES

    def __init__(self, *, template: str, pack: str | os.PathLike[str],
                 templates: str | os.PathLike[str], out: str | os.PathLike[str],
                 record_url: str | Record | None, run_id: str | None,
                 channels: Sequence[str] | None, locale: str | None,
                 executor: cf.Executor | None, workers: int,
                 on_event: Callable[[BatchEvent], None] | None, print_file: bool,
                 limits: WorkerLimits | None, options: RenderOptions | None,
                 chunk_size: int | None, window: int | None, durable: bool,
                 total: int | None, master_key: Any, now: datetime | None,
                 output_format: str = "files") -> None:
        from ccm.errors import UnknownChannel
        from ccm.render.engine import Engine, default_record_url

        if workers < 0:
            raise ValueError("workers must be 0 or more")
        if output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {', '.join(FORMATS)}")
        self.engine = Engine(pack, templates, record=None, options=options)
        self.tpl = self.engine.template(template)
        wanted = tuple(channels) if channels else tuple(c for c in CHANNELS
                                                       if c in self.tpl.channels)
        for channel in wanted:
            if channel not in self.tpl.channels:
                raise UnknownChannel(
                    f"template {self.tpl.id!r} has no {channel!r} channel; it has: "
                    f"{', '.join(self.tpl.channels)}",
                    template=self.tpl.id, channel=channel, available=list(self.tpl.channels),
                )
        self.channels = tuple(c for c in CHANNELS if c in wanted)
        if print_file and "pdf" not in self.channels:
            raise ValueError("--print-file needs the pdf channel")
        self.run_id = run_id or new_run_id()
        self.spec = _Spec(
            pack=str(Path(pack).resolve()), templates=str(Path(templates).resolve()),
            template=template, run_id=self.run_id, channels=self.channels, locale=locale,
            print_copy=print_file, options=options,
            limits=limits if limits is not None else WorkerLimits(), now=now,
        )
        self.record = self._open_record(record_url or default_record_url(), master_key)
        self._owns_record = self.record is not record_url
        self.output = _Output(out, self.run_id, durable=durable)
        self._had_files = self.output.has_files()
        self.chunks = (ChunkFiles(self.output, self.run_id, output_format)
                       if output_format != "files" else None)
        self._restored_lines: list[dict[str, Any]] = []
        self._rewrite_ids: dict[tuple[int, str], str] = {}
        self.on_event = on_event
        self.print_file = print_file
        self.executor = executor
        self.workers = workers
        self.fixed_chunk = chunk_size
        self.chunk_size = chunk_size or 1
        self._row_seconds: float | None = None
        self.window = window
        self.summary = BatchSummary(run_id=self.run_id, template=template,
                                    out=self.output.url, total=total)
        self.suppressed: Counter[str] = Counter()
        self._pending: list[_Pending] = []
        self._errors: IO[str] | None = None
        self._print_order: IO[str] | None = None
        self._last_commit = time.monotonic()
        self._last_progress = 0.0
        self._started = time.monotonic()
        self._caps: dict[str, Any] = {
            c: self.engine.policy.caps_for(self.tpl.message_type, c) for c in self.channels
        } if self.engine.pack.policy else {}
        self._config_error: BaseException | None = None
        self._overrides = getattr(self.record, "consent_overrides", None)
        self._ahead: deque[InputRow] = deque()
        self._known: dict[str, Any] = {}
        self._consent: dict[str, Any] = {}

    @staticmethod
    def _open_record(record: Any, master_key: Any) -> Any:
        from ccm.record import Record

        if isinstance(record, Record):
            return record
        key = master_key
        from_env = any(os.environ.get(n) for n in ("CCM_MASTER_KEY", "CCM_MASTER_KEY_FILE"))
        if key is None and from_env:
            from ccm.record import MasterKey

            key = MasterKey.from_env()
        return Record(str(record), master_key=key)

    # -- events -------------------------------------------------------------------

    def _emit(self, kind: EventKind, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(BatchEvent(kind, data))

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_SECONDS:
            return
        self._last_progress = now
        s = self.summary
        elapsed = now - self._started
        rate = s.rows / elapsed if elapsed > 0 else 0.0
        eta = None
        if s.total is not None and rate > 0:
            eta = round(max(s.total - s.rows, 0) / rate, 1)
        self._emit("progress", done=s.rows, total=s.total, generated=s.generated,
                   suppressed=sum(self.suppressed.values()), duplicate=s.duplicate,
                   failed=s.failed, rate=round(rate, 2), eta=eta,
                   elapsed=round(elapsed, 2))

    # -- the loop -------------------------------------------------------------------

    def run(self, requests: Iterable[Any]) -> BatchSummary:
        self._started = time.monotonic()
        cpu_started = time.process_time()
        errors_name = "errors.jsonl"
        self.summary.errors_file = self.output.display(errors_name)
        logger.info("batch %s: template %s, channels %s", self.run_id, self.tpl.id,
                    ",".join(self.channels))
        self._emit("start", run_id=self.run_id, template=self.tpl.id,
                   channels=list(self.channels), total=self.summary.total,
                   out=self.output.url, workers=self.workers)
        pool = _Pool(self.spec, self.executor, self.workers)
        self.pool = pool
        try:
            with self.output.open_final(errors_name, "w") as errors:
                self._errors = errors
                if self.print_file:
                    self._print_order = self._open_print_order()
                try:
                    self._loop(pool, _rows(requests))
                finally:
                    self._commit()
                    if self._print_order is not None:
                        self._print_order.close()
            if self._config_error is not None:
                raise self._config_error
            if self.print_file:
                self._write_print_stream()
            self.output.cleanup()
        finally:
            pool.close()
            self.summary.workers_replaced = pool.replaced
            self.summary.workers_retired = pool.retired
            self.summary.suppressed = dict(self.suppressed)
            self.summary.elapsed = time.monotonic() - self._started
            self.summary.parent_cpu = time.process_time() - cpu_started
            if self._owns_record:
                self.record.close()
        self._progress(force=True)
        self._emit("done", **self.summary.to_dict())
        logger.info("batch %s done: %s", self.run_id, self.summary.to_dict())
        return self.summary

    def _loop(self, pool: _Pool, rows: Iterator[InputRow]) -> None:
        capacity = pool.capacity
        window = self.window or max(2, capacity * 3)
        in_flight: dict[cf.Future[Any], _Task] = {}
        suspects: deque[_Task] = deque()
        exhausted = False
        chunk: list[tuple[int, Any, tuple[str, ...] | None, Any]] = []
        rewrite: set[tuple[int, str]] = set()
        recycle = False
        while True:
            if self._config_error is not None:
                for future in in_flight:
                    future.cancel()
                return
            if recycle and not in_flight:
                # Out of memory, or old enough to retire: drain, then start fresh processes.
                pool.restart()
                recycle = False
            # Isolation: after a worker died, suspects run one at a time, alone.
            if suspects and not in_flight and not recycle:
                task = suspects.popleft()
                in_flight[pool.submit(task.rows)] = task
            isolating = any(t.isolated for t in in_flight.values())
            while (not suspects and not isolating and not recycle and not exhausted
                   and len(in_flight) < window):
                row = self._next_row(rows)
                if row is None:
                    exhausted = True
                    if chunk:
                        in_flight[pool.submit(chunk)] = _Task(chunk, frozenset(rewrite))
                        chunk, rewrite = [], set()
                    break
                prepared = self._prepare(row)
                if prepared is None:
                    continue
                item, redo = prepared
                chunk.append(item)
                rewrite.update((row.line, c) for c in redo)
                if len(chunk) >= self.chunk_size:
                    in_flight[pool.submit(chunk)] = _Task(chunk, frozenset(rewrite))
                    chunk, rewrite = [], set()
            if not in_flight:
                if exhausted and not suspects:
                    return
                continue
            done, _ = cf.wait(in_flight, timeout=COMMIT_SECONDS,
                              return_when=cf.FIRST_COMPLETED)
            broken: list[_Task] = []
            for future in done:
                task = in_flight.pop(future)
                try:
                    results = future.result()
                except BaseException as exc:
                    if _is_worker_death(exc) or isinstance(exc, cf.CancelledError):
                        broken.append(task)
                        continue
                    raise
                for result in results:
                    if result.recycle and pool.restartable:
                        recycle = True
                        if not task.isolated:
                            # Out of memory, maybe because of a neighbour: retry alone, fresh.
                            suspects.append(_Task(
                                [row for row in task.rows if row[0] == result.line],
                                frozenset(x for x in task.rewrite if x[0] == result.line),
                                isolated=True,
                            ))
                            continue
                    self._collect(result, task.rewrite)
                self._tune(results)
                recycle = recycle or pool.retire_due()
            if broken:
                self._recover(pool, broken, in_flight, suspects)
            if (len(self._pending) >= COMMIT_MESSAGES
                    or time.monotonic() - self._last_commit >= COMMIT_SECONDS):
                self._commit()
            self._progress()

    def _tune(self, results: list[_RowResult]) -> None:
        """Size tasks to about :data:`TASK_SECONDS` of work: one PDF, or a few hundred SMS."""
        if self.fixed_chunk is not None or not results:
            return
        seconds = sum(r.seconds for r in results) / len(results)
        avg = seconds if self._row_seconds is None else 0.8 * self._row_seconds + 0.2 * seconds
        self._row_seconds = avg
        self.chunk_size = max(1, min(MAX_CHUNK, int(TASK_SECONDS / max(avg, 1e-6))))

    def _recover(self, pool: _Pool, broken: list[_Task], in_flight: dict[cf.Future[Any], _Task],
                 suspects: deque[_Task]) -> None:
        """A worker died: find the row that killed it by running the suspects one at a time."""
        if pool.restartable:
            # A broken process pool loses every task still in flight with it.
            broken.extend(in_flight.values())
            in_flight.clear()
            pool.restart()
        alone = len(broken) == 1 and len(broken[0].rows) == 1
        for task in broken:
            if task.isolated or alone:
                self._worker_died(task)
                continue
            for row in task.rows:
                redo = frozenset(x for x in task.rewrite if x[0] == row[0])
                suspects.append(_Task([row], redo, isolated=True))
        if suspects:
            logger.warning("a worker process died; %d row(s) will be retried one at a time",
                           len(suspects))

    def _worker_died(self, task: _Task) -> None:
        for line, obj, _, _ in task.rows:
            cid = InputRow(line, obj).customer_id
            self._fail(line, cid, {
                "error": "WorkerDied",
                "message": "the worker process rendering this row died (memory or CPU budget "
                           "exceeded, or a crash); it was replaced",
            })

    # -- after a worker answered ----------------------------------------------------

    def _collect(self, result: _RowResult, rewrite: frozenset[tuple[int, str]]) -> None:
        if result.config_error is not None:
            self._config_error = result.config_error
            return
        if result.error is not None:
            self._fail(result.line, result.customer_id, result.error)
            return
        self.summary.rows += 1
        for rendered in result.messages:
            pending = _Pending(result.line, result.customer_id, rendered,
                               rewrite=(result.line, rendered.channel) in rewrite)
            if (self.chunks is not None and rendered.channel in TEXT_CHANNELS
                    and rendered.status == "generated" and rendered.content):
                entry = rendered.entry
                pending.item = message_line(
                    line=result.line, message_id=entry["message_id"],
                    customer_id=entry["customer_id"], channel=rendered.channel,
                    template=entry["template"], locale=entry["locale"],
                    filename=rendered.filename, content_sha256=entry["content_sha256"],
                    content=rendered.content)
                if pending.rewrite:
                    pending.item["message_id"] = self._rewrite_ids.pop(
                        (result.line, rendered.channel), entry["message_id"])
            elif rendered.status == "generated" and rendered.content:
                pending.staged_name = rendered.entry["message_id"] + SUFFIXES[rendered.channel]
                pending.handles.append(self.output.stage(pending.staged_name, rendered.content))
                if rendered.print_pdf is not None:
                    pending.handles.append(self.output.stage(
                        f"print/{rendered.entry['message_id']}.pdf", rendered.print_pdf))
            self._pending.append(pending)

    def _fail(self, line: int, customer_id: str | None, error: Mapping[str, Any]) -> None:
        self.summary.rows += 1
        self.summary.failed += 1
        record = {"line": line, "customer_id": customer_id, **error}
        record.pop("traceback", None)
        if self._errors is not None:
            self._errors.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            self._errors.flush()
        logger.warning("line %s (customer %s): %s: %s", line, customer_id,
                       error.get("error"), error.get("message"))
        self._emit("error", **record)

    # -- commit -----------------------------------------------------------------------

    def _commit(self) -> None:
        """Sync staged files, append to the record, then publish (see the module doc)."""
        self._last_commit = time.monotonic()
        pending, self._pending = self._pending, []
        restored, self._restored_lines = self._restored_lines, []
        if not pending and not restored:
            return
        chunk: tuple[str, int] | None = None
        handles = [h for p in pending for h in p.handles]
        if self.chunks is not None:
            lines = [*restored, *(p.item for p in pending if p.item is not None)]
            if lines:
                name, handle = self.chunks.stage(lines)
                chunk = (name, len(lines))
                handles.append(handle)
        self.output.sync(handles)
        taken = self._taken(pending)
        appended = append_all(self.record, [p for p in pending if not p.rewrite
                                            and id(p) not in taken], self._caps)
        kept = list(restored)
        published = False
        failed_lines: set[int] = set()
        for p in pending:
            rendered = p.rendered
            if id(p) in taken:
                self.output.discard(p.staged_name or "")
                if rendered.print_pdf is not None:
                    self.output.discard(f"print/{rendered.entry['message_id']}.pdf")
                if p.line not in failed_lines:
                    failed_lines.add(p.line)
                    self.summary.rows -= 1  # counted again by _fail
                    self._fail(p.line, p.customer_id, {
                        "error": "OutputExists", "channel": rendered.channel,
                        "file": self.output.display(rendered.filename),
                        "message": f"{self.output.display(rendered.filename)} already holds "
                                   "another message (of an earlier run?) and is not "
                                   "overwritten; write this run into a new --out folder or "
                                   "move the file away, then run again with the same run id",
                    })
                continue
            if p.rewrite:
                # The record has this message but neither its file nor its content:
                # the re-rendered file replaces it (its digest differs from the record's).
                if p.staged_name is not None:
                    self.output.publish(p.staged_name, rendered.filename)
                    published = True
                    self.summary.rerendered += 1
                    self._note_print(p.line, p.customer_id or "", rendered.entry["message_id"],
                                     rendered.channel)
                elif p.item is not None:
                    kept.append(p.item)
                    self.summary.rerendered += 1
                continue
            status, reason, message_id = appended[id(p)]
            if status == "generated":
                self.summary.generated += 1
                if p.staged_name is not None:
                    self.output.publish(p.staged_name, rendered.filename)
                    published = True
                    self._note_print(p.line, p.customer_id or "", message_id, rendered.channel)
                elif p.item is not None:
                    kept.append(p.item)
                continue
            if p.staged_name is not None:
                self.output.discard(p.staged_name)
                if rendered.print_pdf is not None:
                    self.output.discard(f"print/{rendered.entry['message_id']}.pdf")
            if status == "failed":
                if p.line not in failed_lines:
                    failed_lines.add(p.line)
                    self.summary.rows -= 1  # counted again by _fail
                    self._fail(p.line, p.customer_id,
                               {**(p.error or {}), "channel": rendered.channel})
            elif status == "suppressed":
                self.suppressed[reason or "policy"] += 1
            else:
                self.summary.duplicate += 1
        if chunk is not None and self.chunks is not None:
            self.chunks.publish(chunk[0], kept, chunk[1])
            published = True
        if published:
            self.output.publish_done()
        logger.debug("committed %d message(s)", len(pending))

    def _taken(self, pending: list[_Pending]) -> set[int]:
        """The new messages whose file name another file already has (never overwritten).

        Names are unique per customer, template and locale, so within a run they
        never meet; only files that were in ``out/`` before the run can be in the way.
        A file with exactly the message's bytes is not in the way, nor is the file of
        this run's message for the same key (the row is a duplicate).
        """
        if not self._had_files:
            return set()
        taken: set[int] = set()
        for p in pending:
            if p.rewrite or p.staged_name is None:
                continue
            present = self.output.read(p.rendered.filename)
            if present is None or present == p.rendered.content:
                continue
            if self.record.find_key(p.rendered.key) is not None:
                continue  # this run's own message is there: a duplicate row, recorded as such
            taken.add(id(p))
        return taken

    # -- the print stream ------------------------------------------------------------

    def _open_print_order(self) -> IO[str]:
        self.output._ensure_staging()
        target = self.output.staged("print/order.jsonl")
        if self.output.local:
            return open(target, "a", encoding="utf-8")
        handle: IO[str] = self.output.fs.open(target, "a")
        return handle

    def _note_print(self, line: int, customer_id: str, message_id: str, channel: str) -> None:
        if self._print_order is None or channel != "pdf":
            return
        self._print_order.write(json.dumps([line, customer_id, message_id]) + "\n")

    def _write_print_stream(self) -> None:
        title = f"{self.tpl.name} ({self.run_id})"
        name, index = self.output.write_print_stream(self.run_id, title)
        self.summary.print_file = self.output.display(name)
        self.summary.print_index = self.output.display(index)


def _rows(requests: Iterable[Any]) -> Iterator[InputRow]:
    for position, item in enumerate(requests, 1):
        if isinstance(item, InputRow):
            yield item
        elif isinstance(item, Request):
            yield InputRow(position, item.to_dict())
        else:
            yield InputRow(position, item)


_ = DataError  # documented in errors.jsonl entries
