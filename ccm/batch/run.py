"""Batch runs: stream requests through an executor, keep the record, write the files.

::

    parent                                    workers (processes, a Dask cluster, or the
    ------                                    parent itself with workers=0)
    read rows (streaming)                     load Engine, open the record (same URL,
      -> skip/restore what the record has       same master key) once per process
      -> submit tasks (bounded window) -----> render each row (validate, consent, quiet
         with a chunk number each               hours, every channel)
                                              stage files / the task's JSONL or zip chunk
                                              sync
                                              Record.append_many (ONE call per task;
                                                caps re-checked atomically inside)
                                              publish: rename staged -> final
    count, errors.jsonl (line numbers), <---- small summary: counts, errors, print notes
      progress events, print order, summary

The order *stage, commit, publish* -- kept by each worker for its own task --
is what makes a run resumable: a file appears under its final name only
after its message is in the record, so a sender or print house watching
``out/`` never sees a message the record does not have; a staged file whose
message was committed is published on the next run (or, when only a worker
died, by the parent straight away); one whose message was not committed is
rendered again. The parent moves rows and counts; it neither records nor
writes outputs, so it is no bottleneck (``BatchSummary.parent_cpu``
measures it). See ``docs/batch.md`` for the full argument.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ccm._util import json_safe_text
from ccm.batch._chunks import FORMATS, JSONL_ABOVE, TEXT_CHANNELS, ChunkFiles, format_begun
from ccm.batch._commit import Row, _Committer, _Sink, _TaskResult, max_rss_mb
from ccm.batch._output import _Output
from ccm.batch._pool import _is_worker_death, _Pool
from ccm.batch._resume import _Resume
from ccm.batch._signals import Interrupted, StopSignals
from ccm.batch._values import BatchEvent, BatchSummary, EventKind, WorkerLimits
from ccm.batch._worker import _Spec
from ccm.batch.inputs import InputRow, parse_line
from ccm.errors import ConfigError, DataError
from ccm.message import CHANNELS, Request

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

#: Chunk lines restored on resume (from a staged chunk or the archive) published at a time.
COMMIT_MESSAGES = 256
#: Work per task the parent aims for when it sizes tasks: each task is one record commit
#: (and one chunk file), so a task is big enough that its commit costs little beside it.
TASK_SECONDS = 0.2
#: Most rows in one task.
MAX_CHUNK = 256
#: Seconds a run waits for another run writing into the same output folder.
WAIT_FOR_WRITERS = 600.0
#: Rows in the first tasks, before the run knows how long a row takes.
FIRST_CHUNK = 4
#: Seconds between progress events.
PROGRESS_SECONDS = 0.5




@dataclass
class _Task:
    """Rows sent to a worker together; they are staged, recorded and published together."""

    rows: list[Row]
    rewrite: frozenset[tuple[int, str]] = frozenset()
    isolated: bool = False
    #: The recorded message ids of re-rendered chunk lines (resume).
    rewrite_ids: dict[tuple[int, str], str] = field(default_factory=dict)
    #: The task's chunk number (``messages-<run>-<seq>.jsonl``).
    seq: int = 0


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
    output_format: str | None = None,
    lock_timeout: float | None = None,
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
    file per task (one record commit, ``out/messages-<run id>-<seq>.jsonl``)
    instead of one file each, ``"zip"`` into one zip archive per task. ``None``
    (the default): the format the run began with in ``out`` when it is resumed,
    else ``"jsonl"`` when ``total`` is over :data:`~ccm.batch._chunks.JSONL_ABOVE`
    rows, else ``"files"``. A run resumed with another format than it began with
    is a :class:`~ccm.errors.ConfigError` (its messages would be written twice,
    in both forms). Workers record and write what they
    render themselves: they open ``record_url`` (with the record's master key)
    and write into ``out``, so both must be reachable from them.
    ``lock_timeout``: seconds a write waits for another writer when the run
    opens ``record_url`` itself (default: the record's, 30 s).

    SIGINT and SIGTERM (in the main thread) stop the run at a safe point: its
    workers are stopped within seconds, the record closed and ``out`` unlocked,
    then the signal goes to the handler there was before (``KeyboardInterrupt``
    for SIGINT). What was made is kept; run again with the same ``run_id``.
    """
    return _Batch(
        template=template, pack=pack, templates=templates, out=out, record_url=record_url,
        run_id=run_id, channels=channels, locale=locale, executor=executor, workers=workers,
        on_event=on_event, print_file=print_file, limits=limits, options=options,
        chunk_size=chunk_size, window=window, durable=durable, total=total,
        master_key=master_key, now=now, output_format=output_format,
        lock_timeout=lock_timeout,
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
                 output_format: str | None = None,
                 lock_timeout: float | None = None) -> None:
        from ccm.errors import UnknownChannel
        from ccm.render.engine import Engine, default_record_url

        if workers < 0:
            raise ValueError("workers must be 0 or more")
        if output_format is not None and output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {', '.join(FORMATS)}")
        if run_id is not None and not run_id.strip():
            raise ValueError("run_id is empty: give a run id, or None for a new one")
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
        self.engine._check_locale(locale)  # before anything is written
        for channel in self.channels:  # links need tracking.base_url: stop once, not per row
            self.engine._check_links(self.tpl, channel)
        if (self.engine._links_document(self.tpl) and "pdf" not in self.channels
                and TEXT_CHANNELS.intersection(self.channels)):
            # A batch keeps only its channels' messages: the PDF an email links to is
            # recorded as the run's pdf message, so without it the links lead nowhere.
            raise ConfigError(
                f"document_delivery='link' in a batch needs the pdf channel: the linked "
                f"PDF is recorded as the run's pdf message (add 'pdf' to the channels of "
                f"this {self.tpl.id!r} run)", template=self.tpl.id)
        if print_file and "pdf" not in self.channels:
            raise ValueError("--print-file needs the pdf channel")
        self.run_id = run_id or new_run_id()
        self.spec = _Spec(
            pack=str(Path(pack).resolve()), templates=str(Path(templates).resolve()),
            template=template, run_id=self.run_id, channels=self.channels, locale=locale,
            print_copy=print_file, options=options,
            limits=limits if limits is not None else WorkerLimits(), now=now,
            email_pdf="email" in self.channels and "pdf" in self.tpl.channels
            and (self.tpl.attach_pdf or self.engine._links_document(self.tpl)),
        )
        self.record = self._open_record(record_url or default_record_url(), master_key,
                                        lock_timeout)
        self._owns_record = self.record is not record_url
        self.output = _Output(out, self.run_id, durable=durable)
        self.on_event = on_event
        self._lock = self._wait_for_writers()
        try:  # the folder lock is released if the run cannot start
            output_format = self._output_format(output_format, total)
            self._had_files = self.output.has_files()
            self.chunks = (ChunkFiles(self.output, self.run_id, output_format)
                           if output_format != "files" else None)
            self.sink = _Sink(
                out=self.output.url if not self.output.local else self.output.root,
                run_id=self.run_id, durable=durable, output_format=output_format,
                had_files=self._had_files, **_shared_record(self.record),
                parent_pid=os.getpid() if executor is None and workers > 0 else None,
            )
            self._seq = self.chunks.seq if self.chunks is not None else 0
            # A run the record has never seen: rows need no resume lookups, so the parent
            # sends raw input lines and the workers parse them (and read consent themselves).
            probe = getattr(self.record, "has_key_prefix", None)
            shared = self.sink.record_url is not None or (executor is None and workers == 0)
            self._fresh = bool(shared and probe is not None
                               and not probe(f"{self.run_id}:{self.tpl.id}:"))
        except BaseException:
            self.output.unlock(self._lock)
            raise
        self._own_committer: _Committer | None = None
        self._restored_lines: list[dict[str, Any]] = []
        self._rewrite_ids: dict[tuple[int, str], str] = {}
        self.print_file = print_file
        self.executor = executor
        self.workers = workers
        self.fixed_chunk = chunk_size
        self.chunk_size = chunk_size or FIRST_CHUNK
        self._row_seconds: float | None = None
        self.window = window
        self.summary = BatchSummary(run_id=self.run_id, template=template,
                                    out=self.output.url, total=total)
        self.suppressed: Counter[str] = Counter()
        #: The earliest and latest end of the quiet hours that deferred messages.
        self._defer_span: list[datetime] = []
        self._errors: IO[str] | None = None
        self._print_order: IO[str] | None = None
        self._last_progress = 0.0
        self._started = time.monotonic()
        self._cpu_started = time.process_time()
        self._signals = StopSignals()
        self._config_error: BaseException | None = None
        self._overrides = getattr(self.record, "consent_overrides", None)
        self._ahead: deque[InputRow] = deque()
        self._known: dict[str, Any] = {}
        self._consent: dict[str, Any] = {}

    def _output_format(self, asked: str | None, total: int | None) -> str:
        """The run's output format: ``asked``, else the one it began with, else by size.

        Kept in the output folder for text channels (PDFs are files in every format);
        a resumed run asked for another one than it began with stops here, before
        anything is written twice.
        """
        text = bool(TEXT_CHANNELS.intersection(self.channels))
        began = format_begun(self.output, self.run_id) if text else None
        if asked is None:
            asked = began or ("jsonl" if total is not None and total > JSONL_ABOVE else "files")
        elif began is not None and began != asked:
            raise ConfigError(
                f"run {self.run_id} began with output format {began!r} in "
                f"{self.output.display('')}: resume it with that format (ccm batch "
                f"--output-format {began}), or start a new run (another run id) for "
                f"{asked!r}; with both, its messages would be written twice",
                out=self.output.url, output_format=asked)
        if text and began is None:
            self.output.note_run_format(self.run_id, asked)
        return asked

    def _wait_for_writers(self) -> int | None:
        """Wait until nothing else writes into ``out/`` (another run, or workers of a killed
        one finishing a commit), then hold a shared lock that this run's workers share."""
        try:
            fd = self.output.lock(shared=False, wait=0)
        except TimeoutError:
            logger.warning("waiting for another batch run writing into %s", self.output.url)
            self._emit("waiting", out=self.output.display(""), seconds=WAIT_FOR_WRITERS)
            try:
                fd = self.output.lock(shared=False, wait=WAIT_FOR_WRITERS)
            except TimeoutError:
                raise ConfigError(
                    f"another batch run is writing into {self.output.display('')} (still "
                    f"after {WAIT_FOR_WRITERS:.0f} s); wait until it has finished, or write "
                    "into another --out folder", out=self.output.url) from None
        self.output.share(fd)
        return fd

    @staticmethod
    def _open_record(record: Any, master_key: Any, lock_timeout: float | None = None) -> Any:
        from ccm.record import Record

        if isinstance(record, Record):
            return record
        key = master_key
        from_env = any(os.environ.get(n) for n in ("CCM_MASTER_KEY", "CCM_MASTER_KEY_FILE"))
        if key is None and from_env:
            from ccm.record import MasterKey

            key = MasterKey.from_env()
        if lock_timeout is not None:
            return Record(str(record), master_key=key, lock_timeout=lock_timeout)
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
                   suppressed=sum(self.suppressed.values()), deferred=s.deferred,
                   duplicate=s.duplicate,
                   failed=s.failed, rate=round(rate, 2), eta=eta,
                   elapsed=round(elapsed, 2))

    # -- the loop -------------------------------------------------------------------

    def run(self, requests: Iterable[Any]) -> BatchSummary:
        self._started = time.monotonic()
        self._cpu_started = time.process_time()
        errors_name = "errors.jsonl"
        self.summary.errors_file = self.output.display(errors_name)
        logger.info("batch %s: template %s, channels %s", self.run_id, self.tpl.id,
                    ",".join(self.channels))
        # While the pool is in use, SIGINT and SIGTERM are noted and acted on at a safe
        # point (ccm.batch._signals): the workers are stopped, then the signal is handed on.
        signals = self._signals = StopSignals()
        pool: _Pool | None = None
        try:
            signals.install()
            self._emit("start", run_id=self.run_id, template=self.tpl.id,
                       channels=list(self.channels), total=self.summary.total,
                       out=self.output.url, workers=self.workers,
                       archived=getattr(self.record, "master_key", None) is not None,
                       record=getattr(self.record, "where", None),
                       record_created=bool(getattr(self.record, "created", False)))
            pool = _Pool(self.spec, self.sink, self.executor, self.workers)
            if pool.inline:
                pool.committer = self._committer()
            self.pool = pool
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
            pool.close()
            signals.restore()  # from here on, a signal acts as it always does
            if self.print_file:
                self._write_print_stream()
            self.output.cleanup()
        except Interrupted:
            pass  # handed on below, once the workers are stopped and the folder unlocked
        finally:
            if pool is not None:
                if signals.signum is not None:
                    pool.stop()
                else:
                    pool.close()
            signals.restore()
            self._finish(pool)
            if signals.signum is not None:
                # What was made is kept, staging folder included (its print copies, and
                # the files of tasks committed but not yet published, serve the resume).
                logger.info("batch %s interrupted (signal %d)", self.run_id, signals.signum)
                signals.deliver()
        self._progress(force=True)
        self._emit("done", **self.summary.to_dict())
        logger.info("batch %s done: %s", self.run_id, self.summary.to_dict())
        return self.summary

    def _finish(self, pool: _Pool | None) -> None:
        """The end of every run, stopped or not: the last counts; the record closed and the
        output folder unlocked (a resume may start at once)."""
        try:
            if pool is not None:
                self.summary.workers_replaced = pool.replaced
                self.summary.workers_retired = pool.retired
            self.summary.suppressed = dict(self.suppressed)
            if self._defer_span:
                first, last = self._defer_span[0], self._defer_span[-1]
                self.summary.deferred_until = {
                    "earliest": first.isoformat(), "earliest_zone": str(first.tzinfo),
                    "latest": last.isoformat(), "latest_zone": str(last.tzinfo),
                }
            self.summary.elapsed = time.monotonic() - self._started
            self.summary.parent_cpu = time.process_time() - self._cpu_started
            self.summary.parent_max_rss_mb = max_rss_mb()
            if self._owns_record:
                self.record.close()
        finally:
            self.output.unlock(self._lock)

    def _loop(self, pool: _Pool, rows: Iterator[InputRow]) -> None:
        capacity = pool.capacity
        window = self.window or max(2, capacity * 3)
        in_flight: dict[cf.Future[Any], _Task] = {}
        suspects: deque[_Task] = deque()
        exhausted = False
        chunk: list[Row] = []
        rewrite: set[tuple[int, str]] = set()
        recycle = False
        while True:
            self._signals.check()
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
                in_flight[self._submit(pool, task)] = task
            isolating = any(t.isolated for t in in_flight.values())
            while (not suspects and not isolating and not recycle and not exhausted
                   and len(in_flight) < window):
                row = self._next_row(rows)
                if row is None:
                    exhausted = True
                    if chunk:
                        task = _Task(chunk, frozenset(rewrite))
                        in_flight[self._submit(pool, task)] = task
                        chunk, rewrite = [], set()
                    break
                prepared = self._prepare(row)
                if prepared is None:
                    continue
                item, redo = prepared
                chunk.append(item)
                rewrite.update((row.line, c) for c in redo)
                if len(chunk) >= self.chunk_size:
                    task = _Task(chunk, frozenset(rewrite))
                    in_flight[self._submit(pool, task)] = task
                    chunk, rewrite = [], set()
            if not in_flight:
                if exhausted and not suspects:
                    return
                continue
            done, _ = cf.wait(in_flight, timeout=PROGRESS_SECONDS,
                              return_when=cf.FIRST_COMPLETED)
            self._signals.check()  # before results: workers stopped by a signal are no crash
            broken: list[_Task] = []
            for future in done:
                task = in_flight.pop(future)
                try:
                    result = future.result()
                except BaseException as exc:
                    if _is_worker_death(exc) or isinstance(exc, cf.CancelledError):
                        broken.append(task)
                        continue
                    raise
                if result.results is not None:  # the record is in this process's memory
                    result = self._committer().commit(
                        result.results, rewrite=task.rewrite, rewrite_ids=task.rewrite_ids,
                        seq=task.seq, retry_recycled=pool.restartable and not task.isolated)
                if result.recycle and pool.restartable:
                    recycle = True
                for line in result.retry:
                    suspects.append(_Task(
                        [row for row in task.rows if row[0] == line],
                        frozenset(x for x in task.rewrite if x[0] == line),
                        isolated=True,
                        rewrite_ids={k: v for k, v in task.rewrite_ids.items() if k[0] == line},
                    ))
                self._absorb(result)
                self._tune(result)
                recycle = recycle or pool.retire_due()
            if broken:
                self._recover(pool, broken, in_flight, suspects)
            if len(self._restored_lines) >= COMMIT_MESSAGES:
                self._commit()
            self._progress()

    def _submit(self, pool: _Pool, task: _Task) -> cf.Future[Any]:
        """Send a task to a worker, with its own chunk number and the ids it re-renders under."""
        for key in task.rewrite:
            if key in self._rewrite_ids:
                task.rewrite_ids[key] = self._rewrite_ids.pop(key)
        task.seq = self._next_seq()
        return pool.submit(task.rows, task.rewrite, task.rewrite_ids, task.seq,
                           pool.restartable and not task.isolated)

    def _committer(self) -> _Committer:
        """The parent's own committer: ``workers=0``, or a record only this process can open."""
        if self._own_committer is None:
            self._own_committer = _Committer(self.spec, self.sink, self.record,
                                             output=self.output)
        return self._own_committer

    def _tune(self, result: _TaskResult) -> None:
        """Size tasks to about :data:`TASK_SECONDS` of work: one PDF, or a few hundred SMS."""
        if self.fixed_chunk is not None or not result.rendered:
            return
        seconds = result.seconds / result.rendered
        avg = seconds if self._row_seconds is None else 0.8 * self._row_seconds + 0.2 * seconds
        self._row_seconds = avg
        self.chunk_size = max(1, min(MAX_CHUNK, int(TASK_SECONDS / max(avg, 1e-6))))

    def _recover(self, pool: _Pool, broken: list[_Task], in_flight: dict[cf.Future[Any], _Task],
                 suspects: deque[_Task]) -> None:
        """A worker died: find the row that killed it by running the suspects one at a time.

        The worker may have died mid-commit: part of its task may be in the record,
        even published. So once every old process is gone, its rows are looked up in
        the record again (as on resume): what is recorded is restored or published,
        only the rest is rendered again.
        """
        self._signals.check()
        if pool.restartable:
            # A broken process pool loses every task still in flight with it.
            broken.extend(in_flight.values())
            in_flight.clear()
            pool.restart(wait=True)
        if self.chunks is not None:  # what the dead worker published or left staged
            self.chunks = ChunkFiles(self.output, self.run_id, self.chunks.kind)
            self._seq = max(self._seq, self.chunks.seq)
        alone = len(broken) == 1 and len(broken[0].rows) == 1
        retried = 0
        for task in broken:
            again = self._again(task)
            if task.isolated or alone:
                if again:
                    self._worker_died([item for item, _ in again])
                continue
            for item, redo in again:
                suspects.append(_Task([item], redo, isolated=True))
                retried += 1
        if retried:
            logger.warning("a worker process died; %d row(s) will be retried one at a time",
                           retried, extra={"operator": True})

    def _again(self, task: _Task) -> list[tuple[Row, frozenset[tuple[int, str]]]]:
        """The rows of a task whose worker died, looked up in the record again."""
        self._known.clear()
        self._consent.clear()
        out = []
        for line, obj, channels, _ in task.rows:
            if channels is not None:  # counted as duplicates when first prepared
                self.summary.duplicate -= len(self.channels) - len(channels)
            prepared = self._prepare(_row(line, obj))
            if prepared is not None:
                item, redo = prepared
                out.append((item, frozenset((line, c) for c in redo)))
        return out

    def _worker_died(self, rows: list[Row]) -> None:
        for line, obj, _, _ in rows:
            cid = _row(line, obj).customer_id
            self._fail(line, cid, {
                "error": "WorkerDied",
                "message": "the worker process rendering this row died (memory or CPU budget "
                           "exceeded, or a crash) and was replaced; raise the budgets (ccm "
                           "batch --memory-limit, 128 MB or more for PDFs; --cpu-limit) or "
                           "check this row's data, then run again with the same run id",
            })

    # -- after a worker answered ----------------------------------------------------

    def _absorb(self, result: _TaskResult) -> None:
        """Count what a worker did with one task, and report its failed rows."""
        s = self.summary
        s.rows += result.rows
        s.generated += result.generated
        s.duplicate += result.duplicate
        s.rerendered += result.rerendered
        self.suppressed.update(result.suppressed)
        if result.deferred:
            s.deferred += result.deferred
            self._defer_span.extend(t for t in (result.defer_first, result.defer_last) if t)
            self._defer_span[:] = [min(self._defer_span), max(self._defer_span)]
        s.worker_max_rss_mb = max(s.worker_max_rss_mb, result.max_rss_mb)
        for line, customer_id, error in result.errors:
            self._fail(line, customer_id, error)
        for line, customer_id, message_id in result.prints:
            self._note_print(line, customer_id, message_id, "pdf")
        if result.config_error is not None and self._config_error is None:
            self._config_error = result.config_error

    def _fail(self, line: int, customer_id: str | None, error: Mapping[str, Any]) -> None:
        self.summary.rows += 1
        self.summary.failed += 1
        record = {"line": line, "customer_id": customer_id, **error}
        record.pop("traceback", None)
        if self._errors is not None:
            self._errors.write(_error_line(record))
            self._errors.flush()
        logger.warning("line %s (customer %s): %s: %s", line, customer_id,
                       error.get("error"), error.get("message"))
        self._emit("error", **record)

    # -- commit (restored chunk lines only; workers commit what they render) -----------

    def _commit(self) -> None:
        """Publish the chunk lines restored on resume (they are in the record already)."""
        restored, self._restored_lines = self._restored_lines, []
        if not restored or self.chunks is None:
            return
        name, handle = self.chunks.stage(restored, seq=self._next_seq())
        self.output.sync([handle])
        self.chunks.publish(name, restored, len(restored))
        self.output.publish_done()

    def _next_seq(self) -> int:
        """A chunk number of its own for every task (workers publish chunks side by side)."""
        self._seq += 1
        return self._seq

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


def _shared_record(record: Any) -> dict[str, Any]:
    """How workers open the run's record themselves: its URL (password included), master key
    and lock timeout; nothing for a record in this process's memory (the parent commits)."""
    url = getattr(record, "_url", None)
    if url is None or getattr(record, "_memory", False):
        return {}
    return {"record_url": url.render_as_string(hide_password=False),
            "master_key": getattr(record, "master_key", None),
            "lock_timeout": getattr(record, "_busy_ms", 30_000) / 1000}


def _row(line: int, obj: Any) -> InputRow:
    """A row as sent to a worker, back as an input row (a raw line parsed)."""
    return parse_line(line, obj) if isinstance(obj, bytes) else InputRow(line, obj)


def _rows(requests: Iterable[Any]) -> Iterator[InputRow]:
    for position, item in enumerate(requests, 1):
        if isinstance(item, InputRow):
            yield item
        elif isinstance(item, Request):
            yield InputRow(position, item.to_dict())
        else:
            yield InputRow(position, item)


_ = DataError  # documented in errors.jsonl entries

def _error_line(record: Mapping[str, Any]) -> str:
    """One line of errors.jsonl: UTF-8 JSON, a lone surrogate (a customer id request
    validation refused for it) and controls escaped (:func:`~ccm._util.json_safe_text`)."""
    return json_safe_text(json.dumps(record, ensure_ascii=False, default=str)) + "\n"
