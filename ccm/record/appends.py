"""Appending to the record: messages (one or many), events, and their chain links.

:class:`Appends` is the write side of :class:`~ccm.record.Record`. An append
is one transaction holding the customer's lock: idempotency check, cap
re-check, message row, archive blobs (sealed under the customer's data
key), chain link. It is durable when :meth:`Appends.append` returns (SQLite
WAL + ``synchronous=FULL``; PostgreSQL ``synchronous_commit=on``), and a
crash leaves all of it or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from ccm.errors import DataError, IdempotencyConflict
from ccm.message import new_message_id
from ccm.record.archive import seal_blob
from ccm.record.bulk import Prepared, append_bulk, prepare
from ccm.record.chain import (
    canonical,
    event_body,
    link,
    message_body,
    utc,
)
from ccm.record.datakeys import DataKeys
from ccm.record.entries import (
    _STR_FIELDS,
    EVENT_KINDS,
    AppendResult,
    Entry,
    Event,
    find_entry,
    get_entry,
    personal_data_in,
)
from ccm.record.outbox import Queue, enqueue
from ccm.record.policy import Cap
from ccm.record.schema import archive, events, messages

__all__ = ["BULK_CUSTOMERS", "Appends"]

logger = logging.getLogger("ccm.record")

#: Customers locked by one bulk transaction on PostgreSQL (its lock table is finite).
BULK_CUSTOMERS = 256
#: Customers per bulk transaction on SQLite (no per-customer locks: one writer at a time).
_SQLITE_BULK_CUSTOMERS = 2048


class Appends(DataKeys):
    """Messages and events in, each linked into its customer's hash chain."""

    def count(
        self,
        customer_id: str,
        *,
        since: datetime,
        message_type: str | None = None,
        channel: str | None = None,
        status: str = "generated",
    ) -> int:
        """How many of the customer's messages were created at or after ``since``."""
        with self._tx(write=False) as conn:
            return self._count(conn, customer_id, since=since, message_type=message_type,
                               channel=channel, status=status)

    @staticmethod
    def _count(conn: sa.Connection, customer_id: str, *, since: datetime,
               message_type: str | None, channel: str | None, status: str) -> int:
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        query = sa.select(sa.func.count()).select_from(messages).where(
            messages.c.customer_id == customer_id,
            messages.c.status == status,
            messages.c.created_at >= utc(since),
        )
        if message_type is not None:
            query = query.where(messages.c.message_type == message_type)
        if channel is not None:
            query = query.where(messages.c.channel == channel)
        return int(conn.execute(query).scalar_one())


    # -- appending --------------------------------------------------------------

    def append(
        self,
        entry: Entry,
        *,
        content: bytes | None = None,
        archival: bytes | None = None,
        caps: Sequence[Cap] = (),
        queue: Queue | None = None,
    ) -> AppendResult:
        """Record one message atomically; see :class:`AppendResult` for the outcomes.

        Under the customer's lock, in one transaction: a recorded
        ``idempotency_key`` returns ``duplicate`` (same ``params_sha256``) or
        raises :class:`IdempotencyConflict`; ``caps`` are re-counted and a
        reached cap stores the entry as suppressed (``cap:<name>``, no
        content); otherwise the entry, its encrypted content and its chain
        link are committed before this returns. With ``queue``, a generated
        message is also queued for delivery in that transaction (see
        :mod:`ccm.record.outbox`); a suppressed or duplicate one is not.
        """
        item = self._prepare(entry, content, archival)
        result: AppendResult = self._retrying(
            [entry.customer_id],
            lambda conn: self._append(conn, item, content, archival, caps, queue),
        )
        return result

    def append_many(
        self, items: Sequence[Mapping[str, Any]]
    ) -> list[AppendResult | IdempotencyConflict]:
        """Append many messages in few transactions (batch runs): one result per item, in order.

        Each item is ``{"entry": Entry, "content": bytes | None, "archival":
        bytes | None, "caps": [Cap, ...], "queue": Queue | None}``, optionally with
        ``"content_digest"``: a :class:`~ccm.record.bulk.Digested` of the content (its
        digest is then not computed again). An idempotency conflict is
        returned in that item's place rather than raised, so one bad row does
        not lose the others. Same guarantees as :meth:`append`.
        """
        prepared = [prepare(item) for item in items]
        limit = BULK_CUSTOMERS if self.backend == "postgresql" else _SQLITE_BULK_CUSTOMERS
        results: list[AppendResult | IdempotencyConflict] = []
        start = 0
        while start < len(prepared):
            customers: set[str] = set()
            end = start
            while end < len(prepared) and (
                len(customers) < limit or prepared[end][0]["customer_id"] in customers
            ):
                customers.add(prepared[end][0]["customer_id"])
                end += 1
            chunk = prepared[start:end]

            def run(conn: sa.Connection, chunk: list[Prepared] = chunk,
                    ) -> list[AppendResult | IdempotencyConflict]:
                return append_bulk(self, conn, chunk)

            results.extend(self._retrying(customers, run))
            logger.debug("appended %d item(s) in one transaction", end - start)
            start = end
        return results

    @staticmethod
    def _prepare(entry: Entry, content: bytes | None, archival: bytes | None) -> Entry:
        """Check an entry and normalise it to what the database gives back."""
        if entry.status not in ("generated", "suppressed"):
            raise ValueError(f"an appended entry is generated or suppressed, not {entry.status!r}")
        if not isinstance(entry.created_at, datetime) or entry.created_at.tzinfo is None:
            raise ValueError("Entry.created_at must be a timezone-aware datetime")
        if not entry.customer_id or not entry.message_id or not entry.idempotency_key:
            raise ValueError("an entry needs a message_id, an idempotency_key and a customer_id")
        changes: dict[str, Any] = {
            name: str(getattr(entry, name))
            for name in _STR_FIELDS
            if getattr(entry, name) is not None and not isinstance(getattr(entry, name), str)
        }
        changes["created_at"] = utc(entry.created_at)
        changes["archive_ref"] = None
        for part, data in (("content", content), ("archival", archival)):
            if data is None:
                continue
            digest = hashlib.sha256(data).hexdigest()
            given = getattr(entry, f"{part}_sha256")
            if given is None:
                changes[f"{part}_sha256"] = digest
            elif given != digest:
                raise ValueError(f"Entry.{part}_sha256 does not match the {part} bytes given")
        return replace(entry, **changes)

    def _append(self, conn: sa.Connection, entry: Entry, content: bytes | None,
                archival: bytes | None, caps: Sequence[Cap],
                queue: Queue | None = None) -> AppendResult:
        earlier = find_entry(conn, entry.idempotency_key)
        if earlier is not None:
            if earlier.params_sha256 == entry.params_sha256:
                return AppendResult("duplicate", earlier, earlier.reason)
            raise IdempotencyConflict(
                f"idempotency key {entry.idempotency_key!r} is recorded for other parameters "
                f"(message {earlier.message_id}); use a new key to send a different message",
                key=entry.idempotency_key,
                message_id=earlier.message_id,
                customer_id=entry.customer_id,
            )
        status: Literal["generated", "suppressed"] = (
            "generated" if entry.status == "generated" else "suppressed"
        )
        reason = entry.reason
        if status == "generated":
            for cap in caps:
                if not cap.applies_to(entry.message_type or "", entry.channel):
                    continue  # a marketing cap never stops an operational message
                made = self._count(conn, entry.customer_id, since=entry.created_at - cap.window,
                                   message_type=cap.message_type, channel=cap.channel,
                                   status="generated")
                if made >= cap.max:
                    status, reason = "suppressed", f"cap:{cap.name}"
                    break
        if status != "generated":
            # Nothing that was not sent is archived, and a suppressed entry has no content.
            content = archival = None
            entry = replace(entry, content_sha256=None, archival_sha256=None)
        parts = [(p, d) for p, d in (("content", content), ("archival", archival)) if d is not None]
        # Time-ordered like the bulk path's refs: new rows at the end of the archive's key.
        ref = (new_message_id(entry.created_at) if parts and self.master_key is not None
               else None)
        stored = replace(entry, status=status, reason=reason, archive_ref=ref)
        row = {f.name: getattr(stored, f.name) for f in fields(Entry)}
        conn.execute(messages.insert(), row)
        commitment = None
        if ref is not None:
            key_id, key, commitment = self._data_key(conn, stored.customer_id)
            conn.execute(archive.insert(), [
                {"ref": ref, "part": part, "message_id": stored.message_id,
                 "customer_id": stored.customer_id, "key_id": key_id,
                 "blob": seal_blob(key, data, message_id=stored.message_id, part=part,
                                   customer_id=stored.customer_id)}
                for part, data in parts
            ])
        link(conn, stored.customer_id, "message", stored.message_id, message_body(row),
             commitment)
        if queue is not None and status == "generated":
            enqueue(self, conn, stored, queue)
        logger.debug("appended %s (%s) for customer %s", stored.message_id, status,
                     stored.customer_id)
        return AppendResult(status, stored, reason)

    # -- events -----------------------------------------------------------------

    def add_event(
        self,
        message_id: str,
        kind: str,
        *,
        at: datetime | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        """Attach an event (one of :data:`EVENT_KINDS`) to a message, chained like it.

        ``data`` is a small JSON object (a clicked URL, a bounce code) and must
        not hold personal data: it is stored in clear. An ``opted_out`` (or
        ``complained``) event withdraws consent for the message's channel, or
        for ``data["channel"]`` when given (see :meth:`consent_overrides`).
        """
        added = self._add_event(message_id, kind, at=at, data=data, once=False)
        assert added is not None  # only once=True can find one already there
        return added

    def add_event_once(
        self,
        message_id: str,
        kind: str,
        *,
        at: datetime | None = None,
        data: Mapping[str, Any] | None = None,
        within: timedelta | None = None,
        same_data: bool = False,
    ) -> Event | None:
        """:meth:`add_event` unless the message already has an event of ``kind``; then ``None``.

        With ``same_data``, only an event of ``kind`` with the same ``data``
        (a click on the same URL) counts as already there; with ``within``,
        only one less than ``within`` before ``at`` (a repeat an hour later
        is added). The check and the insert happen in one transaction under
        the customer's lock, so two callers at once (a repeated unsubscribe
        POST, a flood of pixel loads from several app processes) add exactly
        one event.
        """
        if within is not None and within <= timedelta(0):
            raise ValueError("within must be a positive timedelta")
        return self._add_event(message_id, kind, at=at, data=data, once=True,
                               within=within, same_data=same_data)

    def _add_event(self, message_id: str, kind: str, *, at: datetime | None,
                   data: Mapping[str, Any] | None, once: bool,
                   within: timedelta | None = None, same_data: bool = False) -> Event | None:
        if kind not in EVENT_KINDS:
            raise DataError(f"unknown event kind {kind!r}; one of {', '.join(EVENT_KINDS)}",
                            rule="kind")
        if at is not None and at.tzinfo is None:
            raise DataError("at must be timezone-aware", rule="at")
        when = utc(at or datetime.now(UTC))
        text = None
        if data is not None:
            if not isinstance(data, Mapping):
                raise DataError("event data must be a JSON object", path="$", rule="type")
            try:
                text = canonical(data).decode("utf-8")
            except (TypeError, ValueError) as exc:
                raise DataError(f"event data must be plain JSON: {exc}", path="$",
                                rule="type") from None
            # Stored in clear and chained: an erasure could not remove it afterwards.
            found = personal_data_in(data, urls=False)
            if found:
                raise DataError(
                    "event data must not hold personal data (it is stored in clear, and "
                    f"erasing the customer cannot remove it): {'; '.join(found)}; keep ids, "
                    "codes and channels in it", path="$", rule="personal-data")
        with self._tx(write=False) as conn:
            customer_id = get_entry(conn, message_id).customer_id
        event_id = new_message_id(when)  # time-ordered as message ids are: same index locality
        row = {"event_id": event_id, "message_id": message_id, "customer_id": customer_id,
               "kind": kind, "at": when, "data": text}

        already = [events.c.message_id == message_id, events.c.kind == kind]
        if same_data:
            already.append(events.c.data.is_(None) if text is None else events.c.data == text)
        if within is not None:
            already.append(events.c.at > when - within)

        def work(conn: sa.Connection) -> bool:
            if once and conn.execute(sa.select(sa.exists().where(*already))).scalar_one():
                return False
            conn.execute(events.insert(), row)
            link(conn, customer_id, "event", event_id, event_body(row))
            return True

        if not self._retrying([customer_id], work):
            return None
        return Event(event_id, message_id, customer_id, kind, when,
                     json.loads(text) if text is not None else None)

