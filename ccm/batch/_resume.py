"""Resume: what the record already has for a row, and putting its outputs back.

The part of a batch run (:class:`ccm.batch.run._Batch`) that runs before a row
is submitted: rows are read :data:`LOOKUP_ROWS` at a time so that their
record lookups (idempotency keys, withdrawn consent) are one query each; a
row whose every channel is recorded is skipped, and each recorded message's
output is made sure of -- a staged file published, a deleted file or chunk
line written back from the archive -- or the channel is rendered again.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from ccm.batch._chunks import TEXT_CHANNELS, ChunkFiles, content_of, message_line
from ccm.batch._commit import LOOKUP, _conflict_message
from ccm.batch._output import _Output
from ccm.batch._values import BatchSummary
from ccm.batch._worker import _filename, _key, _Spec
from ccm.batch.inputs import InputRow
from ccm.errors import MessageError
from ccm.message import SUFFIXES
from ccm.render.template import BAD_TEXT

logger = logging.getLogger("ccm.batch.run")

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from ccm.render.engine import Engine
    from ccm.render.template import Template

#: Input rows read ahead at a time: their record lookups (resume, consent) are one query each.
LOOKUP_ROWS = 256


class _Resume:
    """Resume lookups and restores; mixed into the run, whose state it reads."""

    run_id: str
    tpl: Template
    engine: Engine
    spec: _Spec
    channels: tuple[str, ...]
    record: Any
    output: _Output
    chunks: ChunkFiles | None
    summary: BatchSummary
    _ahead: deque[InputRow]
    _known: dict[str, Any]
    _consent: dict[str, Any]
    _overrides: Any
    _restored_lines: list[dict[str, Any]]
    _rewrite_ids: dict[tuple[int, str], str]
    #: The record has nothing of this run yet: rows go to workers unparsed, unlooked-up.
    _fresh: bool = False
    #: How many restored lines make the run commit a chunk early (the run's commit size).
    _restore_flush: int = 256

    def _fail(self, line: int, customer_id: str | None, error: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _note_print(self, line: int, customer_id: str, message_id: str, channel: str) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    # -- before submitting: resume ------------------------------------------------

    def _prepare(self, row: InputRow) -> tuple[tuple[int, Any, tuple[str, ...] | None, Any],
                                                  tuple[str, ...]] | None:
        """Skip what the record already has; return the work left for this row."""
        if row.raw is not None:
            if self._fresh:  # nothing to look up: the worker parses the line itself
                return (row.line, row.raw, None,
                        None if self._overrides is None else LOOKUP), ()
            row = row.parsed()
        if row.error is not None:
            self._fail(row.line, row.customer_id, {"error": "InputError", "message": row.error})
            return None
        customer_id = row.customer_id
        if customer_id is None or BAD_TEXT.search(customer_id):
            # The worker reports the shape error, or the id's text (a lone surrogate the
            # record's driver cannot even encode), with its path.
            return (row.line, row.request, None, None), ()
        todo: list[str] = []
        redo: list[str] = []
        for channel in self.channels:
            entry = self._find_key(_key(self.run_id, self.tpl.id, customer_id, channel))
            if entry is None:
                todo.append(channel)
                continue
            if entry.params_sha256 != self._params(row, channel):
                self._fail(row.line, customer_id, {
                    "error": "IdempotencyConflict", "channel": channel,
                    "message": _conflict_message(customer_id, channel, entry.message_id),
                })
                return None
            if not self._restore(row.line, entry):
                todo.append(channel)
                redo.append(channel)
        if not todo:
            self.summary.rows += 1
            self.summary.skipped += 1
            self.summary.duplicate += len(self.channels)
            return None
        # The channels already recorded (a row cut off mid-way, or a deferred SMS
        # beside a sent PDF and email) are duplicates of this run too.
        self.summary.duplicate += len(self.channels) - len(todo)
        overrides = self._consent_of(customer_id)
        channels = None if len(todo) == len(self.channels) else tuple(todo)
        return (row.line, row.request, channels, overrides), tuple(redo)

    def _next_row(self, rows: Iterator[InputRow]) -> InputRow | None:
        """The next input row; rows are read :data:`LOOKUP_ROWS` at a time so that what the
        record knows about them (resume keys, withdrawn consent) comes in two queries, not
        two per row."""
        if not self._ahead:
            block = list(itertools.islice(rows, LOOKUP_ROWS))
            if not block:
                return None
            self._ahead.extend(block)
            self._lookup(block)
        return self._ahead.popleft()

    def _lookup(self, block: list[InputRow]) -> None:
        customers = {row.customer_id for row in block
                     if row.error is None and row.customer_id is not None
                     and not BAD_TEXT.search(row.customer_id)}
        self._known.clear()
        self._consent.clear()
        if not customers:
            return
        find_keys = getattr(self.record, "find_keys", None)
        if find_keys is not None:
            keys = [_key(self.run_id, self.tpl.id, cid, channel)
                    for cid in customers for channel in self.channels]
            found = find_keys(keys)
            self._known.update(dict.fromkeys(keys))
            self._known.update(found)
        many = getattr(self.record, "consent_overrides_many", None)
        if many is not None and self._overrides is not None:
            self._consent.update(many(customers))

    def _find_key(self, key: str) -> Any:
        if key in self._known:
            return self._known[key]
        return self.record.find_key(key)

    def _consent_of(self, customer_id: str) -> Any:
        if self._overrides is None:
            return None
        if customer_id in self._consent:
            return self._consent[customer_id]
        return self._overrides(customer_id)

    def _params(self, row: InputRow, channel: str) -> str | None:
        """What this row's message on ``channel`` would commit to (as the engine computes it)."""
        from ccm.render.template import validate_request

        try:
            req = validate_request(row.request)
        except MessageError:
            return None
        locale = self.spec.locale or self.engine.pack.resolve_locale(req.customer.get("locale"))
        return self.engine._params_sha256(self.tpl, req, channel, locale)

    def _restore(self, line: int, entry: Any) -> bool:
        """Make sure a recorded message's file is in ``out/``; False if it must be re-rendered."""
        if entry.status != "generated" or not entry.content_sha256:
            return True
        if self.chunks is not None and entry.channel in TEXT_CHANNELS:
            return self._restore_line(line, entry)
        final = _filename(entry.customer_id, entry.template, entry.locale, entry.channel)
        staged = entry.message_id + SUFFIXES[entry.channel]
        if self.output.staged_exists(staged):
            data = self.output.read_staged(staged)
            if hashlib.sha256(data).hexdigest() == entry.content_sha256:
                self.output.publish(staged, final)
                self.summary.restored += 1
                self._note_print(line, entry.customer_id, entry.message_id, entry.channel)
                return True
            self.output.discard(staged)
        present = self.output.read(final)
        if present is not None:
            if hashlib.sha256(present).hexdigest() == entry.content_sha256:
                self._note_print(line, entry.customer_id, entry.message_id, entry.channel)
                return True
            logger.warning("%s does not hold message %s (its SHA-256 differs from the "
                           "record's); repairing it", self.output.display(final),
                           entry.message_id, extra={"operator": True})
        content = self._archived(entry.message_id)
        if content is not None and hashlib.sha256(content).hexdigest() == entry.content_sha256:
            self.output.write(final, content)
            self.summary.restored += 1
            self._note_print(line, entry.customer_id, entry.message_id, entry.channel)
            return True
        return False

    def _restore_line(self, line: int, entry: Any) -> bool:
        """:meth:`_restore` for JSONL chunks: the message is in a published chunk, or goes
        into the next one from a staged chunk or the archive; False to render it again."""
        assert self.chunks is not None
        if entry.message_id in self.chunks.published:
            return True
        item = self.chunks.staged.pop(entry.message_id, None)
        content = content_of(item) if item is not None else self._archived(entry.message_id)
        if content is None or hashlib.sha256(content).hexdigest() != entry.content_sha256:
            # Rendered again; its line carries the recorded message id (the content's
            # digest differs from the record's, as for a re-rendered file).
            self._rewrite_ids[(line, entry.channel)] = entry.message_id
            return False
        if item is None:
            item = message_line(
                line=line, message_id=entry.message_id, customer_id=entry.customer_id,
                channel=entry.channel, template=entry.template, locale=entry.locale,
                filename=_filename(entry.customer_id, entry.template, entry.locale,
                                   entry.channel),
                content_sha256=entry.content_sha256, content=content)
        self._restored_lines.append(item)
        self.summary.restored += 1
        if len(self._restored_lines) >= self._restore_flush:
            self._commit()
        return True

    def _archived(self, message_id: str) -> bytes | None:
        reader = getattr(self.record, "content", None)
        if reader is None:
            return None
        try:
            content = reader(message_id)
        except Exception:  # erased, no key, no archive: re-render instead
            return None
        return content if isinstance(content, bytes) else None
