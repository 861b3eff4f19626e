"""Reading the record: entries, events, consent, verify and checkpoints, the single view.

:class:`Reads` is the read side of :class:`~ccm.record.Record`. Every
method runs in one read transaction: on PostgreSQL ``REPEATABLE READ, READ
ONLY``, so a timeline, an export or a verify sees one consistent snapshot.
The builders of the views themselves live in :mod:`ccm.record.views`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ccm.errors import ContentErased, ContentTampered, KeyConfigError, RecordError
from ccm.record import checkpoint as checkpoints
from ccm.record import erasure as wal
from ccm.record import views
from ccm.record.chain import VerifyReport, canonical, report, scan, utc
from ccm.record.connect import slices
from ccm.record.datakeys import DataKeys
from ccm.record.entries import (
    CONSENT_KINDS,
    Entry,
    Event,
    entry_of,
    event_of,
    find_entry,
    fold_consent,
    get_entry,
)
from ccm.record.schema import (
    chain,
    events,
    messages,
    meta_problems,
)

__all__ = ["Reads"]


#: The consent kinds as SQL literals (constants of ccm, not input).
_CONSENT_KINDS_SQL = ", ".join(f"'{kind}'" for kind in CONSENT_KINDS)


def _events_in_order(*where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """The ``events`` rows matching ``where``, by time, then in the order they were added.

    Events often share an instant (``queued``/``sending``/``sent`` under one
    ``--as-of``, a ``bounced`` and its ``suppressed``); their ids are uuid7s
    whose tail is random, so ordering by id would shuffle them. Each event
    has a link in its customer's chain whose ``seq`` counts up as events are
    added -- on SQLite and PostgreSQL alike -- so it breaks the tie; the id
    only orders what the chain cannot (events of different customers).
    """
    linked = events.outerjoin(chain, sa.and_(chain.c.customer_id == events.c.customer_id,
                                             chain.c.kind == "event",
                                             chain.c.ref == events.c.event_id))
    return (sa.select(events).select_from(linked).where(*where)
            .order_by(events.c.at, chain.c.seq, events.c.event_id))


class Reads(DataKeys):
    """Entries, events, consent, tamper evidence and the customer views."""

    def find_key(self, idempotency_key: str) -> Entry | None:
        """The entry recorded under ``idempotency_key``, or ``None``."""
        with self._tx(write=False) as conn:
            return find_entry(conn, idempotency_key)

    def find_keys(self, idempotency_keys: Iterable[str]) -> dict[str, Entry]:
        """The entries recorded under any of ``idempotency_keys`` (one read; batch resume).

        Keys with no entry are absent from the result.
        """
        keys = sorted(set(idempotency_keys))
        found: dict[str, Entry] = {}
        with self._tx(write=False) as conn:
            for part in slices(keys):
                for row in conn.execute(
                    sa.select(messages).where(messages.c.idempotency_key.in_(part))
                ):
                    entry = entry_of(row)
                    found[entry.idempotency_key] = entry
        return found

    def has_key_prefix(self, prefix: str) -> bool:
        """Whether any entry's idempotency key starts with ``prefix`` (one index probe).

        A batch run asks ``"<run id>:<template>:"`` once: a run the record has never
        seen needs no per-row resume lookups.
        """
        if not prefix:
            return self.has_any_entry()
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        key = messages.c.idempotency_key
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(key).where(key >= prefix, key < upper).limit(1)).first()
        return row is not None

    def has_any_entry(self) -> bool:
        """Whether the record holds any message entry."""
        with self._tx(write=False) as conn:
            return conn.execute(sa.select(messages.c.message_id).limit(1)).first() is not None

    def get(self, message_id: str) -> Entry:
        """The entry of ``message_id``; :class:`MessageNotFound` when there is none."""
        with self._tx(write=False) as conn:
            return get_entry(conn, message_id)

    # -- events and consent -----------------------------------------------------

    def events(self, message_id: str) -> list[Event]:
        """The message's events in time order, those at the same time in the order they
        were added (``[]`` for a message without any)."""
        with self._tx(write=False) as conn:
            get_entry(conn, message_id)
            rows = conn.execute(_events_in_order(events.c.message_id == message_id))
            return [event_of(r) for r in rows]

    def find_events(self, kind: str, field: str, value: str) -> list[Event]:
        """Events of ``kind`` whose data has ``field`` equal to the string ``value``, oldest
        first (e.g. the ``sent`` event with ``{"provider_id": "SM..."}`` a provider's
        callback names). A text match narrows the rows, the parsed data decides.
        """
        fragment = canonical({field: value}).decode("utf-8")[1:-1]
        with self._tx(write=False) as conn:
            rows = conn.execute(_events_in_order(
                events.c.kind == kind, events.c.data.contains(fragment, autoescape=True)))
            found = [event_of(r) for r in rows]
        return [e for e in found if (e.data or {}).get(field) == value]

    def has_event(self, message_id: str, kind: str) -> bool:
        """Whether the message has at least one event of ``kind``."""
        with self._tx(write=False) as conn:
            return conn.execute(
                sa.select(sa.exists().where(events.c.message_id == message_id,
                                            events.c.kind == kind))
            ).scalar_one() is True

    @staticmethod
    def _consent_rows(conn: sa.Connection, customers: Sequence[str]) -> list[Any]:
        """Consent events (opt-outs, complaints, opt-ins, suppressions) of ``customers`` in
        the order they were added: by time, then by their link in the customer's chain
        (events at the same instant keep their order). Through the driver: a Core ``IN``
        of a task's customers cost more than the read."""
        from ccm.record.bulk import _sql

        sql = _sql(conn)
        rows: list[Any] = []
        for part in slices(customers):
            where, params = sql.among("e.customer_id", part)
            rows += conn.exec_driver_sql(
                "SELECT e.customer_id, e.kind, e.data, m.channel FROM events e "
                "JOIN messages m ON e.message_id = m.message_id "
                "JOIN chain c ON c.customer_id = e.customer_id AND c.ref = e.event_id "
                f"WHERE {where} AND e.kind IN ({_CONSENT_KINDS_SQL}) "
                "ORDER BY e.customer_id, e.at, c.seq", params).all()
        return rows

    @staticmethod
    def _fold(rows: Iterable[Any], out: dict[str, dict[str, bool]]) -> None:
        """Per customer, :func:`~ccm.record.entries.fold_consent` of their rows."""
        rows = list(rows)
        for customer_id in dict.fromkeys(r[0] for r in rows):
            out[customer_id] = fold_consent(
                (kind, json.loads(data) if data else None, channel)
                for cid, kind, data, channel in rows if cid == customer_id)

    def _overrides(self, conn: sa.Connection, customer_id: str) -> dict[str, bool]:
        out: dict[str, dict[str, bool]] = {}
        self._fold(self._consent_rows(conn, [customer_id]), out)
        return dict(sorted(out.get(customer_id, {}).items()))

    def consent_overrides(self, customer_id: str) -> dict[str, bool]:
        """The record's word on the customer's consent, per channel: the latest event wins.

        ``False`` for a channel the customer opted out of (or complained on),
        ``True`` for one they opted in to again afterwards (``opted_in``);
        ``{"blocked:<channel>": False}`` for a channel suppressed for every
        message type (a hard bounce, an SMS STOP) until an opt-in or an
        operator's ``unsuppressed`` (see :func:`ccm.record.entries.fold_consent`);
        channels without such events are absent.
        """
        with self._tx(write=False) as conn:
            return self._overrides(conn, customer_id)

    def consent_overrides_many(self, customer_ids: Iterable[str]) -> dict[str, dict[str, bool]]:
        """:meth:`consent_overrides` of many customers in one read (batch runs).

        Every customer asked about is in the result (``{}`` when there is no consent event).
        """
        ids = sorted(set(customer_ids))
        out: dict[str, dict[str, bool]] = {cid: {} for cid in ids}
        with self._tx(write=False) as conn:
            self._fold(self._consent_rows(conn, ids), out)
        return {cid: dict(sorted(found.items())) for cid, found in out.items()}

    # -- tamper evidence ----------------------------------------------------------

    def verify(self, *, checkpoint: Path | str | None = None,
               key: bytes | None = None) -> VerifyReport:
        """Recompute every chain and cross-check rows and blobs; with a checkpoint, also
        require every head it pinned and no shrunken counts (truncation, rollback).

        ``key`` is the checkpoint's HMAC key. Every stored value is untrusted: one
        of the wrong type (text in ``seq``, a blob in ``status``, a timestamp that is
        none) is a problem in the report, never an exception; so are ``ccm_meta``
        values no ccm writes.
        """
        doc = None
        if checkpoint is not None:
            if key is None:
                raise KeyConfigError("checking a checkpoint needs its key: set "
                                     f"{checkpoints.ENV_CHECKPOINT_KEY} or pass a key file")
            doc = checkpoints.read(checkpoint)
        with self._tx(write=False) as conn:
            found = scan(conn, pins=checkpoints.pins(doc) if doc else None)
            extra = meta_problems(conn)
            if doc is not None and key is not None:
                extra += checkpoints.compare(doc, key, pinned=found.pinned,
                                             now_counts=checkpoints.counts(conn))
            waiting = sorted(wal.pending(conn))  # an erase killed before its flush
        return report(found, extra, checkpoint=str(checkpoint) if checkpoint else None,
                      erasures_pending=waiting)

    def checkpoint(self, path: Path | str, key: bytes) -> Path:
        """Write a signed checkpoint of every chain head to ``path`` (keep it elsewhere)."""
        return checkpoints.write(path, self.checkpoint_doc(key))

    def checkpoint_doc(self, key: bytes) -> dict[str, Any]:
        """The signed checkpoint document (what :meth:`checkpoint` writes), from one snapshot."""
        with self._tx(write=False) as conn:
            return checkpoints.build(conn, key)

    # -- the single view ----------------------------------------------------------

    def _timeline(self, conn: sa.Connection, customer_id: str) -> views.Timeline:
        entries = [entry_of(r) for r in conn.execute(
            sa.select(messages).where(messages.c.customer_id == customer_id)
            .order_by(messages.c.created_at, messages.c.message_id)
        )]
        evs = [event_of(r) for r in conn.execute(
            _events_in_order(events.c.customer_id == customer_id))]
        erasures = [utc(at) if not isinstance(at, str) else utc(datetime.fromisoformat(at))
                    for (at,) in conn.execute(
                        sa.select(chain.c.at)
                        .where(chain.c.customer_id == customer_id, chain.c.kind == "erasure")
                        .order_by(chain.c.seq))]
        return views.build_timeline(customer_id, entries, evs,
                                    overrides=self._overrides(conn, customer_id),
                                    erasures=erasures)

    def timeline(self, customer_id: str) -> views.Timeline:
        """Every message to the customer across channels in time order, with events and summary."""
        with self._tx(write=False) as conn:
            return self._timeline(conn, customer_id)

    def export(self, customer_id: str) -> dict[str, Any]:
        """Everything the record holds about a customer, as JSON (a subject access request).

        The timeline, every event, and the decrypted archived content where it
        was not erased (text for email and SMS, base64 for PDF).
        """
        with self._tx(write=False) as conn:
            timeline = self._timeline(conn, customer_id)
            contents: dict[str, dict[str, Any]] = {}
            for item in timeline.messages:
                contents[item.entry.message_id] = {
                    part: self._export_part(conn, item.entry, part)
                    for part in ("content", "archival")
                }
        return views.build_export(timeline, contents)

    def _export_part(self, conn: sa.Connection, entry: Entry, part: str) -> dict[str, Any] | None:
        try:
            data = self._part(conn, entry, part)
        except ContentErased:
            return {"status": "erased"}
        except ContentTampered as exc:
            return {"status": "tampered", "note": str(exc)}
        except KeyConfigError:
            return {"status": "locked", "note": "no master key given; content not decrypted"}
        except RecordError:
            return {"status": "not archived"}
        if data is None:
            return None
        return views.encode_content(entry.channel, part, data)

    def features(self, *, now: datetime | None = None) -> Iterator[dict[str, Any]]:
        """One row per customer of engagement features (see :data:`views.FEATURE_COLUMNS`)."""
        moment = utc(now or datetime.now(UTC))
        with self._tx(write=False) as conn:
            rows = views.feature_query_rows(conn)
        return views.feature_rows(rows, now=moment)


