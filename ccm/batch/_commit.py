"""One task of a batch run, done where it was rendered: stage, append to the record, publish.

::

    worker (a process of the pool, a Dask worker, or the parent with workers=0)
      render_rows(spec, rows)                     ccm.batch._worker (one row at a time)
      stage: files / one JSONL or zip chunk       out/.ccm-staging-<tag>/ (temp names)
      sync                                        syncfs (or fsync per file)
      Record.append_many(every message)           ONE call; caps re-checked inside it
      publish: rename staged -> final             (a chunk without what the record refused)
      -> _TaskResult                              counts, errors with line numbers, print notes

Each worker opens the record itself (same URL, same master key; the record
takes concurrent writers: one transaction per customer group, per-customer
locks, caps counted inside the transaction), so the parent neither records
nor writes outputs and is no bottleneck. The order *stage, commit, publish*
is the same as when the parent did it, so the exactly-once argument of
``docs/batch.md`` holds per task.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ccm._util import fewer_collections
from ccm.batch._chunks import TEXT_CHANNELS, ChunkFiles, message_line
from ccm.batch._output import _Output
from ccm.batch._worker import (
    _describe_error,
    _engine_for,
    _Rendered,
    _RowResult,
    _Spec,
    render_rows,
)
from ccm.errors import IdempotencyConflict, MessageError
from ccm.message import SUFFIXES

logger = logging.getLogger("ccm.batch.run")
logger.addHandler(logging.NullHandler())

#: One row as it goes to a worker: (line, request -- or its raw JSONL line, bytes --,
#: channels or None for all, consent overrides or :data:`LOOKUP`).
Row = tuple[int, Any, "tuple[str, ...] | None", Any]
#: In place of a row's consent overrides: the worker reads them from its record.
LOOKUP = "lookup"


@dataclass(frozen=True)
class _Sink:
    """Where a task's results go: the output folder and the record. Small and picklable."""

    out: str
    run_id: str
    durable: bool
    output_format: str
    #: Whether ``out/`` held files before the run (then a name may be taken).
    had_files: bool
    #: The record's URL (password included), or None: the parent commits (in-memory record).
    record_url: str | None = None
    master_key: Any = None
    lock_timeout: float | None = None
    #: The run's parent process when the workers are its own processes: a worker whose
    #: parent died (SIGKILL, OOM) stops, and never starts a commit after a rerun began.
    parent_pid: int | None = None


@dataclass
class _TaskResult:
    """What a worker tells the parent about one task: counts and line numbers, no content."""

    rows: int = 0
    generated: int = 0
    duplicate: int = 0
    rerendered: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    #: Messages deferred by quiet hours (not suppressions: a rerun after the window sends
    #: them), and the earliest and latest end of those windows (aware, customer's zone).
    deferred: int = 0
    defer_first: datetime | None = None
    defer_last: datetime | None = None
    #: ``(line, customer id, error fields)`` of rows that failed (for errors.jsonl).
    errors: list[tuple[int, str | None, dict[str, Any]]] = field(default_factory=list)
    #: ``(line, customer id, message id)`` of PDFs published (for the print stream's order).
    prints: list[tuple[int, str, str]] = field(default_factory=list)
    #: Lines to run again, alone, in a fresh worker (out of memory, or a crash).
    retry: list[int] = field(default_factory=list)
    #: A worker ran out of memory or crashed: replace the processes.
    recycle: bool = False
    config_error: BaseException | None = None
    #: Seconds spent rendering, and rows rendered (to size tasks).
    seconds: float = 0.0
    rendered: int = 0
    #: Peak resident memory of the process that ran the task, in MiB.
    max_rss_mb: float = 0.0
    #: The rendered rows, when the parent commits them (the record is not shareable).
    results: list[_RowResult] | None = None

    def fail(self, line: int, customer_id: str | None, error: Mapping[str, Any]) -> None:
        self.errors.append((line, customer_id, dict(error)))

    def defer(self, until: datetime, count: int = 1) -> None:
        """Count ``count`` messages deferred until ``until``, and widen the span of ends."""
        self.deferred += count
        if self.defer_first is None or until < self.defer_first:
            self.defer_first = until
        if self.defer_last is None or until > self.defer_last:
            self.defer_last = until


@dataclass
class _Pending:
    """A rendered message waiting for the task's commit."""

    line: int
    customer_id: str | None
    rendered: _Rendered
    staged_name: str | None = None
    handles: list[Any] = field(default_factory=list)
    rewrite: bool = False
    error: dict[str, Any] | None = None
    #: Its JSONL line, when text messages go into chunks (``--output-format jsonl``).
    item: dict[str, Any] | None = None


def run_task(spec: _Spec, sink: _Sink, rows: Sequence[Row], rewrite: frozenset[tuple[int, str]],
             rewrite_ids: Mapping[tuple[int, str], str], seq: int, retry_recycled: bool,
             committer: _Committer | None = None) -> _TaskResult:
    """Worker task: render ``rows``, then stage, record and publish them (see the module doc).

    ``committer`` is given when the task runs in the parent (``workers=0``); a worker
    makes its own, once per process, from ``sink``.
    """
    with fewer_collections():
        if committer is None and sink.record_url is not None:
            committer = _committer_for(spec, sink)
        ready, results = _parse_rows(rows, committer.record if committer is not None else None)
        results.extend(render_rows(spec, ready))
        if committer is None:  # the record is in the parent's memory: send the rows back
            out = _TaskResult(results=results)
            for result in results:
                out.seconds += result.seconds
                out.rendered += 1
        else:
            out = committer.commit(results, rewrite=rewrite, rewrite_ids=rewrite_ids,
                                   seq=seq, retry_recycled=retry_recycled)
    out.max_rss_mb = max_rss_mb()
    return out


def _parse_rows(rows: Sequence[Row], record: Any) -> tuple[list[Row], list[_RowResult]]:
    """Parse raw JSONL lines (a bad one is an error row) and read consent overrides marked
    :data:`LOOKUP` from the record, one query for the task."""
    from ccm.batch.inputs import InputRow, parse_line
    from ccm.render.template import BAD_TEXT

    ready: list[Row] = []
    failed: list[_RowResult] = []
    lookup: set[str] = set()
    for line, obj, channels, overrides in rows:
        if isinstance(obj, bytes):
            row = parse_line(line, obj)
            if row.error is not None:
                failed.append(_RowResult(line, None, error={"error": "InputError",
                                                            "message": row.error}))
                continue
            obj = row.request
        if isinstance(overrides, str):
            customer_id = InputRow(line, obj).customer_id
            # An id validation refuses (BAD_TEXT) is not looked up: the record's driver may
            # not even encode it, and the row fails anyway.
            if customer_id is not None and not BAD_TEXT.search(customer_id):
                lookup.add(customer_id)
        ready.append((line, obj, channels, overrides))
    if not lookup:
        return ready, failed
    many = getattr(record, "consent_overrides_many", None)
    found: Mapping[str, Any] = many(lookup) if many is not None else {}
    return [
        (line, obj, channels,
         found.get(InputRow(line, obj).customer_id or "") if isinstance(overrides, str)
         else overrides)
        for line, obj, channels, overrides in ready
    ], failed


def max_rss_mb() -> float:
    """This process's own peak resident memory in MiB.

    On Linux ``VmHWM`` of ``/proc/self/status``: the peak of this process's
    memory since it started its program. ``ru_maxrss`` (the fallback, also
    on macOS) keeps the peak of the process that ``exec``'d it, so a run
    started from a large process would report that process's size.
    """
    import resource
    import sys

    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


#: The committer of this process (its open record), for the last sink seen.
_COMMITTER: tuple[Any, _Committer] | None = None


def _committer_for(spec: _Spec, sink: _Sink) -> _Committer:
    global _COMMITTER
    key = (spec.pack, spec.templates, spec.template, spec.channels, sink)
    if _COMMITTER is not None and _COMMITTER[0] == key:
        return _COMMITTER[1]
    from ccm.record import Record

    if _COMMITTER is not None:  # another run in a long-lived (Dask) worker
        _COMMITTER[1].close()
        _COMMITTER = None
    assert sink.record_url is not None
    options: dict[str, Any] = {}
    if sink.lock_timeout is not None:
        options["lock_timeout"] = sink.lock_timeout
    record = Record(sink.record_url, master_key=sink.master_key, **options)
    committer = _Committer(spec, sink, record, owns_record=True)
    if sink.parent_pid is not None:
        _watch_parent(sink.parent_pid)
    _COMMITTER = (key, committer)
    return committer


class _Committer:
    """Stages, records and publishes the messages of one task; lives as long as its process."""

    def __init__(self, spec: _Spec, sink: _Sink, record: Any, *, owns_record: bool = False,
                 output: _Output | None = None) -> None:
        self.record = record
        self.owns_record = owns_record
        self.output = output or _Output(sink.out, sink.run_id, durable=sink.durable)
        self.chunks = (ChunkFiles(self.output, sink.run_id, sink.output_format, scan=False)
                       if sink.output_format != "files" else None)
        self.had_files = sink.had_files
        self.parent_pid = sink.parent_pid
        engine = _engine_for(spec)
        tpl = engine.template(spec.template)
        self.caps: dict[str, Any] = {
            c: engine.policy.caps_for(tpl.message_type, c) for c in spec.channels
        } if engine.pack.policy else {}

    def close(self) -> None:
        if self.owns_record:
            self.record.close()

    def commit(self, results: Sequence[_RowResult], *, rewrite: frozenset[tuple[int, str]],
               rewrite_ids: Mapping[tuple[int, str], str], seq: int,
               retry_recycled: bool) -> _TaskResult:
        out = _TaskResult()
        pending: list[_Pending] = []
        for result in results:
            out.seconds += result.seconds
            out.rendered += 1
            if result.recycle:
                out.recycle = True
                if retry_recycled:
                    # Out of memory, maybe because of a neighbour: retry alone, fresh.
                    out.retry.append(result.line)
                    continue
            if result.config_error is not None:
                out.config_error = result.config_error
                continue
            if result.error is not None:
                out.fail(result.line, result.customer_id, result.error)
                continue
            out.rows += 1
            for rendered in result.messages:
                pending.append(self._stage(result.line, result.customer_id, rendered,
                                           rewrite, rewrite_ids))
        if not pending:
            return out
        # A worker commits under a shared lock of out/, and only while its run's parent
        # lives: a rerun takes the lock exclusively first, so it never meets a commit of
        # a worker its killed predecessor left behind.
        lock = self.output.lock(shared=True) if self.parent_pid is not None else None
        try:
            if self.parent_pid is not None and not _alive(self.parent_pid):
                os._exit(1)
            self._commit(pending, seq, out)
        finally:
            self.output.unlock(lock)
        return out

    def _stage(self, line: int, customer_id: str | None, rendered: _Rendered,
               rewrite: frozenset[tuple[int, str]],
               rewrite_ids: Mapping[tuple[int, str], str]) -> _Pending:
        pending = _Pending(line, customer_id, rendered, rewrite=(line, rendered.channel) in rewrite)
        if (self.chunks is not None and rendered.channel in TEXT_CHANNELS
                and rendered.status == "generated" and rendered.content):
            entry = rendered.entry
            pending.item = message_line(
                line=line, message_id=entry["message_id"], customer_id=entry["customer_id"],
                channel=rendered.channel, template=entry["template"], locale=entry["locale"],
                filename=rendered.filename, content_sha256=entry["content_sha256"],
                content=rendered.content)
            if pending.rewrite:
                pending.item["message_id"] = rewrite_ids.get((line, rendered.channel),
                                                             entry["message_id"])
        elif rendered.status == "generated" and rendered.content:
            pending.staged_name = rendered.entry["message_id"] + SUFFIXES[rendered.channel]
            pending.handles.append(self.output.stage(pending.staged_name, rendered.content))
            if rendered.print_pdf is not None:
                pending.handles.append(self.output.stage(
                    f"print/{rendered.entry['message_id']}.pdf", rendered.print_pdf))
        return pending

    def _commit(self, pending: list[_Pending], seq: int, out: _TaskResult) -> None:
        """Sync the staged files, append to the record, then publish (see the module doc)."""
        chunk: tuple[str, int] | None = None
        handles = [h for p in pending for h in p.handles]
        if self.chunks is not None:
            lines = [p.item for p in pending if p.item is not None]
            if lines:
                name, handle = self.chunks.stage(lines, seq=seq)
                chunk = (name, len(lines))
                handles.append(handle)
        self.output.sync(handles)
        taken = self._taken(pending)
        appended = append_all(self.record, [p for p in pending if not p.rewrite
                                            and id(p) not in taken], self.caps)
        kept: list[dict[str, Any]] = []
        published = False
        failed_lines: set[int] = set()

        def fail(p: _Pending, error: dict[str, Any]) -> None:
            if p.line not in failed_lines:
                failed_lines.add(p.line)
                out.rows -= 1  # a failed row is counted with the errors
                out.fail(p.line, p.customer_id, error)

        for p in pending:
            rendered = p.rendered
            if id(p) in taken:
                self._discard(p)
                name = self.output.display(rendered.filename)
                fail(p, {
                    "error": "OutputExists", "channel": rendered.channel, "file": name,
                    "message": f"{name} already holds another message (of an earlier run?) "
                               "and is not overwritten; write this run into a new --out "
                               "folder or move the file away, then run again with the same "
                               "run id",
                })
                continue
            if p.rewrite:
                # The record has this message but neither its file nor its content:
                # the re-rendered file replaces it (its digest differs from the record's).
                if p.staged_name is not None:
                    self.output.publish(p.staged_name, rendered.filename)
                    published = True
                    out.rerendered += 1
                    self._note_print(out, p, rendered.entry["message_id"])
                elif p.item is not None:
                    kept.append(p.item)
                    out.rerendered += 1
                continue
            status, reason, message_id = appended[id(p)]
            if status == "generated":
                out.generated += 1
                if p.staged_name is not None:
                    self.output.publish(p.staged_name, rendered.filename)
                    published = True
                    self._note_print(out, p, message_id)
                elif p.item is not None:
                    kept.append(p.item)
                continue
            self._discard(p)
            if status == "failed":
                fail(p, {**(p.error or {}), "channel": rendered.channel})
            elif status == "suppressed" and rendered.defer_until is not None:
                out.defer(rendered.defer_until)
            elif status == "suppressed":
                out.suppressed[reason or "policy"] += 1
            else:
                out.duplicate += 1
        if chunk is not None and self.chunks is not None:
            self.chunks.publish(chunk[0], kept, chunk[1])
            published = True
        if published:
            self.output.publish_done()
        logger.debug("committed %d message(s)", len(pending))

    def _discard(self, p: _Pending) -> None:
        if p.staged_name is not None:
            self.output.discard(p.staged_name)
            if p.rendered.print_pdf is not None:
                self.output.discard(f"print/{p.rendered.entry['message_id']}.pdf")

    @staticmethod
    def _note_print(out: _TaskResult, p: _Pending, message_id: str) -> None:
        if p.rendered.channel == "pdf":
            out.prints.append((p.line, p.customer_id or "", message_id))

    def _taken(self, pending: list[_Pending]) -> set[int]:
        """The new messages whose file name another file already has (never overwritten).

        Names are unique per customer, template and locale, so within a run they
        never meet; only files that were in ``out/`` before the run can be in the way.
        A file with exactly the message's bytes is not in the way, nor is the file of
        this run's message for the same key (the row is a duplicate).
        """
        if not self.had_files:
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch_parent(pid: int) -> None:
    """Exit this worker soon after the run's parent is gone (it would wait for work forever)."""
    import threading

    def watch() -> None:
        while _alive(pid):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="ccm-parent-watch", daemon=True).start()


def _conflict_message(customer_id: str, channel: str, message_id: str | None) -> str:
    """What an operator reads when a row's key is recorded for other data (errors.jsonl)."""
    made = f" (message {message_id})" if message_id else ""
    what = {"sms": "an SMS", "email": "an email", "pdf": "a PDF"}.get(channel, channel)
    return (f"customer {customer_id} already has {what} in this run, made from "
            f"other data{made}: a run makes one message per customer and channel. If the "
            "input holds this customer twice, keep one row; if the data or the templates "
            "changed since the run began, send it in a new run (another --run-id)")


def append_all(record: Any, pending: list[_Pending], caps_of: Mapping[str, Any],
               ) -> dict[int, tuple[str, str | None, str]]:
    """Append ``pending`` to the record in one bulk call.

    Returns ``id(p) -> (status, reason, message_id)`` for every item.
    """
    from ccm.record.bulk import entry_from

    out: dict[int, tuple[str, str | None, str]] = {}
    items = []
    for p in pending:
        fields = dict(p.rendered.entry)
        fields["created_at"] = datetime.fromisoformat(fields["created_at"])
        generated = p.rendered.status == "generated"
        caps = caps_of.get(p.rendered.channel, ()) if generated else ()
        items.append((p, entry_from(fields), caps))
    bulk = getattr(record, "append_many", None)
    if bulk is not None and items:
        results = bulk([
            {"entry": entry, "content": p.rendered.content or None,
             "content_digest": p.rendered.digest,
             "archival": p.rendered.archival, "caps": caps}
            for p, entry, caps in items
        ])
    else:
        results = []
        for p, entry, caps in items:
            try:
                results.append(record.append(
                    entry, content=p.rendered.content or None,
                    archival=p.rendered.archival, caps=caps))
            except MessageError as exc:  # e.g. IdempotencyConflict: this message only
                results.append(exc)
    for (p, entry, _), result in zip(items, results, strict=True):
        if isinstance(result, BaseException):
            out[id(p)] = ("failed", None, entry.message_id)
            p.error = _describe_error(result)
            if isinstance(result, IdempotencyConflict):
                p.error["message"] = _conflict_message(entry.customer_id, entry.channel,
                                                       getattr(result, "message_id", None))
            continue
        status = result.status
        if status in ("appended", "generated", "ok", "new", "recorded"):
            status = p.rendered.status
        if status == "suppressed" and p.rendered.status == "suppressed":
            reason = p.rendered.entry.get("reason")
        else:
            reason = getattr(result, "reason", None)
        message_id = getattr(getattr(result, "entry", None), "message_id", entry.message_id)
        out[id(p)] = (status, reason, message_id)
    return out
